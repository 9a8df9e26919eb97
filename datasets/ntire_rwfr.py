"""The NTIRE 2025 and 2026 Real-World Face Restoration challenges' test and validation sets, in the
organisers' layout (``zhengchen1999/NTIRE2025_RealWorld_Face_Restoration``,
``jkwang28/NTIRE2026_RealWorld_Face_Restoration``)::

    ROOT/test/CelebA/*.png  ROOT/test/CelebChild-Test/  ROOT/test/LFW-Test/  ROOT/test/WIDER-Test/
    ROOT/test/WebPhoto-Test/   (and ROOT/val/...)
    ROOT/test_face.csv (2025) or ROOT/test_2026_face.csv (2026), or under ROOT/face_alignment/

The landmark file is the organisers' (``face_alignment/`` of their repository): per image its ``filename``
(the file's stem, unique across subsets), ``dataset`` (its subset), face box ``x1,y1,x2,y2`` and five points
(left eye, right eye, nose, left and right mouth corners). Every image must have its row and every row
its image: the others are named (``failures.csv``, stage ``annotation``); the test set is 450 faces
(CelebA 100, LFW-Test 100, CelebChild-Test 50, WebPhoto-Test 100, WIDER-Test 100).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scgan_bench.errors import UsageError
from scgan_bench.interfaces import DatasetSpec, SourceItem
from scgan_bench.io.image_io import list_images
from scgan_bench.io.manifest import Manifest
from scgan_bench.registries import DATASETS

from ._common import LR_SIZE, file_digest, load_face, options_of, resolve_root

#: the subsets, by their canonical name -> the spellings the folders and the landmark files use
SUBSETS = {"CelebA": ("CelebA",), "LFW-Test": ("LFW-Test",), "CelebChild-Test": ("CelebChild-Test",),
           "WebPhoto-Test": ("WebPhoto-Test",), "WIDER-Test": ("WIDER-Test", "Wider-Test")}
#: images per subset of the test set (eval.py's dataset_counts, both years)
TEST_COUNTS = {"CelebA": 100, "LFW-Test": 100, "CelebChild-Test": 50, "WebPhoto-Test": 100, "WIDER-Test": 100}
LANDMARK_FILES = {2025: {"test": "test_face.csv", "val": "val_face.csv"}, 2026: {"test": "test_2026_face.csv"}}
POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def canonical_subset(name: str) -> str | None:
    low = name.lower()
    return next((k for k, spellings in SUBSETS.items() if low in {s.lower() for s in spellings}), None)


@dataclass(frozen=True)
class Landmarks:
    """One row of the organisers' landmark file."""

    subset: str
    box: tuple[float, float, float, float]
    points: np.ndarray   # 5 x 2 (x, y), in the 512 px image's pixels


def read_landmarks(path: Path) -> dict[str, Landmarks]:
    """filename -> :class:`Landmarks`; a malformed row is a UsageError naming the file and the line."""
    want = ["filename", "dataset", "x1", "y1", "x2", "y2"] + [f"{p}_{c}" for p in POINTS for c in "xy"]
    out: dict[str, Landmarks] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in want if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(f"{path}: not the organisers' landmark file (no column {', '.join(missing)})")
        for line, row in enumerate(reader, start=2):
            subset = canonical_subset(row["dataset"])
            if subset is None:
                raise UsageError(f"{path}, line {line}: unknown subset {row['dataset']!r}; the subsets: "
                                 f"{', '.join(SUBSETS)}")
            try:
                box = tuple(float(row[c]) for c in ("x1", "y1", "x2", "y2"))
                pts = np.array([[float(row[f"{p}_x"]), float(row[f"{p}_y"])] for p in POINTS])
            except (TypeError, ValueError):
                raise UsageError(f"{path}, line {line}: a coordinate is not a number") from None
            if row["filename"] in out:
                raise UsageError(f"{path}, line {line}: {row['filename']!r} is listed twice")
            out[row["filename"]] = Landmarks(subset, box, pts)   # type: ignore[arg-type]
    return out


