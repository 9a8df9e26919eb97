"""The exact port of Pillow's 8-bit resampling (``resize_uint8_torch``: the fixed-point weights of
``libImaging/Resample.c`` applied as float64 matrix products, so resizes can run on a GPU) against Pillow
itself: bit for bit (0 differing values allowed) on real faces and random images, the sizes the metrics
feed their networks (64 -> 112 / 160 / 256 / 299), downscales that antialias, non-square sizes, every
ported filter and a batch of mixed content."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scgan_bench.io.resize import pillow_weights, resize_uint8, resize_uint8_torch

from sb_testdata import HR_FACES, need


def _ported(img: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    return resize_uint8_torch(torch.from_numpy(img).permute(2, 0, 1)[None], size, method)[0].permute(1, 2, 0).numpy()


def test_bicubic_port_equals_pillow_on_faces_at_the_metrics_sizes():
    from scgan_bench.io.image_io import read_image

    faces = [resize_uint8(read_image(p), (64, 64), "bicubic") for p in sorted(need(HR_FACES).glob("*.png"))[:4]]
    batch = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2)
    for size in ((112, 112), (160, 160), (256, 256), (299, 299), (192, 192)):
        got = resize_uint8_torch(batch, size, "bicubic").permute(0, 2, 3, 1).numpy()
        want = np.stack([resize_uint8(f, size, "bicubic") for f in faces])
        assert np.array_equal(got, want), size


@pytest.mark.parametrize("method", ["bicubic", "bilinear", "box", "lanczos"])
def test_every_ported_filter_equals_pillow_bit_for_bit(method):
    """Random images (every value and sharp edges: the fixed-point rounding and clipping are exercised),
    up and down with the aspect kept, and one axis alone; a resize that changes the aspect ratio of both
    axes is refused (Pillow 13 chooses the pass order there, python-pillow/Pillow#9549)."""
    from scgan_bench.errors import UsageError

    rng = np.random.default_rng(7)
    for shape, sizes in (((64, 64), ((112, 112), (299, 299), (16, 16), (64, 100))),
                         ((128, 96), ((64, 48), (256, 192), (30, 96), (128, 37))),
                         ((37, 53), ((74, 106), (37, 200), (9, 53)))):
        img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        for size in sizes:
            assert np.array_equal(_ported(img, size, method), resize_uint8(img, size, method)), (shape, size)
    with pytest.raises(UsageError, match="aspect ratio"):
        _ported(rng.integers(0, 256, (128, 96, 3), dtype=np.uint8), (112, 112), method)


def test_weights_are_pillows_fixed_point_rows():
    """Each row of the integer weights sums to 2**22 within the rounding of its taps, upsampling by 4 uses
    the 4 bicubic taps written here (a = -0.5; output pixel 32's centre is input coordinate 8.125, so pixels
    6-9, whose centres are 6.5-9.5, lie 1.625, 0.625, 0.375 and 1.375 away), and an unknown filter is
    refused by name."""
    w = pillow_weights(16, 64, "bicubic")
    assert np.all(np.abs(w.sum(axis=1) - 2 ** 22) <= w.shape[1])

    def cubic(t: float) -> float:
        t = abs(t)
        return 1.5 * t ** 3 - 2.5 * t ** 2 + 1 if t < 1 else -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2

    taps = np.array([cubic(d) for d in (1.625, 0.625, 0.375, 1.375)])
    row = w[32, 6:10]
    assert not w[32, :6].any() and not w[32, 10:].any()
    assert np.array_equal(row, np.where(taps < 0, -np.floor(0.5 - taps / taps.sum() * 2 ** 22),
                                        np.floor(0.5 + taps / taps.sum() * 2 ** 22)).astype(np.int64))
    from scgan_bench.errors import UsageError

    with pytest.raises(UsageError, match="hamming"):
        pillow_weights(16, 64, "hamming")


def test_a_metrics_batch_is_resized_as_pillow_resizes_each_image():
    """``resized_batch`` (what FaceNet and RetinaFace feed their networks): one size -> the port on the
    tensor's device; mixed sizes or an aspect change -> Pillow on the host; either way each image is
    exactly Pillow's resize, as uint8 N x 3 x h x w."""
    from scgan_bench.io.resize import resized_batch

    rng = np.random.default_rng(5)
    same = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    mixed = same[:2] + [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)]
    for images, size in ((same, (160, 160)), (same, (256, 256)), (mixed, (160, 160)), (same, (64, 64)),
                         (same, (120, 160))):
        got = resized_batch(images, size)
        assert got.dtype == torch.uint8 and got.shape == (len(images), 3, *size)
        want = np.stack([resize_uint8(im, size, "bicubic") for im in images])
        assert np.array_equal(got.permute(0, 2, 3, 1).numpy(), want), size
