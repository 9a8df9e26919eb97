"""The blind-face-restoration test sets of GFPGAN, VQFR, CodeFormer, RestoreFormer++, DifFace and later papers,
read in the layout their authors distribute them:

* ``celeba-test``: 3,000 synthetic pairs (GFPGAN): ``celeba_512_validation/`` (HQ) beside
  ``celeba_512_validation_lq/`` (LQ), paired by file name;
* ``lfw-test`` (1,711), ``webphoto-test`` (407), ``wider-test`` (970), ``celebchild-test`` (180): real
  low-quality faces, no ground truth, one folder each.

Every set is 512 px aligned faces: under ``--protocol bfr-512`` they are used as they are; under SCGAN's
protocol they are resized to its sizes (stated in each card). A set whose file count differs from the
published one is still scored, and the difference is said (``Manifest.header['count_note']``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scgan_bench.errors import UsageError
from scgan_bench.interfaces import DatasetSpec, SourceItem
from scgan_bench.io.manifest import Manifest
from scgan_bench.registries import DATASETS

from ._common import LR_SIZE, file_digest, load_face, options_of, resolve_root
from .folder import PairFolder, count_note, folder_manifest


def find_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    """``root`` itself when its name is one of ``names`` (any case), else such a child of ``root``, or such a
    child of that child (archives often unpack to ``X/X``); None when there is none."""
    wanted = {n.lower() for n in names}

    def child(p: Path) -> Path | None:
        hits = sorted(c for c in p.iterdir() if c.is_dir() and c.name.lower() in wanted) if p.is_dir() else []
        return hits[0] if hits else None

    here = root if root.name.lower() in wanted else child(root)
    if here is None:
        return None
    nested = child(here)
    return nested if nested is not None and not list_images_shallow(here) else here


def list_images_shallow(folder: Path) -> list[Path]:
    from scgan_bench.io.image_io import IMAGE_SUFFIXES

    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


@dataclass
class RealBFRSet:
    """A folder of real low-quality faces (``lfw-test``, ``webphoto-test``, ``wider-test``, ``celebchild-test``)."""

    name: str
    folders: tuple[str, ...] = ()
    published: int = 0
    kind: str = "real"
    default_degradation: str | None = None
    lr_size: int = LR_SIZE

    def locate(self, root: Path | None) -> Path:
        path = resolve_root(self.name, root, self.folders[0])
        found = find_folder(path, self.folders)
        if found is None and not list_images_shallow(path):
            raise UsageError(f"dataset {self.name!r}: {path} holds no images and no folder named "
                             f"{' or '.join(self.folders)} (datasets/{self.name}.md)")
        return found or path

    def manifest(self, root: Path | None) -> Manifest:
        listed = folder_manifest(self.name, root, "test")
        header = {**listed.header, "published_count": self.published}
        note = count_note(self.name, len(listed.items), self.published)
        if note:
            header["count_note"] = note
        return Manifest(self.name, "test", listed.items, header)

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        return file_digest(root, item)

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        return load_face(root, item, self.lr_size)

    def options(self) -> Mapping[str, Any]:
        return options_of(self, exclude=("name", "kind", "default_degradation", "folders", "published"))


CELEBA_HQ, CELEBA_LQ = "celeba_512_validation", "celeba_512_validation_lq"


#: name -> (folder names as distributed, published count, summary)
REAL_SETS = {
    "lfw-test": (("LFW-Test", "lfw_test", "lfw-test"), 1711,
                 "LFW-Test: 1,711 low-quality LFW faces (GFPGAN's real-world test set), 512 px aligned"),
    "webphoto-test": (("WebPhoto-Test", "webphoto_test", "webphoto-test"), 407,
                      "WebPhoto-Test: 407 low-quality faces from web photos (GFPGAN), 512 px aligned"),
    "wider-test": (("WIDER-Test", "Wider-Test", "wider_test", "wider-test"), 970,
                   "WIDER-Test: 970 severely degraded WIDER FACE faces (CodeFormer), 512 px aligned"),
    "celebchild-test": (("CelebChild-Test", "celebchild_test", "celebchild-test"), 180,
                        "CelebChild-Test: 180 childhood photos of celebrities (GFPGAN), 512 px aligned"),
}

for _name, (_folders, _count, _summary) in REAL_SETS.items():
    DATASETS.register(_name, DatasetSpec(
        name=_name, kind="real", card=f"{_name}.md", default_reference="ffhq", summary=_summary,
        factory=lambda _n=_name, _f=_folders, _c=_count, **kw: RealBFRSet(name=_n, folders=_f, published=_c, **kw)))

def celeba_test(**options: Any) -> PairFolder:
    """CelebA-Test: GFPGAN's 3,000 synthetic pairs, ``celeba_512_validation/`` (HQ) beside
    ``celeba_512_validation_lq/`` (LQ, given: no degradation of ours; resized to the protocol's input size
    when it is not 512 px)."""
    return PairFolder(**{"name": "celeba-test", "hr_dir": CELEBA_HQ, "lr_dir": CELEBA_LQ, "resize_lr": True,
                         "published": 3000, "default_subdir": "celeba", "containers": ("celeba", "CelebA-Test"),
                         "card": "celeba-test.md", **options})


DATASETS.register("celeba-test", DatasetSpec(
    name="celeba-test", kind="synthetic", card="celeba-test.md",
    summary="CelebA-Test: GFPGAN's 3,000 synthetic LQ/HQ pairs (celeba_512_validation{,_lq}/), LQ given",
    factory=celeba_test))