@dataclass
class NTIRESet:
    """One year's real-world face restoration set (``split`` test or val; ``subset`` all or one of five)."""

    name: str = "ntire2025-rwfr"
    year: int = 2025
    split: str = "test"
    subset: str = "all"
    kind: str = "real"
    default_degradation: str | None = None
    lr_size: int = LR_SIZE

    def __post_init__(self) -> None:
        if self.split not in ("test", "val"):
            raise UsageError(f"dataset {self.name!r}: split must be test or val, got {self.split!r}")
        if self.subset != "all" and canonical_subset(self.subset) is None:
            raise UsageError(f"dataset {self.name!r}: subset must be all or one of {', '.join(SUBSETS)}, "
                             f"got {self.subset!r}")

    def locate(self, root: Path | None) -> Path:
        path = resolve_root(self.name, root, self.name)
        if not (path / self.split).is_dir():
            raise UsageError(f"dataset {self.name!r}: {path} has no {self.split}/ folder (the organisers' layout: "
                             f"ROOT/{self.split}/<subset>/*.png; datasets/ntire-rwfr.md)")
        return path

    def landmark_file(self, root: Path) -> Path | None:
        name = LANDMARK_FILES.get(self.year, {}).get(self.split)
        if name is None:
            return None
        for p in (root / name, root / "face_alignment" / name):
            if p.is_file():
                return p
        return None

    def landmarks(self, root: Path) -> dict[str, Landmarks]:
        """The organisers' five points and box per image id (a UsageError when the file is absent)."""
        path = self.landmark_file(root)
        if path is None:
            name = LANDMARK_FILES.get(self.year, {}).get(self.split, "none published")
            raise UsageError(f"dataset {self.name!r}: no landmark file for {self.split} ({name}) in {root} or "
                             f"{root / 'face_alignment'}: copy it from the organisers' repository's face_alignment/")
        return read_landmarks(path)

    def _subset_folders(self, root: Path) -> dict[str, Path]:
        out = {}
        for d in sorted(p for p in (root / self.split).iterdir() if p.is_dir()):
            canon = canonical_subset(d.name)
            if canon is None:
                raise UsageError(f"dataset {self.name!r}: {d} is not one of the subsets ({', '.join(SUBSETS)})")
            if canon in out:
                raise UsageError(f"dataset {self.name!r}: {out[canon]} and {d} are the same subset")
            out[canon] = d
        return out

    def manifest(self, root: Path | None) -> Manifest:
        folders = self._subset_folders(root)
        chosen = list(folders) if self.subset == "all" else [canonical_subset(self.subset)]
        for s in chosen:
            if s not in folders:
                raise UsageError(f"dataset {self.name!r}: no {self.split}/{s}/ folder under {root}")
        marks = self.landmarks(root) if self.landmark_file(root) is not None else None
        items, rejected, seen = [], [], {}
        for s in chosen:
            for p in list_images(folders[s]):
                rel = p.relative_to(root).as_posix()
                uid = p.stem
                if uid in seen:
                    raise UsageError(f"dataset {self.name!r}: {seen[uid]} and {rel} have one file name; the organisers' "
                                     "ids are file names, unique across subsets")
                seen[uid] = rel
                if marks is not None and uid not in marks:
                    rejected.append((rel, f"no row for {uid!r} in {self.landmark_file(root).name}"))
                    continue
                if marks is not None and marks[uid].subset != s:
                    rejected.append((rel, f"{self.landmark_file(root).name} lists {uid!r} in {marks[uid].subset}, "
                                          f"not {s}"))
                    continue
                items.append(SourceItem(uid, rel))
        if marks is not None:
            rejected += [(f"{self.split}/{m.subset}/{uid}.png", f"listed in {self.landmark_file(root).name}, no image")
                         for uid, m in sorted(marks.items()) if uid not in seen and (m.subset in chosen)]
        if not items:
            raise UsageError(f"dataset {self.name!r}: no images under {root / self.split}")
        header: dict[str, Any] = {"dataset": self.name, "split": self.split, "subset": self.subset, "root": str(root),
                                  "selection": "every image of the chosen subsets, by subset then path",
                                  "landmarks": self.landmark_file(root).name if marks is not None else None,
                                  "subsets": {s: sum(1 for it in items if it.source.startswith(
                                      folders[s].relative_to(root).as_posix() + "/")) for s in chosen}}
        if self.split == "test":
            notes = [f"{s}: {header['subsets'][s]} images, the challenge's {TEST_COUNTS[s]}" for s in chosen
                     if header["subsets"][s] != TEST_COUNTS[s]]
            if notes:
                header["count_note"] = "; ".join(notes)
        return Manifest(self.name, self.split, tuple(items), header, tuple(rejected))

    def subset_of(self, item: SourceItem) -> str:
        """The subset an item belongs to (its folder)."""
        canon = canonical_subset(item.source.split("/")[1])
        if canon is None:
            raise ValueError(f"{item.source}: not under a subset folder")
        return canon

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        return file_digest(root, item)

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        return load_face(root, item, self.lr_size)

    def options(self) -> Mapping[str, Any]:
        return options_of(self, exclude=("name", "kind", "default_degradation", "year"))


for _year in (2025, 2026):
    DATASETS.register(f"ntire{_year}-rwfr", DatasetSpec(
        name=f"ntire{_year}-rwfr", kind="real", card="ntire-rwfr.md", default_reference="ffhq",
        summary=f"NTIRE {_year} Real-World Face Restoration: 450 test faces from 5 subsets, the organisers' "
                "5-point landmarks (options split=test|val, subset=all|CelebA|LFW-Test|...)",
        factory=lambda _y=_year, **kw: NTIRESet(**{"name": f"ntire{_y}-rwfr", "year": _y, **kw})))
