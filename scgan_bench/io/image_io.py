"""Robust image decoding to RGB uint8, and atomic PNG / file writes.

Every decode failure raises :class:`ImageDecodeError` naming the file and the cause, so a run over a
folder can skip the file, report it, and finish every good image.
"""
from __future__ import annotations

import io
import os
import tempfile
import threading
import warnings
from collections import Counter, OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageDecodeError
from ..settings import DEFAULT_MAX_PIXELS, current  # noqa: F401 (DEFAULT_MAX_PIXELS: its name here before)
#: Formats the suite promises to read; anything else Pillow identifies is still accepted.
SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "PPM", "WEBP", "TIFF", "GIF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".pnm", ".webp",
                  ".tif", ".tiff", ".gif")


def max_pixels_limit() -> int:
    """The decompression-bomb guard in force (:func:`scgan_bench.settings.current`)."""
    return current().max_pixels


class DecodeCache:
    """The decoded images of one run, by file: each file is decoded once and its pixels kept (uint8) for
    every later stage that reads it (SR input, per-image metrics, feature extraction); a PNG the run
    writes is kept as written and never decoded. A file is known by path, size, modification time and
    inode, so a file replaced on disk is decoded again. Least recently used images leave first once
    ``budget_bytes`` is exceeded (then a file can be decoded twice: ``decodes`` vs ``files``). Readers
    get a copy (they may write into it). Thread-safe."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.decoded: Counter[str] = Counter()  # decodes per file
        self.hits = 0
        self.kept_as_written = 0

    @staticmethod
    def _key(path: Path) -> tuple | None:
        try:
            st = os.stat(path)
        except OSError:
            return None  # read_image reports it
        return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)

    def get(self, path: Path) -> np.ndarray | None:
        key = self._key(path)
        with self._lock:
            img = self._items.get(key) if key else None
            if img is None:
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return img.copy()

    def put(self, path: Path, img: np.ndarray, *, decoded: bool) -> None:
        key = self._key(path)
        if key is None or img.nbytes > self.budget:
            return
        with self._lock:
            if decoded:
                self.decoded[key[0]] += 1
            else:
                self.kept_as_written += 1
            old = self._items.pop(key, None)
            self.bytes -= old.nbytes if old is not None else 0
            self._items[key] = img
            self.bytes += img.nbytes
            while self.bytes > self.budget and self._items:
                _, gone = self._items.popitem(last=False)
                self.bytes -= gone.nbytes

    def stats(self) -> dict[str, int]:
        """Files decoded, decodes in all (more than files only when the budget evicted some), hits,
        written images kept, bytes held."""
        return {"files_decoded": len(self.decoded), "decodes": sum(self.decoded.values()), "hits": self.hits,
                "kept_as_written": self.kept_as_written, "bytes": self.bytes}


_CACHE: DecodeCache | None = None
#: default budget of a run's decoded images (``$SCGAN_BENCH_DECODE_CACHE_MB``): 2,500 64 px faces
#: with their LR and one method's SR take ~70 MB; 3,000 512 px faces ~2.4 GB
DEFAULT_DECODE_CACHE_MB = 4096


@contextmanager
def decode_cache(budget_bytes: int | None = None) -> Iterator[DecodeCache]:
    """Inside the block every :func:`read_image` goes through one :class:`DecodeCache` and PNGs written
    with :func:`remember` are kept; nested blocks share the outer cache."""
    global _CACHE
    if _CACHE is not None:
        yield _CACHE
        return
    if budget_bytes is None:
        budget_bytes = int(float(os.environ.get("SCGAN_BENCH_DECODE_CACHE_MB", DEFAULT_DECODE_CACHE_MB)) * 2**20)
    _CACHE = DecodeCache(budget_bytes)
    try:
        yield _CACHE
    finally:
        _CACHE = None


def remember(path: Path | str, img: np.ndarray) -> None:
    """``img`` is what was just written to ``path``: later reads in this run take it from memory."""
    if _CACHE is not None:
        _CACHE.put(Path(path), np.array(img, dtype=np.uint8, copy=True), decoded=False)


def read_image(path: Path | str, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``path`` to an ``HxWx3`` RGB uint8 array.

    EXIF orientation is applied. Grey, palette, CMYK and 16-bit images are converted to 8-bit RGB
    (16-bit values are scaled, not clipped: ``v8 = round(v16 / 257)``); transparent pixels are
    composited onto white. Raises :class:`ImageDecodeError` for a missing, empty, non-image,
    truncated, corrupt or oversized (more than ``max_pixels``, default :func:`max_pixels_limit`)
    file. The file is decoded as it is read: its header (and so the pixel count) is checked before
    any pixel data is loaded, and it is never read whole first.
    """
    path = Path(path)
    cache = _CACHE
    if cache is not None:
        hit = cache.get(path)
        if hit is not None and hit.shape[0] * hit.shape[1] <= (max_pixels or max_pixels_limit()):
            return hit
        img = _read_file(path, max_pixels)  # (an image over this call's pixel limit raises here)
        cache.put(path, img.copy(), decoded=True)
        return img
    return _read_file(path, max_pixels)


