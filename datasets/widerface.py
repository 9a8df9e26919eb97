"""WIDER FACE (Yang et al., CVPR 2016): real low-resolution faces cropped from the official
annotation files ``wider_face_{train,val}_bbx_gt.txt``.

Each annotated box is first clipped to its photo (a box left empty, e.g. one with negative x/y or
lying outside the photo, is dropped and reported with its annotation line in the run's failures.csv),
then becomes a square crop (side = max(w, h), centred on the box, edge-replicated where the square
leaves the photo), resized to 16 px with Pillow's antialiased bicubic filter. Faces are kept only
when they pass the documented filters (defaults below); then a seeded draw picks ``n`` of them:
``test`` = 2,000 from the validation annotations, ``train`` = 4,000 from the training annotations.
Ids are ``<event>__<photo stem>__f<index of the box in the annotation>``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from scgan_bench.errors import DatasetUnavailableError, UsageError
from scgan_bench.interfaces import DatasetSpec, SourceItem
from scgan_bench.io.manifest import Manifest, generated_manifest, seeded_selection, sha256_file
from scgan_bench.registries import DATASETS
from scgan_bench.io.resize import square_crop_box

from ._common import (LR_SIZE, check_split, file_digest, id_from_relpath, load_face, options_of, resolve_root,
                      source_path)

ATTRS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


@dataclass(frozen=True)
class WiderBox:
    image: str  # relative to WIDER_<split>/images/
    index: int
    x: int
    y: int
    w: int
    h: int
    attrs: Mapping[str, int]
    line: int = 0  # 1-based line of the box in the annotation file


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}); is this the "
                         "official annotation file?") from None


def parse_annotations(path: Path) -> list[WiderBox]:
    """Parse an official ``wider_face_*_bbx_gt.txt`` (photo line, count line, one line per box;
    a photo with 0 boxes is followed by one all-zero line). Raises UsageError naming the file and line
    of anything malformed (non-numeric or non-finite values, a count that runs past the end, an empty
    file)."""
    lines = _text(path).splitlines()
    out: list[WiderBox] = []
    i = 0
    photos = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            raise UsageError(f"{path}:{i + 1}: expected an image path, got {name!r}")
        try:
            count = int(lines[i + 1].strip())
            if count < 0:
                raise ValueError
        except (IndexError, ValueError):
            raise UsageError(f"{path}:{i + 2}: expected the number of faces for {name}") from None
        rows = lines[i + 2:i + 2 + max(count, 1)]
        if len(rows) < max(count, 1):
            raise UsageError(f"{path}: {name} announces {count} faces but the file ends early")
        for k, row in enumerate(rows[:count]):
            lineno = i + 3 + k
            vals = row.split()
            if len(vals) < 10:
                raise UsageError(f"{path}:{lineno}: expected 10 numbers, got {row!r}")
            try:
                nums = [float(v) for v in vals[:10]]
            except ValueError:
                raise UsageError(f"{path}:{lineno}: expected 10 numbers, got {row!r}") from None
            if not all(math.isfinite(v) for v in nums):
                raise UsageError(f"{path}:{lineno}: non-finite value in {row!r}")
            x, y, w, h, *attr = (int(v) for v in nums)
            out.append(WiderBox(name, k, x, y, w, h, dict(zip(ATTRS, attr)), lineno))
        photos += 1
        i += 2 + max(count, 1)
    if photos == 0:
        raise UsageError(f"{path}: the annotation file is empty (no photos)")
    return out


def clip_to_photo(b: WiderBox, size: tuple[int, int] | None) -> WiderBox | None:
    """The box clipped to the photo (``size = (width, height)``, None when unknown: clipped at 0 only);
    None when nothing of it is left."""
    x0, y0 = max(b.x, 0), max(b.y, 0)
    x1, y1 = b.x + b.w, b.y + b.h
    if size is not None:
        x1, y1 = min(x1, size[0]), min(y1, size[1])
    if x1 <= x0 or y1 <= y0:
        return None
    return WiderBox(b.image, b.index, x0, y0, x1 - x0, y1 - y0, b.attrs, b.line)


def _photo_size(root: Path, rel: str) -> tuple[int, int] | None:
    """A photo's (width, height) from its header, or None (missing, unreadable, outside the root:
    such a photo is reported when it is loaded)."""
    try:
        path = source_path(root, SourceItem("", rel))
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 (reported at load time with the real reason)
        return None


def find_annotation(root: Path, subset: str) -> Path:
    fname = f"wider_face_{subset}_bbx_gt.txt"
    for cand in (root / "wider_face_split" / fname, root / fname):
        if cand.is_file():
            return cand
    raise DatasetUnavailableError(
        f"dataset 'widerface': annotation file {fname} not found under {root}/wider_face_split/ or "
        f"{root}/ (download wider_face_split.zip from the WIDER FACE site)")


@dataclass
class WiderFace:
    """Real LR faces from WIDER FACE with size / blur / occlusion / pose filters."""

    name: str = "widerface"
    kind: str = "real"
    default_degradation: str | None = None
    split: str = "test"
    n: int = 0  # 0 = the paper's count for the split (2,000 test, 4,000 train)
    min_size: int = 16        # min(w, h) in source pixels: no face is upsampled into 16 px
    max_size: int = 64        # max(w, h): faces larger than this are not "low resolution"
    max_blur: int = 2         # 0 clear, 1 normal, 2 heavy: real blur is kept by default
    max_occlusion: int = 0    # 0 none, 1 partial, 2 heavy
    typical_pose_only: bool = True
    seed: int = 2205
    lr_size: int = LR_SIZE

    def __post_init__(self) -> None:
        check_split(self.name, self.split, ("test", "train"))
        if self.min_size < 1 or self.max_size < self.min_size:
            raise UsageError(f"widerface: need 1 <= min_size <= max_size, got {self.min_size}, {self.max_size}")

    @property
    def subset(self) -> str:
        return "val" if self.split == "test" else "train"

    @property
    def count(self) -> int:
        return self.n or (2000 if self.split == "test" else 4000)

    def keep(self, b: WiderBox) -> bool:
        """The documented filters (attributes and side lengths) on a box (clipped to its photo)."""
        return self.keep_attrs(b) and min(b.w, b.h) >= self.min_size and max(b.w, b.h) <= self.max_size

    def locate(self, root: Path | None) -> Path:
        return resolve_root(self.name, root, "widerface")

    def keep_attrs(self, b: WiderBox) -> bool:
        a = b.attrs
        return (a["invalid"] == 0 and a["blur"] <= self.max_blur and a["occlusion"] <= self.max_occlusion
                and (a["pose"] == 0 or not self.typical_pose_only))

    def manifest(self, root: Path | None) -> Manifest:
        ann = find_annotation(root, self.subset)
        images = f"WIDER_{self.subset}/images"
        key = {"annotation_sha256": sha256_file(ann), **self.options(), "v": 2}

        def build() -> Manifest:
            boxes = [b for b in parse_annotations(ann) if self.keep_attrs(b)]
            sizes = {name: _photo_size(root, f"{images}/{name}") for name in dict.fromkeys(b.image for b in boxes)}
            rejected, clipped = [], []
            for b in boxes:
                unsafe = b.image.startswith(("/", "\\")) or ".." in Path(b.image).parts
                c = None if unsafe else clip_to_photo(b, sizes[b.image])
                if c is None:
                    size = sizes.get(b.image)
                    why = ("its photo path leaves the image folder" if unsafe else
                           f"box x={b.x} y={b.y} w={b.w} h={b.h} is empty once clipped to the "
                           + (f"{size[0]}x{size[1]} photo" if size else "photo"))
                    rejected.append((f"{images}/{b.image}", f"{ann.name}:{b.line}: {why}; dropped"))
                else:
                    clipped.append(c)
            kept: dict[str, WiderBox] = {}
            seen: dict[str, WiderBox] = {}
            for b in clipped:
                uid = f"{id_from_relpath(b.image)}__f{b.index:03d}"
                if uid in seen:   # a photo listed twice: the first listing counts, this face is reported
                    rejected.append((f"{images}/{b.image}", f"{ann.name}:{b.line}: the photo is listed again (its "
                                     f"face {b.index} is already read from line {seen[uid].line}); dropped"))
                    continue
                seen[uid] = b
                if self.keep(b):
                    kept[uid] = b
            chosen = seeded_selection(list(kept), self.count, self.seed)
            items = tuple(SourceItem(i, f"{images}/{kept[i].image}",
                                     square_crop_box(kept[i].x, kept[i].y, kept[i].w, kept[i].h))
                          for i in chosen)
            header = {"dataset": self.name, "split": self.split, "annotation": ann.name,
                      "annotation_sha256": key["annotation_sha256"],
                      "filters": f"invalid=0, {self.min_size}<=side<={self.max_size}, "
                                 f"blur<={self.max_blur}, occlusion<={self.max_occlusion}, "
                                 f"typical_pose_only={self.typical_pose_only}",
                      "candidates": f"{len(kept)} boxes pass the filters",
                      "clipping": f"boxes clipped to their photo; {len(rejected)} empty ones dropped",
                      "selection": f"random.Random({self.seed}).sample, k={self.count}, sorted"}
            return Manifest(self.name, self.split, items, header, rejected=tuple(rejected))

        return generated_manifest(self.name, self.split, root, key, build)

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        return file_digest(root, item)

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        return load_face(root, item, self.lr_size)

    def options(self) -> Mapping[str, Any]:
        return options_of(self)


DATASETS.register("widerface", DatasetSpec(
    name="widerface", kind="real", card="widerface.md", factory=lambda **kw: WiderFace(**kw),
    default_reference="ffhq",
    summary="WIDER FACE: 2,000 real LR faces (val annotations, filtered), 16 px, no ground truth"))
