"""Loading a weight file without trusting what it declares.

``torch.load(weights_only=True)`` runs no pickled code, but it still allocates what a file declares: a
3 KB archive can declare gigabyte storages, a compressed zip member can inflate to gigabytes, a tensor can
be a zero-stride view whose shape implies a network far wider than the file. Before anything is allocated,
:func:`check_archive` reads the file's pickle with an inert unpickler (every global becomes a placeholder:
nothing runs, nothing large is built) and refuses a file whose

* zip members would expand past the budget (``torch.save`` stores them uncompressed),
* declared storages are larger than the bytes the file holds for them,

and after loading, :func:`check_tensors` refuses tensors whose shapes promise more values than their
storage holds past the budget. The budget is ``max(4 x the file's size, 64 MiB)``
(:data:`EXPANSION`, :data:`MIN_BUDGET`). Every refusal, and every error of ``torch.load`` or safetensors,
is one line naming the file, what is wrong and what to do (:func:`torch_load`, :func:`safetensors_load`).
"""
from __future__ import annotations

import io
import pickle
import re
import stat
import zipfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import WeightsError

#: how many times its own size a file may expand to when loaded
EXPANSION = 4
#: the budget of a small file (its pickle, bookkeeping)
MIN_BUDGET = 64 << 20

_ITEMSIZE = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
             "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "Untyped": 1, "QInt8": 1, "QUInt8": 1,
             "QInt32": 4, "QUInt4x2": 1, "QUInt2x4": 1}


def budget(size: int) -> int:
    """What a file of ``size`` bytes may expand to when loaded."""
    return max(EXPANSION * size, MIN_BUDGET)


def said(exc: BaseException, limit: int = 160) -> str:
    """An exception's text on one line, cut to ``limit`` characters (its type when it has none)."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def _refuse(what: str, path: Path, why: str, fix: str = "") -> WeightsError:
    return WeightsError(f"{what}: {path} {why}" + (f"; {fix}" if fix else ""))


class _Inert:
    """What every global of a scanned pickle becomes: accepts any construction, holds nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _StorageType(_Inert):
    itemsize = 8


def _storage_type(name: str) -> type:
    base = name[:-len("Storage")] if name.endswith("Storage") else name
    return type(name, (_StorageType,), {"itemsize": _ITEMSIZE.get(base, 8)})


class _Scanner(pickle.Unpickler):
    """Collects ``(key, declared bytes)`` of every persistent storage; builds nothing."""

    def __init__(self, f: Any) -> None:
        super().__init__(f)
        self.storages: dict[str, int] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name.endswith("Storage"):
            return _storage_type(name)
        return type(name, (_Inert,), {})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            kind, key, numel = pid[1], str(pid[2]), pid[4]
            size = getattr(kind, "itemsize", 8)
            if isinstance(numel, int) and numel >= 0:
                self.storages[key] = max(self.storages.get(key, 0), numel * size)
        return _Inert()


def _scan(data: Any) -> dict[str, int]:
    sc = _Scanner(data)
    sc.load()
    return sc.storages


def file_size(path: Path, what: str) -> int:
    """The size of a regular file; a pipe, device, folder or unreadable path is refused by name."""
    try:
        st = path.stat()
    except OSError as exc:
        raise _refuse(what, path, f"cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(what, path, "is not a regular file (a pipe, device or folder)", "point to the weight file itself")
    return st.st_size


def check_archive(path: Path, what: str, data: io.BytesIO | None = None) -> int:
    """Refuse (:class:`WeightsError`) a file that is not a regular file, or whose declared contents exceed
    what it holds or the budget, before anything is allocated (``data``: the file's bytes, already in
    memory, ``path`` then only names it). Returns the file's size."""
    size = len(data.getbuffer()) if data is not None else file_size(path, what)
    if size == 0:
        raise _refuse(what, path, "is empty", "download it again")
    src: Any = data if data is not None else path
    if zipfile.is_zipfile(src):
        _check_zip(src, path, what, budget(size))
    elif _starts_like_zip(src):
        raise _refuse(what, path, "is a damaged zip archive (no central directory: cut short?)", "download it again")
    else:
        _check_legacy(src, path, what, size)
    if data is not None:
        data.seek(0)
    return size


def _starts_like_zip(src: Any) -> bool:
    if isinstance(src, Path):
        with open(src, "rb") as f:
            head = f.read(4)
    else:
        src.seek(0)
        head = src.read(4)
    return head == b"PK\x03\x04"


def _check_zip(src: Any, path: Path, what: str, limit: int) -> None:
    try:
        with zipfile.ZipFile(src) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            pkl = [i for i in infos if i.filename.endswith("data.pkl")]
            sizes = {i.filename: i.file_size for i in infos}
            declared = _scan(io.BytesIO(zf.read(pkl[0]))) if pkl and total <= limit else {}
    except zipfile.BadZipFile as exc:
        raise _refuse(what, path, f"is a damaged zip archive ({exc})", "download it again") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            RecursionError, MemoryError) as exc:
        raise _refuse(what, path, f"has an unreadable pickle ({type(exc).__name__}: {str(exc)[:120]})",
                      "download it again") from None
    if total > limit:
        raise _refuse(what, path, f"is a zip archive whose members expand to {total:,} bytes, more than "
                      f"{EXPANSION} x its size ({limit:,}): not a file torch.save writes (a zip bomb?)",
                      "use the official file")
    if not pkl:
        return   # not a torch archive: torch.load refuses it (its message is rewritten)
    root = pkl[0].filename[:-len("data.pkl")]
    for key, nbytes in declared.items():
        have = sizes.get(f"{root}data/{key}")
        if have is None:
            raise _refuse(what, path, f"declares storage {key!r} but holds no record for it", "download it again")
        if nbytes > have:
            raise _refuse(what, path, f"declares storage {key!r} of {nbytes:,} bytes but holds {have:,}: "
                          "damaged or crafted", "use the official file")


