"""LS3D-W balanced (Bulat & Tzimiropoulos, ICCV 2017): 7,200 face images balanced over yaw.

The test selection is 1,000 images drawn (seed 2205) from the sorted list of image files under the
root; HR is the centre square of each image resized to 64 px (the balanced set's images are
face-centred crops), and LR is made by the simple degradation (bilinear or bicubic x4, drawn per
image). The selection is written as a manifest on first use, so it is fixed for a given copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scgan_bench.errors import UsageError
from scgan_bench.io.image_io import list_images
from scgan_bench.interfaces import DatasetSpec, SourceItem
from scgan_bench.io.manifest import Manifest, generated_manifest, seeded_selection
from scgan_bench.registries import DATASETS

from ._common import HR_SIZE, file_digest, load_face, options_of, resolve_root, unique_ids


@dataclass
class LS3DW:
    name: str = "ls3dw"
    kind: str = "synthetic"
    default_degradation: str | None = "simple"
    n: int = 1000
    seed: int = 2205
    hr_size: int = HR_SIZE

    def locate(self, root: Path | None) -> Path:
        return resolve_root(self.name, root, "LS3D-W-balanced")

    def manifest(self, root: Path | None) -> Manifest:
        # Keyed by root and options, not by the listing: once drawn, the selection is fixed, so a
        # file that later disappears is reported missing instead of silently leaving the selection.
        key = {**self.options(), "v": 1}

        def build() -> Manifest:
            files = [p.relative_to(root).as_posix() for p in list_images(root)]
            if not files:
                raise UsageError(f"dataset 'ls3dw': no image files under {root}")
            by_id = dict(zip(unique_ids(files), files))
            chosen = seeded_selection(list(by_id), self.n, self.seed)
            header = {"dataset": "ls3dw", "split": "test",
                      "candidates": f"{len(files)} image files",
                      "selection": f"random.Random({self.seed}).sample, k={self.n}, sorted"}
            return Manifest("ls3dw", "test", tuple(SourceItem(i, by_id[i]) for i in chosen), header)

        return generated_manifest(self.name, "test", root, key, build)

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        return file_digest(root, item)

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        return load_face(root, item, self.hr_size)

    def options(self) -> Mapping[str, Any]:
        return options_of(self)


DATASETS.register("ls3dw", DatasetSpec(
    name="ls3dw", kind="synthetic", card="ls3dw.md", factory=lambda **kw: LS3DW(**kw),
    summary="LS3D-W balanced: 1,000 faces at 64 px, simple (bilinear/bicubic x4) degradation"))
