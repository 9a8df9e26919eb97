"""Offline demo sets built from what scikit-image's wheel ships (no download).

* ``demo`` (synthetic): the 100 real LFW faces of ``skimage.data.lfw_subset()`` (25x25 grey,
  replicated to RGB) plus the astronaut portrait's face, each resized to a 64 px "HR" with Pillow
  bicubic, degraded with the complex degradation. The LFW "HR" is upsampled from 25 px, so it is a
  soft ground truth: fine for exercising the pipeline, not for quoting numbers.
* ``demo-real`` (real): the same 100 LFW faces downsampled to 16 px (antialiased bicubic), with no
  ground truth, standing in for a real-world LR set.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scgan_bench.errors import ImageDecodeError
from scgan_bench.interfaces import DatasetSpec, SourceItem
from scgan_bench.io.manifest import Manifest, sha256_bytes
from scgan_bench.registries import DATASETS

from ._common import HR_SIZE, LR_SIZE, face_crop, options_of

N_LFW_FACES = 100  # lfw_subset(): the first 100 of its 200 images are faces, the rest are not
ASTRONAUT_FACE_BOX = (148, 58, 278, 188)  # left, top, right, bottom in skimage.data.astronaut()


@lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    from skimage import data

    faces = data.lfw_subset()[:N_LFW_FACES]
    grey = np.clip(np.rint(faces * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=3)


@lru_cache(maxsize=1)
def _astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def _source(item: SourceItem) -> np.ndarray:
    kind, _, idx = item.source.partition(":")
    if kind == "skimage.lfw_subset":
        return _lfw()[int(idx)]
    if kind == "skimage.astronaut":
        return _astronaut()
    raise ImageDecodeError(item.source, "unknown built-in demo source")


@dataclass
class DemoFaces:
    name: str = "demo"
    kind: str = "synthetic"
    default_degradation: str | None = "complex"
    include_astronaut: bool = True
    hr_size: int = HR_SIZE
    lr_size: int = LR_SIZE

    def locate(self, root: Path | None) -> None:
        return None

    def manifest(self, root: Path | None) -> Manifest:
        items = [SourceItem(f"lfw-{i:03d}", f"skimage.lfw_subset:{i}") for i in range(N_LFW_FACES)]
        if self.include_astronaut and self.kind == "synthetic":
            items.append(SourceItem("astronaut", "skimage.astronaut:0", ASTRONAUT_FACE_BOX))
        header = {"dataset": self.name, "split": "all",
                  "selection": "skimage.data.lfw_subset()[:100] (faces), plus the astronaut face"}
        return Manifest(self.name, "all", tuple(items), header)

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        return sha256_bytes(_source(item).tobytes())

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        size = self.hr_size if self.kind == "synthetic" else self.lr_size
        return face_crop(_source(item), item.box, size)

    def options(self) -> Mapping[str, Any]:
        return options_of(self)


DATASETS.register("demo", DatasetSpec(
    name="demo", kind="synthetic", card="demo.md", needs_root=False,
    factory=lambda **kw: DemoFaces(**kw),
    summary="offline demo: 100 LFW faces + astronaut (scikit-image), complex degradation"))
DATASETS.register("demo-real", DatasetSpec(
    name="demo-real", kind="real", card="demo.md", needs_root=False, default_reference="demo",
    factory=lambda **kw: DemoFaces(**{"name": "demo-real", "kind": "real",
                                      "default_degradation": None, "include_astronaut": False, **kw}),
    summary="offline demo: the 100 LFW faces at 16 px as a real-LR set (no ground truth)"))