def _check_legacy(src: Any, path: Path, what: str, size: int) -> None:
    """The pre-1.6 format: magic number, protocol, system info, the object, storage keys, then raw
    storages; the declared storages must fit in the file."""
    try:
        with open(src, "rb") if isinstance(src, Path) else nullcontext(src) as f:
            f.seek(0)
            for _ in range(3):
                _scan(f)
            declared = _scan(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            RecursionError, MemoryError):
        return   # not a legacy torch file: torch.load refuses it with a message we rewrite
    total = sum(declared.values())
    if total > size:
        raise _refuse(what, path, f"declares {total:,} bytes of storages but is {size:,} bytes long: damaged or "
                      "crafted", "use the official file")


def check_tensors(obj: Any, path: Path, what: str, size: int) -> None:
    """Refuse tensors whose shapes promise more values than the file of ``size`` bytes holds (zero-stride
    views) past the budget: a network is never built from such a shape."""
    import torch

    limit, total = budget(size), 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, torch.Tensor):
            total += o.numel() * o.element_size()
        elif isinstance(o, Mapping):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    if total > limit:
        raise _refuse(what, path, f"holds tensors of {total:,} bytes in all, more than {EXPANSION} x its size "
                      f"({limit:,}): broadcast views, not stored weights", "use the official file")


def torch_load(path: Path | str | io.BytesIO, what: str, allow: Sequence[Any] = (), name: str = "") -> Any:
    """``torch.load(weights_only=True)`` on CPU after :func:`check_archive`, then :func:`check_tensors`;
    ``allow``: further globals the file may hold (``torch.serialization.safe_globals``). Every failure is a
    one-line :class:`WeightsError` naming the file (``name`` for an in-memory file)."""
    import torch

    data = path if isinstance(path, io.BytesIO) else None
    path = Path(name or "<in memory>") if data is not None else Path(path)
    size = check_archive(path, what, data)
    try:
        with torch.serialization.safe_globals(list(allow)):
            obj = torch.load(data if data is not None else path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc))))
        if not names:   # not a pickle torch reads at all
            raise _refuse(what, path, f"is not a readable PyTorch weight file ({said(exc, 120)})",
                          "download it again or check that it is the file named") from None
        raise _refuse(what, path, f"pickles objects other than tensors ({', '.join(names)[:160]})",
                      "scgan-bench never runs pickled code; if you trust the file, save its state dict alone "
                      "(torch.save(model.state_dict(), ...)) and pin that file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, IndexError, TypeError, KeyError,
            AttributeError, OverflowError, MemoryError) as exc:
        raise _refuse(what, path, f"is not a readable PyTorch weight file ({said(exc)})",
                      "download it again or check that it is the file named") from None
    check_tensors(obj, path, what, size)
    return obj


@contextmanager
def loading_into(what: str, path: Path | str, network: str) -> Iterator[None]:
    """Around the code that builds ``network`` from the file at ``path``: an error the file causes there
    (missing or mis-shaped tensors, a file of another kind) becomes a one-line :class:`WeightsError`
    naming the file, not the library's multi-line text."""
    try:
        yield
    except WeightsError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise _refuse(what, Path(path), f"does not fit {network} ({type(exc).__name__}: {said(exc, 240)})",
                      "check that it is the official file named") from None


def tensors_only(sd: Mapping[str, Any], path: Path | str, what: str) -> None:
    """Refuse a state dict holding anything but tensors, naming the first such entries."""
    import torch

    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise _refuse(what, Path(path), f"holds entries that are not tensors ({', '.join(map(repr, bad[:4]))}): "
                      "not a state dict", "check that it is the official file named")


def safetensors_load(path: Path | str, what: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, every failure a one-line :class:`WeightsError`."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    file_size(path, what)
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise _refuse(what, path, f"is not a readable safetensors file ({said(exc)})",
                      "download or export it again") from None


def safetensors_shapes(path: Path | str, what: str) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(key -> shape, metadata) from a safetensors header, reading no tensor."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    file_size(path, what)
    try:
        with safe_open(str(path), "pt") as f:
            return ({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, dict(f.metadata() or {}))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise _refuse(what, path, f"is not a readable safetensors file ({said(exc)})",
                      "download or export it again") from None
