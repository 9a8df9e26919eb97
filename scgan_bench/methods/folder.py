"""Precomputed SR outputs scored as a method: ``--methods dir:NAME=DIR``.

A researcher's own outputs (64 px for the 16 px inputs that ``scgan-bench export-lr`` writes) are
matched to the run's images by id: ``DIR/<dataset>/<id>.<ext>`` when ``DIR`` has a subfolder named
after the dataset, else ``DIR/<id>.<ext>`` (any image suffix; PNG keeps the numbers exact). Each
missing, ambiguous, unreadable or wrong-size output is a per-image failure naming the file and what is
wrong (the rest are scored); files that match no image of a dataset are reported as extra. The
method's fingerprint holds the sha256 of every file in the folder, so any change to the outputs
recomputes their scores. Paths with commas cannot be given on the command line (``--methods`` is a
comma list); pass such a folder through the Python API (:func:`register_folder_method`).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import UsageError
from ..io.image_io import list_images, read_image
from ..interfaces import MethodSpec
from ..io.manifest import sha256_file
from ..registries import METHODS

PREFIX = "dir:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class FolderOutputs:
    """SR images read from a folder by image id (an id-aware method: the runner passes the ids)."""

    def __init__(self, name: str, folder: Path | str, scale: int = 4) -> None:
        self.name, self.scale = name, scale
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.is_dir():
            raise UsageError(f"method {name}: {self.folder} is not a folder of SR outputs")
        self._files = list_images(self.folder, recursive=True)
        if not self._files:
            raise UsageError(f"method {name}: no image files under {self.folder}")
        lines = [f"{p.relative_to(self.folder).as_posix()}\t{sha256_file(p) if p.is_file() else 'unreadable'}"
                 for p in self._files]
        self._digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        self._index: dict[str, dict[str, list[Path]]] = {}

    def dataset_dir(self, dataset: str) -> Path:
        sub = self.folder / dataset
        return sub if sub.is_dir() else self.folder

    def outputs(self, dataset: str) -> dict[str, list[Path]]:
        """Image id -> the files named after it in the dataset's folder (its own files only)."""
        if dataset not in self._index:
            d = self.dataset_dir(dataset)
            index: dict[str, list[Path]] = {}
            for p in self._files:
                if p.parent == d:
                    index.setdefault(p.stem, []).append(p)
            self._index[dataset] = index
        return self._index[dataset]

    def extra_files(self, dataset: str, ids: list[str]) -> list[Path]:
        """Files of the dataset's folder whose name matches none of ``ids``."""
        known = set(ids)
        return [p for stem, paths in self.outputs(dataset).items() if stem not in known for p in paths]

    def has_own_folder(self, dataset: str) -> bool:
        return self.dataset_dir(dataset) != self.folder

    def upscale_ids(self, lr: torch.Tensor, ids: list[str], dataset: str) -> torch.Tensor:
        h, w = lr.shape[-2] * self.scale, lr.shape[-1] * self.scale
        index, d = self.outputs(dataset), self.dataset_dir(dataset)
        out = []
        for image_id in ids:
            paths = index.get(image_id, [])
            if not paths:
                raise FileNotFoundError(f"{d}: no output for image {image_id!r} (expected {d / image_id}.png; "
                                        "`scgan-bench export-lr` writes the inputs under these names)")
            if len(paths) > 1:
                raise ValueError(f"{d}: several outputs for image {image_id!r}: "
                                 f"{', '.join(p.name for p in paths)}")
            img = read_image(paths[0])
            if img.shape[:2] != (h, w):
                raise ValueError(f"{paths[0]}: {img.shape[1]}x{img.shape[0]} px, expected {w}x{h} "
                                 f"(x{self.scale} of the {lr.shape[-1]}x{lr.shape[-2]} input)")
            out.append(img)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div_(255.0).to(lr.device)

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        raise UsageError(f"method {self.name} reads precomputed outputs by image id; the runner passes them")

    def fingerprint(self) -> Mapping[str, Any]:
        return {"method": "folder", "name": self.name, "folder": str(self.folder), "files": len(self._files),
                "files_sha256": self._digest, "version": 1}


def register_folder_method(name: str, folder: Path | str) -> str:
    """Register ``name`` as the precomputed outputs in ``folder`` (a name already used by a ``dir:``
    method of this process is re-pointed; any other existing method name is refused)."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"dir:{name}=...: a method name is letters, digits and . _ + - (got {name!r})")
    path = Path(folder).expanduser().resolve()
    if name in METHODS and name not in _FOLDERS:
        raise UsageError(f"dir:{name}={folder}: {name!r} is already a method; choose another name")
    if not path.is_dir():
        raise UsageError(f"dir:{name}={folder}: {path} is not a folder")
    spec = MethodSpec(name=name, factory=lambda device="cpu", _n=name, _p=path: FolderOutputs(_n, _p),
                      summary=f"precomputed outputs in {path}", license="yours (precomputed outputs)")
    if name in _FOLDERS:  # a dir: method of this process pointed at another folder
        METHODS.replace(name, spec)
    else:
        METHODS.register(name, spec)
    _FOLDERS[name] = path
    return name


_FOLDERS: dict[str, Path] = {}  # the folder each registered dir: method reads


def expand_folder_methods(methods: str | list[str]) -> list[str]:
    """``--methods`` entries with ``dir:NAME=DIR`` registered and replaced by ``NAME``."""
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    out = []
    for item in (i.strip() for i in items):
        if item.startswith(PREFIX):
            name, sep, folder = item[len(PREFIX):].partition("=")
            if not sep or not name or not folder:
                raise UsageError(f"--methods {item!r}: expected dir:NAME=FOLDER")
            item = register_folder_method(name.strip(), folder.strip())
        if item:
            out.append(item)
    return out
