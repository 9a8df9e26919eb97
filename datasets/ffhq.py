"""FFHQ (Karras et al., CVPR 2019): 70,000 aligned faces named ``00000.png`` .. ``69999.png``.

Selections are fixed by the official naming alone, so they ship as manifests:
* ``train``: 20,000 ids drawn (seed 2205) from the official training split 00000-59999;
* ``test``: 2,500 ids drawn (seed 2205) from the official validation split 60000-69999, so the test
  images lie outside our training ids *and* outside FFHQ's own training split.
Any of the official layouts works: ``images1024x1024/``, ``thumbnails128x128/`` (bucketed in
``00000/ .. 69000/`` folders) or a flat folder of ``NNNNN.png``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scgan_bench.errors import DataIntegrityError, DatasetUnavailableError
from scgan_bench.interfaces import DatasetSpec, SourceItem
from scgan_bench.io.manifest import Manifest, packaged_manifest_path, seeded_selection
from scgan_bench.registries import DATASETS

from ._common import HR_SIZE, check_split, file_digest, load_face, options_of, resolve_root

SELECTION_SEED = 2205
N_TRAIN = 20_000
N_TEST = 2_500
TRAIN_POOL = range(0, 60_000)
TEST_POOL = range(60_000, 70_000)
LAYOUTS = ("images1024x1024", "thumbnails128x128", "")
#: Digests of the shipped manifests: an edited copy is refused, so every user scores the same ids.
MANIFEST_SHA256 = {
    "train": "8cf5f1ec7d4033471b9f28c8211bf324029502d28d0edef2bfe7f656af8724a5",
    "test": "f034a388375b3b97557dc97e6e0ac27ea2a4dd6cf541aae8e17056d8c1955f16",
}


def build_manifest(split: str) -> Manifest:
    """The shipped manifest for ``split``, rebuilt from the official naming (used to write it)."""
    pool, n = (TRAIN_POOL, N_TRAIN) if split == "train" else (TEST_POOL, N_TEST)
    ids = seeded_selection([f"{i:05d}" for i in pool], n, SELECTION_SEED)
    header = {"dataset": "ffhq", "split": split,
              "selection": f"random.Random({SELECTION_SEED}).sample of ids "
                           f"{pool.start:05d}-{pool.stop - 1:05d}, k={n}, sorted",
              "source": "relative to the layout folder: <id//1000*1000:05d>/<id>.png or <id>.png"}
    return Manifest("ffhq", split, tuple(SourceItem(i, f"{i}.png") for i in ids), header)


def _layout(root: Path) -> tuple[str, bool]:
    """(sub-folder, bucketed?) of the FFHQ copy under ``root``."""
    for sub in LAYOUTS:
        base = root / sub if sub else root
        if (base / "60000" / "60000.png").exists() or (base / "00000" / "00000.png").exists():
            return sub, True
        if (base / "60000.png").exists() or (base / "00000.png").exists():
            return sub, False
        if sub and base.is_dir():
            return sub, any(p.is_dir() and p.name.isdigit() for p in base.iterdir())
    raise DatasetUnavailableError(
        f"dataset 'ffhq': {root} does not look like FFHQ: expected images1024x1024/, "
        "thumbnails128x128/ (with 00000/..69000/ buckets) or NNNNN.png files")


@dataclass
class FFHQ:
    """Aligned FFHQ faces, resized (Pillow bicubic, antialiased) to 64 px HR."""

    name: str = "ffhq"
    kind: str = "synthetic"
    default_degradation: str | None = "complex"
    split: str = "test"
    hr_size: int = HR_SIZE

    def __post_init__(self) -> None:
        check_split(self.name, self.split, ("test", "train"))

    def locate(self, root: Path | None) -> Path:
        return resolve_root(self.name, root, "ffhq")

    def manifest(self, root: Path | None) -> Manifest:
        path = packaged_manifest_path("ffhq", self.split)
        packaged = Manifest.load(path, "ffhq", self.split)
        if packaged.digest() != MANIFEST_SHA256[self.split]:
            raise DataIntegrityError(
                f"{path} differs from the FFHQ {self.split} selection this version ships (digest "
                f"{packaged.digest()[:12]}..., expected {MANIFEST_SHA256[self.split][:12]}...); "
                "reinstall scgan-bench")
        sub, bucketed = _layout(root)
        items = []
        for it in packaged.items:
            rel = f"{int(it.id) // 1000 * 1000:05d}/{it.id}.png" if bucketed else f"{it.id}.png"
            items.append(SourceItem(it.id, f"{sub}/{rel}" if sub else rel))
        header = {**packaged.header, "layout": sub or "flat", "bucketed": str(bucketed)}
        return Manifest("ffhq", self.split, tuple(items), header)

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        return file_digest(root, item)

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        return load_face(root, item, self.hr_size)

    def options(self) -> Mapping[str, Any]:
        return options_of(self)


DATASETS.register("ffhq", DatasetSpec(
    name="ffhq", kind="synthetic", card="ffhq.md", factory=lambda **kw: FFHQ(**kw),
    summary="FFHQ: 2,500 test faces (ids 60000-69999) at 64 px, complex degradation"))
