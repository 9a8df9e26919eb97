"""PSNR / SSIM equal scikit-image's reference implementation on real faces (tolerance 1e-12)."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from scgan_bench.metrics.fidelity import psnr, rgb_to_y, ssim
from scgan_bench.registries import METRICS, load_plugins

from sb_testdata import rgb_face


def _pairs(n=6):
    for k in range(n):
        hr = rgb_face(k)
        lr = np.asarray(Image.fromarray(hr).resize((16, 16), Image.Resampling.BICUBIC))
        sr = np.asarray(Image.fromarray(lr).resize((64, 64), Image.Resampling.BICUBIC))
        yield sr, hr


def test_psnr_ssim_rgb_match_scikit_image():
    load_plugins()
    mp, ms = METRICS.get("psnr").create(), METRICS.get("ssim").create()
    srs, hrs = zip(*_pairs())
    ours_p, ours_s = mp.score_pairs(srs, hrs), ms.score_pairs(srs, hrs)
    for sr, hr, p, s in zip(srs, hrs, ours_p, ours_s):
        ref_p = peak_signal_noise_ratio(hr, sr, data_range=255)
        ref_s = structural_similarity(hr, sr, channel_axis=2, data_range=255, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False)
        assert abs(p - ref_p) <= 1e-12 * abs(ref_p)
        assert abs(s - ref_s) <= 1e-12
        assert 15 < p < 40 and 0.2 < s < 1.0


def test_y_channel_variants():
    for sr, hr in _pairs(3):
        ys, yh = rgb_to_y(sr), rgb_to_y(hr)
        assert 16 <= ys.min() and ys.max() <= 235
        mse = np.mean((ys - yh) ** 2)
        assert abs(psnr(sr, hr, y_only=True) - 10 * math.log10(255 ** 2 / mse)) < 1e-9
        ref = structural_similarity(yh, ys, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert abs(ssim(sr, hr, y_only=True) - ref) < 1e-12


def test_identical_images_and_shape_mismatch():
    hr = rgb_face(0)
    assert psnr(hr, hr) == float("inf") and abs(ssim(hr, hr) - 1.0) < 1e-12
    try:
        psnr(hr[:32], hr)
    except ValueError as exc:
        assert "differs" in str(exc)
    else:
        raise AssertionError("shape mismatch accepted")
