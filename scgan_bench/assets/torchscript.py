"""Tensors out of a TorchScript archive without running it.

Some official weights ship only as a TorchScript archive (OpenAI's CLIP ``RN50.pt``). ``torch.jit.load``
would run the archive's code and ``torch.load(weights_only=True)`` refuses such archives, so this reads
the zip itself: ``<root>/data.pkl`` is unpickled with a whitelist (tensor rebuilds, ``OrderedDict``, the
storage types; every ``__torch__.*`` module class becomes an inert attribute holder), tensors come from
``<root>/data/<key>`` as raw little-endian bytes, and the module tree is flattened into a state dict
whose keys equal ``torch.jit.load(path).state_dict()``'s. Any other global in the pickle is refused,
naming the file.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from ..errors import UsageError


class ArchiveError(UsageError):
    """The file is not a TorchScript archive this reader accepts."""


class _Module:
    """What a ``__torch__`` class becomes: its pickled attributes, nothing else."""

    def __init__(self, *args: Any) -> None:
        if args:
            raise pickle.UnpicklingError("a TorchScript module object was built with arguments")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"a TorchScript module's state is a {type(state).__name__}, not a dict")
        self.__dict__["_attrs"] = state


def _dtypes() -> dict[str, Any]:
    import torch

    return {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
            "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
            "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
            "BoolStorage": torch.bool}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, root: str, where: Path) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.zf, self.root, self.where = zf, root, where
        self.storages: dict[str, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        import collections

        if module == "__torch__" or module.startswith("__torch__."):
            return _Module
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _dtypes():
            return _dtypes()[name]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights archive")

    def persistent_load(self, pid: Any) -> Any:
        import torch

        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"storage of unknown type {dtype!r}")
        if key not in self.storages:
            raw = bytearray(self.zf.read(f"{self.root}/data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if flat.numel() < numel:
                raise pickle.UnpicklingError(f"storage {key} holds {flat.numel()} values, the pickle says {numel}")
            self.storages[key] = flat
        return self.storages[key]


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, requires_grad: bool = False,
                    hooks: Any = None, metadata: Any = None) -> Any:
    view = storage.as_strided(tuple(size), tuple(stride), offset)
    if view.numel() > storage.numel():   # a broadcast view would be materialised by the copy: no weight is one
        raise pickle.UnpicklingError(f"a tensor of shape {tuple(size)} is a broadcast view of {storage.numel()} "
                                     "stored values")
    return view.clone()


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    import torch

    for name, value in obj._attrs.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _Module):
            _flatten(value, f"{prefix}{name}.", out)


def read_state_dict(path: Path | str) -> dict[str, Any]:
    """The tensors of TorchScript archive ``path`` as ``{dotted.name: tensor}`` (parameters, buffers and
    tensor attributes, as ``torch.jit.load(path).state_dict()`` lists them), no code run."""
    from .safeload import check_archive

    path = Path(path)
    check_archive(path, "TorchScript archive")   # member and storage sizes, before anything is read
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{path}: not a TorchScript archive ({exc})") from None
    with zf:
        roots = [n[: -len("/data.pkl")] for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(roots) != 1 or not any(n.startswith(f"{roots[0]}/code/") for n in zf.namelist()):
            raise ArchiveError(f"{path}: not a TorchScript archive (no single <root>/data.pkl beside <root>/code/)")
        root = roots[0]
        order = zf.read(f"{root}/byteorder").decode().strip() if f"{root}/byteorder" in zf.namelist() else "little"
        if order != "little":
            raise ArchiveError(f"{path}: {order}-endian tensors are not supported")
        try:
            top = _Unpickler(zf.read(f"{root}/data.pkl"), zf, root, path).load()
        except (pickle.UnpicklingError, KeyError, ValueError, RuntimeError, EOFError) as exc:
            raise ArchiveError(f"{path}: refused to read {root}/data.pkl: {exc}") from None
    if not isinstance(top, _Module):
        raise ArchiveError(f"{path}: data.pkl does not hold a module (got {type(top).__name__})")
    out: dict[str, Any] = {}
    _flatten(top, "", out)
    return out


def is_torchscript(path: Path | str) -> bool:
    """Whether ``path`` is a zip holding ``<root>/data.pkl`` and ``<root>/code/`` (a TorchScript archive)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    roots = {n.split("/", 1)[0] for n in names if n.endswith("/data.pkl") and n.count("/") == 1}
    return any(any(n.startswith(f"{r}/code/") for n in names) for r in roots)
