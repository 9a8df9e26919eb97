"""Generic image folders: ``folder`` (HR faces, degraded synthetically) and ``folder-lr`` (real LR
faces, no ground truth). WebFace, whose paper set is not public, is a ``folder-lr`` with its own card."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scgan_bench.errors import UsageError
from scgan_bench.image_io import list_images
from scgan_bench.interfaces import DatasetSpec, SourceItem
from scgan_bench.manifest import Manifest
from scgan_bench.registries import DATASETS

from ._common import HR_SIZE, LR_SIZE, file_digest, load_face, options_of, resolve_root, unique_ids


def folder_manifest(name: str, root: Path, split: str) -> Manifest:
    """Every image under ``root`` (recursive, sorted by relative path); ids from relative paths."""
    files = [p.relative_to(root).as_posix() for p in list_images(root)]
    if not files:
        raise UsageError(f"dataset {name!r}: no image files under {root}")
    items = [SourceItem(uid, rel) for uid, rel in zip(unique_ids(files), files)]
    header = {"dataset": name, "split": split, "selection": "all image files, sorted by path",
              "root": str(root)}
    return Manifest(name, split, tuple(items), header)


@dataclass
class ImageFolder:
    """A folder of face images. ``kind='synthetic'``: HR faces (centre square -> 64 px), LR made by a
    degradation. ``kind='real'``: real LR faces (centre square -> 16 px), no ground truth."""

    name: str = "folder"
    kind: str = "synthetic"
    default_degradation: str | None = "complex"
    default_subdir: str = "folder"
    hr_size: int = HR_SIZE
    lr_size: int = LR_SIZE

    def locate(self, root: Path | None) -> Path:
        return resolve_root(self.name, root, self.default_subdir)

    def manifest(self, root: Path | None) -> Manifest:
        return folder_manifest(self.name, root, "all")

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        return file_digest(root, item)

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        return load_face(root, item, self.hr_size if self.kind == "synthetic" else self.lr_size)

    def options(self) -> Mapping[str, Any]:
        return options_of(self, exclude=("name", "kind", "default_degradation", "default_subdir"))


DATASETS.register("folder", DatasetSpec(
    name="folder", kind="synthetic", card="folder.md",
    summary="any folder of HR face images (centre square -> 64 px), degraded synthetically",
    factory=lambda **kw: ImageFolder(**kw)))
DATASETS.register("folder-lr", DatasetSpec(
    name="folder-lr", kind="real", card="folder.md",
    summary="any folder of real LR face images (centre square -> 16 px), no ground truth",
    factory=lambda **kw: ImageFolder(**{"name": "folder-lr", "kind": "real", "default_degradation": None,
                                        "default_subdir": "folder-lr", **kw})))
DATASETS.register("webface", DatasetSpec(
    name="webface", kind="real", card="webface.md", default_reference="ffhq",
    summary="WebFace: the paper's 1,028 crawled real LR faces (not public): a folder of LR faces",
    factory=lambda **kw: ImageFolder(**{"name": "webface", "kind": "real", "default_degradation": None,
                                        "default_subdir": "webface", **kw})))
