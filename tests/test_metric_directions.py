"""Every registered metric's direction and printed scale, against a table written here from what each
measure is (not read from the code): tables bold, rank and draw arrows from ``higher_is_better``, so a
wrong flag ranks a column backwards. A new metric must be added here (the test names it)."""
from __future__ import annotations

import scgan_bench.metrics  # noqa: F401 (registers the built-in metrics)
from scgan_bench.registries import METRICS

UP, DOWN = True, False
#: name -> (higher is better, printed x scale)
EXPECTED = {
    # fidelity to the ground truth: similarity up, error down
    "psnr": (UP, 1), "psnr-y": (UP, 1), "ssim": (UP, 1), "ssim-y": (UP, 1),
    "lpips": (DOWN, 1), "dists": (DOWN, 1),
    # distribution distances (KID printed x100, as the paper's Table 5)
    "fid": (DOWN, 1), "fid-dlib": (DOWN, 1), "fid-ffhq512": (DOWN, 1), "kid": (DOWN, 100), "kid-dlib": (DOWN, 100),
    "fd-dinov2": (DOWN, 1),
    # k-NN manifold overlap with the reference set: more is better for all four
    **{f"{w}-{b}": (UP, 1) for w in ("precision", "recall", "density", "coverage") for b in ("inception", "dinov2")},
    # no-reference quality: NIQE is a distance to natural statistics; MUSIQ / MANIQA / CLIP-IQA predict opinion
    "niqe": (DOWN, 1), "niqe-b32": (DOWN, 1), "musiq": (UP, 1), "maniqa": (UP, 1), "clip-iqa": (UP, 1),
    "clip-iqa-paper": (UP, 1), "ntire-rwfr-score": (UP, 1), "topiq-nr": (UP, 1), "topiq-nr-face": (UP, 1),
    "liqe": (UP, 1), "liqe-mix": (UP, 1), "q-align": (UP, 1),
    # identity: similarity and verification up, angle down
    "ids-arcface": (UP, 1), "deg-arcface": (DOWN, 1), "deg-arcface-excl": (DOWN, 1), "deg-vqfr": (DOWN, 1),
    "facenet-cos": (UP, 1), "facenet-verif": (UP, 1), "facenet-verif-balanced": (UP, 1),
    "dlib-cos": (UP, 1), "dlib-verif": (UP, 1), "dlib-verif-balanced": (UP, 1),
    "id-gate-adaface": (UP, 1), "id-lq-adaface": (UP, 1),
    # detection rate up; landmark errors and distances down
    "hog-detect": (UP, 1), "lmd": (DOWN, 1), "lmd-awing": (DOWN, 1),
    "landmark-dlib68": (DOWN, 1), "landmark-dlib68-nio": (DOWN, 1),
    "landmark-retinaface": (DOWN, 1), "landmark-retinaface-nio": (DOWN, 1),
}


def test_every_registered_metric_ranks_in_its_published_direction():
    registered = {name: (spec.higher_is_better, spec.display_scale) for name, spec in METRICS.items()}
    assert sorted(set(registered) - set(EXPECTED)) == [], "new metrics: add their direction to EXPECTED"
    assert sorted(set(EXPECTED) - set(registered)) == [], "metrics no longer registered"
    wrong = {n: (registered[n], EXPECTED[n]) for n in EXPECTED if registered[n] != EXPECTED[n]}
    assert not wrong, wrong