def _read_file(path: Path, max_pixels: int | None) -> np.ndarray:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory, not an image file") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
        except OSError as exc:
            raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
        return _decode(f, size, path, max_pixels)


def decode_image(data: bytes, path: Path | str = "<bytes>", *,
                 max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (see :func:`read_image`); ``path`` is used in error messages."""
    return _decode(io.BytesIO(data), len(data), path, max_pixels)


def _decode(f, size: int, path: Path | str, max_pixels: int | None) -> np.ndarray:
    if max_pixels is None:
        max_pixels = max_pixels_limit()
    if size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings(), _pillow_guard(max_pixels):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(f)
            w, h = im.size
            if w <= 0 or h <= 0:
                raise ImageDecodeError(path, f"invalid image size {w}x{h}")
            if w * h > max_pixels:
                raise ImageDecodeError(
                    path, f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                          "(decompression-bomb guard; raise it with --max-pixels or "
                          "$SCGAN_BENCH_MAX_PIXELS if the file is trusted)")
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb_uint8(im, path)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        # never echo the file's bytes: a link to a private file must not leak into failures.csv
        raise ImageDecodeError(path, f"not a recognised image format ({size:,} bytes)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(path, f"decompression-bomb guard: {exc}") from None
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "end of file" in msg.lower() or "premature" in msg.lower():
            raise ImageDecodeError(path, f"truncated image data ({msg}; {size:,} bytes)") from None
        raise ImageDecodeError(path, f"corrupt image data ({msg})") from None
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise ImageDecodeError(path, f"corrupt image data ({type(exc).__name__}: {exc})") from None


@contextmanager
def _pillow_guard(max_pixels: int):
    """Our pixel limit replaces Pillow's own bomb guard while we decode (Pillow refuses past its ~89 Mpx
    default even when --max-pixels allows more): ours is checked on the header right after
    ``Image.open``, before any pixel is decoded. Pillow's setting is restored afterwards."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _to_rgb_uint8(im: Image.Image, path: Path | str) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.int64)
        if a.min() < 0 or a.max() > 65535:
            raise ImageDecodeError(path, f"unsupported {mode} image with values outside 0..65535")
        grey = ((a + 128) // 257).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        raise ImageDecodeError(path, "unsupported floating-point (mode F) image; convert it to "
                                     "8- or 16-bit first")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in im.info) or (
        mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
    elif mode != "RGB":
        im = im.convert("RGB")
    arr = np.array(im, dtype=np.uint8)  # a writable copy
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageDecodeError(path, f"could not convert mode {mode} to RGB (got shape {arr.shape})")
    return arr


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


# Fault injection for the resume tests: ``SCGAN_BENCH_KILL_AFTER_WRITES=N`` ends the process
# (exit 137, like SIGKILL) after N completed atomic writes; ``N:torn`` ends it during write N+1, after
# the temporary file is written and before the rename; ``...@R`` ends only the process of torchrun
# rank R (a sharded run losing one rank).
_KILL_SPEC, _, _KILL_RANK = os.environ.get("SCGAN_BENCH_KILL_AFTER_WRITES", "").partition("@")
if _KILL_RANK and _KILL_RANK != os.environ.get("RANK", "0"):
    _KILL_SPEC = ""
_writes_done = 0


def _fault_point(torn: bool) -> None:
    if not _KILL_SPEC:
        return
    n, _, mode = _KILL_SPEC.partition(":")
    if _writes_done >= int(n) and (mode == "torn") == torn:
        os._exit(137)


def _temp_prefix(name: str) -> str:
    """``.<name>.`` for the temporary file beside ``name``, cut so that the whole temporary name (8
    random characters and ``.tmp`` follow) stays within 255 bytes."""
    raw = name.encode("utf-8", "surrogateescape")
    return "." + raw[:200].decode("utf-8", "ignore") + "."


def atomic_write_bytes(path: Path | str, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``: a killed process never
    leaves a torn file. ``durable=True`` also fsyncs before the rename (survives power loss; costs
    about a millisecond per file, so bulk per-image files skip it)."""
    global _writes_done
    _fault_point(torn=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        _fault_point(torn=True)
        os.replace(tmp, path)
        _writes_done += 1
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:   # a full disk's write names no file
            exc.filename = str(path)
        raise


def atomic_write_text(path: Path | str, text: str, *, durable: bool = False) -> None:
    """Atomically write UTF-8 text (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def encode_png(img: np.ndarray) -> bytes:
    """Encode an ``HxWx3`` uint8 array as PNG bytes (lossless; no metadata, so bytes are stable)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8, got {img.dtype} {img.shape}")
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_png(path: Path | str, img: np.ndarray) -> None:
    """Atomically write an RGB uint8 array as PNG."""
    atomic_write_bytes(path, encode_png(img))


def list_images(folder: Path | str, *, recursive: bool = True) -> list[Path]:
    """Image-suffixed files under ``folder`` (sorted by relative path, hidden files skipped). Broken
    symbolic links are listed too, so that they are reported, not silently left out."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    out = [p for p in folder.glob(pattern)
           if p.suffix.lower() in IMAGE_SUFFIXES and not any(
               part.startswith(".") for part in p.relative_to(folder).parts)
           and (p.is_file() or (p.is_symlink() and not p.exists()))]
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())
