"""Generic image folders: ``folder`` (HR faces, degraded synthetically), ``folder-lr`` (real LR faces, no
ground truth) and ``folder-pairs`` (given LR/HR pairs, no degradation). WebFace, whose paper set is not public, is a ``folder-lr`` with its own card."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scgan_bench.errors import ImageDecodeError, UsageError
from scgan_bench.io.image_io import IMAGE_SUFFIXES, list_images, read_image
from scgan_bench.interfaces import DatasetSpec, SourceItem
from scgan_bench.io.manifest import Manifest
from scgan_bench.registries import DATASETS

from ._common import HR_SIZE, LR_SIZE, file_digest, load_face, options_of, resolve_root, source_path, unique_ids


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


@dataclass
class PairFolder:
    """Given LR/HR pairs: ``ROOT/hr/<path>`` (centre square -> 64 px) with ``ROOT/lr/<same path, any image
    suffix>`` at 16 x 16 px, used as they are (no degradation). A pair missing one side is reported.
    ``hr_dir`` / ``lr_dir`` name the two folders of a published pair set (CelebA-Test's), ``resize_lr`` lets
    its given LR be resized to the protocol's input size, ``published`` is its size (0: any)."""

    name: str = "folder-pairs"
    kind: str = "synthetic"
    default_degradation: str | None = None
    hr_size: int = HR_SIZE
    lr_size: int = LR_SIZE
    hr_dir: str = "hr"
    lr_dir: str = "lr"
    resize_lr: bool = False
    published: int = 0
    default_subdir: str = "folder-pairs"
    containers: tuple[str, ...] = ()   # sub-folders of the root that may hold the two folders
    card: str = "folder.md"

    def locate(self, root: Path | None) -> Path:
        path = resolve_root(self.name, root, self.default_subdir)
        for base in (path, *(path / c for c in self.containers)):
            if (base / self.hr_dir).is_dir() and (base / self.lr_dir).is_dir():
                return base
        raise UsageError(f"dataset {self.name!r}: {path} must hold {self.hr_dir}/ and {self.lr_dir}/ folders with the "
                         f"same file names (datasets/{self.card})")

    def manifest(self, root: Path | None) -> Manifest:
        hd, ld = self.hr_dir, self.lr_dir
        hr = [p.relative_to(root / hd).as_posix() for p in list_images(root / hd)]
        lr = {_stem(p.relative_to(root / ld).as_posix()) for p in list_images(root / ld)}
        if not hr:
            raise UsageError(f"dataset {self.name!r}: no image files under {root / hd}")
        paired = [r for r in hr if _stem(r) in lr]
        rejected = tuple((f"{hd}/{r}", f"no LR image {ld}/{_stem(r)}.* beside it") for r in hr if _stem(r) not in lr)
        rejected += tuple((f"{ld}/{s}", f"no HR image {hd}/ of this name") for s in sorted(lr - {_stem(r) for r in hr}))
        items = tuple(SourceItem(uid, f"{hd}/{rel}") for uid, rel in zip(unique_ids(paired), paired))
        header = {"dataset": self.name, "split": "all", "selection": f"every {hd}/ image with an {ld}/ image of the same "
                  "name, sorted by path; LR given (no degradation)", "root": str(root)}
        if self.published:
            header.update(split="test", published_count=self.published)
            note = count_note(self.name, len(items), self.published)
            if note:
                header["count_note"] = note
        return Manifest(self.name, header["split"], items, header, rejected)

    def _lr_item(self, root: Path, item: SourceItem) -> SourceItem:
        stem = _stem(item.source[len(self.hr_dir) + 1:])
        for p in sorted((root / self.lr_dir / stem).parent.glob(Path(stem).name + ".*")):
            if p.suffix.lower() in IMAGE_SUFFIXES and _stem(p.name) == Path(stem).name:
                return SourceItem(item.id, p.relative_to(root).as_posix())
        raise ImageDecodeError(root / self.lr_dir / stem, "the LR image of this pair is gone")

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        """Both files of the pair: a changed HR or LR image is a changed source."""
        both = file_digest(root, item) + file_digest(root, self._lr_item(root, item))
        return hashlib.sha256(both.encode()).hexdigest()

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        return load_face(root, item, self.hr_size)

    def load_lr(self, root: Path | None, item: SourceItem) -> np.ndarray:
        """The given LR image, as it is: it must be ``lr_size`` square (the protocol's input); with
        ``resize_lr`` a square LR of another size is resized to it (Pillow bicubic, antialiased)."""
        lr_item = self._lr_item(root, item)
        img = read_image(source_path(root, lr_item))
        if self.resize_lr and img.shape[0] == img.shape[1]:
            return load_face(root, lr_item, self.lr_size)
        if img.shape[:2] != (self.lr_size, self.lr_size):
            raise ImageDecodeError(root / lr_item.source, f"{img.shape[1]}x{img.shape[0]} px, but {self.name} takes "
                                   f"{self.lr_size}x{self.lr_size} LR images (the protocol's input), used as given")
        return img

    def options(self) -> Mapping[str, Any]:
        return options_of(self, exclude=("name", "kind", "default_degradation", "hr_dir", "lr_dir", "resize_lr",
                                         "published", "default_subdir", "containers", "card"))


def count_note(name: str, found: int, published: int) -> str:
    """Said in the manifest (and the run) when a published set's folder is not the published size."""
    if found == published:
        return ""
    return (f"{name}: {found:,} images found, the published set has {published:,}: "
            + ("some are missing" if found < published else "the folder holds more than the set")
            + " (numbers then differ from papers')")


def _stem(rel: str) -> str:
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


DATASETS.register("folder", DatasetSpec(
    name="folder", kind="synthetic", card="folder.md",
    summary="any folder of HR face images (centre square -> 64 px), degraded synthetically",
    factory=lambda **kw: ImageFolder(**kw)))
DATASETS.register("folder-lr", DatasetSpec(
    name="folder-lr", kind="real", card="folder.md",
    summary="any folder of real LR face images (centre square -> 16 px), no ground truth",
    factory=lambda **kw: ImageFolder(**{"name": "folder-lr", "kind": "real", "default_degradation": None,
                                        "default_subdir": "folder-lr", **kw})))
DATASETS.register("folder-pairs", DatasetSpec(
    name="folder-pairs", kind="synthetic", card="folder.md",
    summary="given LR/HR pairs: ROOT/hr/* (-> 64 px) and ROOT/lr/* (16 px, used as given, no degradation)",
    factory=lambda **kw: PairFolder(**kw)))
DATASETS.register("webface", DatasetSpec(
    name="webface", kind="real", card="webface.md", default_reference="ffhq",
    summary="WebFace: the paper's 1,028 crawled real LR faces (not public): a folder of LR faces",
    factory=lambda **kw: ImageFolder(**{"name": "webface", "kind": "real", "default_degradation": None,
                                        "default_subdir": "webface", **kw})))
