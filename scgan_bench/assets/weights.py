"""The weights manager: every pretrained file the suite can use, found offline, always sha256-checked.

Resolution order for an asset: an explicit path > ``$SCGAN_BENCH_WEIGHTS/<file>`` > the one default
folder ``$SCGAN_BENCH_HOME/weights`` (where downloads go) > the file's usual caches
(``$TORCH_HOME/hub/checkpoints``, ``$TORCH_HOME/checkpoints``, CLIP's, pyiqa's ``$TORCH_HOME/hub/pyiqa``,
a package that bundles it) > download from its URL when allowed. ``--offline`` / ``SCGAN_BENCH_OFFLINE=1`` forbids downloads: a
missing file is then an error naming the file, its URL and where to put it.

Verification: the full official sha256 when known; else the hash prefix that the official file name
carries (torchvision's convention, what ``torch.hub`` itself checks); else trust-on-first-use (the
first file that loads and passes its checks is recorded in ``$SCGAN_BENCH_HOME/weights-lock.json``
(:func:`pin_after_load`; ``weights unpin NAME`` forgets it) and later files must match).
``SCGAN_BENCH_SHA256_<NAME>`` or :func:`register_sha256` pin a different file (a fine-tuned variant, a
test's generated weights). Tensors load with ``torch.load(weights_only=True)`` only after the check.
"""
from __future__ import annotations

import contextvars
import os
import shutil
import tempfile
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..errors import UsageError, WeightsError
from ..paths import data_home, sha256_file
from ..registry import Registry
from .statefiles import is_str_map, read_state, write_state


def _torch_home() -> Path:
    env = os.environ.get("TORCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch"


def _package_dir(module: str) -> Callable[[], Path | None]:
    def find() -> Path | None:
        import importlib.util

        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0])

    return find


@dataclass(frozen=True)
class Asset:
    """A pretrained file: where it comes from, how it is verified, where it is looked for."""

    name: str
    filename: str
    url: str
    used_by: str
    license: str
    sha256: str | None = None          # full official sha256, when known
    sha256_prefix: str | None = None   # the prefix in the official file name (torchvision style)
    size: int | None = None
    caches: tuple[str, ...] = ("torch-hub",)  # named places, see CACHE_DIRS
    bundled: tuple[str, str] | None = None    # (python package, relative path) that ships the file
    source_note: str = ""
    #: user-produced files (trained checkpoints): verified against a ``<file>.sha256`` sidecar
    sidecar: bool = False
    #: git blob SHA-1 of a file committed to the official repository (``git hash-object FILE``): a
    #: published content hash, checked before the sha256 is recorded on first use
    git_blob: str | None = None

    def search_paths(self) -> list[tuple[str, Path]]:
        """Where the file is looked for, in order: ``$SCGAN_BENCH_WEIGHTS``, the one default folder
        (``$SCGAN_BENCH_HOME/weights``), the asset's usual caches (torch hub, facenet's, CLIP's), pyiqa's
        cache, and a package that bundles it."""
        out: list[tuple[str, Path]] = []
        env = os.environ.get("SCGAN_BENCH_WEIGHTS")
        if env:
            out.append(("$SCGAN_BENCH_WEIGHTS", Path(env).expanduser() / self.filename))
        for cache in dict.fromkeys(("scgan-bench",) + self.caches + ("pyiqa",)):
            out.append((cache, CACHE_DIRS[cache]() / self.filename))
        if self.bundled:
            pkg = _package_dir(self.bundled[0])()
            if pkg is not None:
                out.append((f"package {self.bundled[0]}", pkg / self.bundled[1]))
        return out

    def download_target(self) -> Path:
        """Where a download (or a file copied in by hand) goes: ``$SCGAN_BENCH_WEIGHTS``, else the one default
        folder ``$SCGAN_BENCH_HOME/weights`` for every asset."""
        env = os.environ.get("SCGAN_BENCH_WEIGHTS")
        return Path(env).expanduser() / self.filename if env else CACHE_DIRS["scgan-bench"]() / self.filename


CACHE_DIRS: dict[str, Callable[[], Path]] = {
    "torch-hub": lambda: _torch_home() / "hub" / "checkpoints",
    "torch-checkpoints": lambda: _torch_home() / "checkpoints",   # facenet-pytorch's cache
    "scgan-bench": lambda: data_home() / "weights",
    # OpenAI's clip.load (~/.cache/clip) and pyiqa's copy of it (<torch hub>/clip)
    "openai-clip": lambda: (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")).expanduser() / "clip",
    "pyiqa-clip": lambda: _torch_home() / "hub" / "clip",
    # pyiqa's DEFAULT_CACHE_DIR (torch.hub.get_dir() / "pyiqa"): its metrics' checkpoints
    "pyiqa": lambda: _torch_home() / "hub" / "pyiqa",
}

ASSETS: Registry[Asset] = Registry("weights asset")


def register_asset(asset: Asset) -> Asset:
    ASSETS.register(asset.name, asset)
    return asset


_OVERRIDES: dict[str, str] = {}


def register_sha256(name: str, sha256: str) -> None:
    """Pin ``name`` to another file's sha256 (a variant you trust, or a test's generated file)."""
    ASSETS.get(name)
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise UsageError(f"not a sha256 hex digest: {sha256!r}")
    _OVERRIDES[name] = sha256.lower()


def clear_sha256_overrides() -> None:
    _OVERRIDES.clear()


def _env_key(name: str) -> str:
    return "SCGAN_BENCH_SHA256_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def expected_hash(asset: Asset) -> tuple[str, str]:
    """``(kind, value)``: kind is ``override``, ``sha256``, ``prefix`` or ``first-use``."""
    if asset.name in _OVERRIDES:
        return "override", _OVERRIDES[asset.name]
    env = os.environ.get(_env_key(asset.name))
    if env:
        return "override", env.strip().lower()
    if asset.sha256:
        return "sha256", asset.sha256
    if asset.sha256_prefix:
        return "prefix", asset.sha256_prefix
    if asset.sidecar:
        return "sidecar", ""
    return "first-use", ""


def unofficial(weights: Mapping[str, str]) -> dict[str, str]:
    """For ``{asset: sha256}`` (a fingerprint's weights), the assets whose file is not the official
    release, each with why: a sha256 (or file-name prefix) other than the published one, or a file pinned
    through an override where no official sha256 is published. Numbers computed with such files are not
    comparable with published ones (tables print no difference for them). Unknown names are skipped."""
    out: dict[str, str] = {}
    if not isinstance(weights, Mapping):
        return out
    for name, digest in weights.items():
        if name not in ASSETS or not isinstance(digest, str):
            continue
        a = ASSETS.get(name)
        if a.sha256 and digest != a.sha256:
            out[name] = f"{a.filename} sha256 {digest[:12]}… is not the official file ({a.sha256[:12]}…)"
        elif not a.sha256 and a.sha256_prefix and not digest.startswith(a.sha256_prefix):
            out[name] = f"{a.filename} sha256 {digest[:12]}… is not the official file (prefix {a.sha256_prefix})"
        elif not a.sha256 and not a.sha256_prefix and expected_hash(a)[0] == "override":
            out[name] = (f"{a.filename} sha256 {digest[:12]}… was pinned through {_env_key(name)}; no official "
                         "sha256 is published to show it is the released file")
    return out


def offline() -> bool:
    """``--offline`` / ``$SCGAN_BENCH_OFFLINE=1`` (:mod:`scgan_bench.settings`): no download."""
    from ..settings import current

    return current().offline


@dataclass
class Resolved:
    """A verified weight file."""

    asset: Asset
    path: Path
    sha256: str
    origin: str
    check: str  # how it was verified


@dataclass
class AssetStatus:
    name: str
    state: str           # "verified", "missing", "mismatch", "unverified"
    path: Path | None
    detail: str
    looked: list[str] = field(default_factory=list)
    #: why the file found, though it verifies against a pin, is not the official release (:func:`unofficial`)
    not_official: str = ""

    @property
    def official(self) -> bool:
        return not self.not_official


def _lock_path() -> Path:
    return data_home() / "weights-lock.json"


def _lock() -> dict[str, str]:
    """The trust-on-first-use pins (asset -> sha256); a damaged pin file is refused in one line."""
    return read_state(_lock_path(), "weights pin file", is_str_map,
                      "delete it: each first-use file is then pinned again when it next loads") or {}


#: first-use files resolved inside :func:`pin_after_load` blocks, waiting for their load to succeed
_PENDING: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("scgan_bench_pins", default=None)


@contextmanager
def pin_after_load() -> Iterator[None]:
    """Trust on first use only for files that work: a first-use file resolved inside the block is pinned
    when the block ends without an exception (the file loaded and passed its layout checks), never
    otherwise, so a rejected file cannot pin itself and lock out the genuine one. Nested blocks pin when
    the outermost ends."""
    outer, pending = _PENDING.get(), {}
    token = _PENDING.set(pending)
    try:
        yield
    finally:
        _PENDING.reset(token)
    if outer is not None:
        outer.update(pending)
    elif pending:
        lock = _lock()
        new = {k: v for k, v in pending.items() if k not in lock}
        if new:
            write_state(_lock_path(), {**lock, **new})


def unpin(names: Iterable[str]) -> list[str]:
    """Forget the first-use pins of ``names`` (the next file that loads is pinned); returns those removed."""
    lock = _lock()
    gone = [n for n in names if n in lock]
    if gone:
        write_state(_lock_path(), {k: v for k, v in lock.items() if k not in gone})
    return gone


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    """sha256 of a file, memoised in-process by (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def git_blob_sha1(path: Path) -> str:
    """``git hash-object``: SHA-1 of ``b"blob <size>\\0" + content``."""
    import hashlib

    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sidecar_hash(asset: Asset, side: Path, path: Path) -> str:
    """The sha256 a ``<file>.sha256`` sidecar holds (``sha256sum``'s format: the digest first)."""
    fix = f"it should hold the sha256 of {path.name} (`sha256sum {path.name} > {side.name}`), or delete it"
    try:
        words = side.read_bytes()[:4096].decode("ascii").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{asset.name}: {side} cannot be read as a sha256 sidecar "
                           f"({getattr(exc, 'strerror', None) or 'not text'}); {fix}") from None
    want = words[0].lower() if words else ""
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise WeightsError(f"{asset.name}: {side} {'is empty' if not words else 'does not start with a sha256'}; {fix}")
    return want


def _verify(asset: Asset, path: Path, origin: str, *, record: bool = True) -> Resolved:
    digest = _digest(path)
    kind, want = expected_hash(asset)
    if kind == "first-use" and asset.git_blob:
        blob = git_blob_sha1(path)
        if blob != asset.git_blob:
            raise WeightsError(
                f"{asset.name}: {path} has git blob id {blob}, but the file committed to the official "
                f"repository has {asset.git_blob} (`git hash-object {path.name}`): corrupt, tampered with "
                f"or another file. Get the official one from {asset.url}, or pin this file with "
                f"{_env_key(asset.name)}=<sha256> if you trust it.")
    if kind in ("override", "sha256"):
        ok = digest == want
    elif kind == "prefix":
        ok = digest.startswith(want)
    elif kind == "sidecar":
        side = path.with_name(path.name + ".sha256")
        want = _sidecar_hash(asset, side, path) if side.exists() else ""
        ok = not want or digest == want
        kind = "sidecar" if want else "no sidecar (recorded in the run's fingerprint)"
    else:
        want = _lock().get(asset.name, "")
        ok = not want or digest == want
        pending = _PENDING.get()
        if want:
            kind = "first-use (recorded earlier)"
        elif record and pending is not None:
            pending[asset.name] = digest
            kind = "first-use (pinned once it loads)"
        else:
            kind = "first-use (not pinned yet)"
        if asset.git_blob:
            kind = f"git blob {asset.git_blob[:12]} (published) + sha256 " + kind
    if not ok:
        reset = (f" If you replaced the file on purpose, `scgan-bench weights unpin {asset.name}` forgets the "
                 f"pin in {_lock_path()} (the file is pinned again once it loads)." if "first-use" in kind else "")
        raise WeightsError(
            f"{asset.name}: {path} has sha256 {digest}, expected {kind} {want}: the file is "
            f"corrupt, tampered with, or a different release. Replace it with the official file "
            f"from {asset.url}, or pin this file with {_env_key(asset.name)}=<sha256> if you trust it.{reset}")
    return Resolved(asset, path, digest, origin, kind)


def resolve(name: str, explicit: Path | str | None = None, *, allow_download: bool | None = None
            ) -> Resolved:
    """Find and verify asset ``name`` (see the module docstring); raises :class:`WeightsError`."""
    asset = ASSETS.get(name)
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            what = "is not a regular file (a pipe, device or folder)" if p.exists() else "does not exist"
            raise WeightsError(f"{asset.name}: explicit weight path {p} {what}")
        return _verify(asset, p, "explicit path")
    looked = []
    for origin, p in asset.search_paths():
        looked.append(f"{origin}: {p}")
        if p.is_file():
            return _verify(asset, p, origin)
    if allow_download is None:
        allow_download = not offline()
    if not allow_download or not asset.url.startswith("http"):
        raise WeightsError(missing_message(asset, looked))
    return download(asset)


def missing_message(asset: Asset, looked: list[str]) -> str:
    where = "\n  ".join(looked) if looked else "(no search path)"
    why = "offline mode" if offline() else "downloads not allowed here"
    get = f"Download it from\n  {asset.url}\nand put it" if asset.url.startswith("http") else \
        f"{asset.url}; put it"
    return (f"{asset.name}: weight file {asset.filename} not found ({why}). {get} at "
            f"{asset.download_target()} (or set $SCGAN_BENCH_WEIGHTS to its folder, or pass an "
            f"explicit path). Looked in:\n  {where}")


def download(asset: Asset) -> Resolved:
    """Download to the first cache (atomically) and verify; a failed check deletes the file."""
    target = asset.download_target()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(asset.url, timeout=60) as r:
            shutil.copyfileobj(r, f, 1 << 20)
        resolved = _verify(asset, Path(tmp), f"downloaded from {asset.url}")
        os.replace(tmp, target)
        resolved.path = target
        return resolved
    except OSError as exc:
        raise WeightsError(f"{asset.name}: download from {asset.url} failed ({exc}). "
                           + missing_message(asset, [])) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def status(name: str) -> AssetStatus:
    """Where asset ``name`` is and whether it verifies, without downloading or recording."""
    asset = ASSETS.get(name)
    looked = []
    for origin, p in asset.search_paths():
        looked.append(f"{origin}: {p}")
        if p.is_file():
            try:
                r = _verify(asset, p, origin, record=False)
            except WeightsError as exc:
                return AssetStatus(name, "mismatch", p, str(exc), looked)
            state = "unverified" if r.check.startswith("first-use") and not _lock().get(name) else "verified"
            odd = unofficial({name: r.sha256}).get(name)
            detail = f"{r.check} ({origin})" + (f"; NOT OFFICIAL: {odd}" if odd else "")
            return AssetStatus(name, state, p, detail, looked, not_official=odd or "")
    return AssetStatus(name, "missing", None, f"not found; download from {asset.url}", looked)


def unofficial_in_place(names: Iterable[str]) -> dict[str, str]:
    """Of the assets ``names``, those whose file found here verifies (against a pin) but is not the
    official release, each with why (``list``, ``weights list`` and every run say so)."""
    out = {}
    for name in names:
        if name in ASSETS:
            st = status(name)
            if st.state in ("verified", "unverified") and st.not_official:
                out[name] = st.not_official
    return out


def load_state_dict(name: str, explicit: Path | str | None = None, wrappers: tuple[str, ...] = ("state_dict",)
                    ) -> tuple[dict[str, Any], Resolved]:
    """Resolve, verify, then ``torch.load(weights_only=True, map_location='cpu')`` after the size checks
    of :mod:`scgan_bench.assets.safeload`. Each of ``wrappers`` in turn whose entry is a dict is unwrapped
    (pyiqa's checkpoints keep the state dict under ``params``)."""
    from .safeload import tensors_only, torch_load

    r = resolve(name, explicit)
    sd = torch_load(r.path, name)
    for key in wrappers:
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsError(f"{name}: {r.path} does not hold a state dict (got {type(sd).__name__})")
    if not any(isinstance(v, Mapping) for v in sd.values()):   # a flat state dict (containers: the caller unwraps)
        tensors_only(sd, r.path, name)
    return sd, r


def dlib_model(factory: Any, asset: str, allow_download: bool | None = None) -> Any:
    """A dlib model (``dlib.shape_predictor`` ...) from asset's verified file; a file dlib cannot read is
    a one-line :class:`WeightsError` naming it."""
    from .safeload import loading_into

    r = resolve(asset, allow_download=allow_download)
    with loading_into(asset, r.path, f"dlib's {getattr(factory, '__name__', 'model')}"):
        return factory(str(r.path))


def strip_prefix(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Drop a key prefix such as DataParallel's ``module.``."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


# ---------------------------------------------------------------------------------- the catalogue
register_asset(Asset(
    "inception-fid", "weights-inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    used_by="fid, kid (torch-fidelity InceptionV3, TF-FID compatible)", license="Apache-2.0",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"))
register_asset(Asset(
    "alexnet", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    used_by="lpips (AlexNet backbone)", license="BSD-3-Clause (torchvision)",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"))
register_asset(Asset(
    "lpips-alex-v0.1", "alex.pth",
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
    used_by="lpips (linear heads, v0.1)", license="BSD-2-Clause",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    caches=("scgan-bench",), bundled=("lpips", "weights/v0.1/alex.pth")))
register_asset(Asset(
    "resnet101", "resnet101-63fe2227.pth", "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    used_by="t-SNE features (Fig. 3; torchvision IMAGENET1K_V1)", license="BSD-3-Clause (torchvision)",
    sha256_prefix="63fe2227"))
register_asset(Asset(
    "facenet-vggface2", "20180402-114759-vggface2.pt",
    "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    used_by="facenet-verif, facenet-cos (InceptionResnetV1)", license="MIT (facenet-pytorch)",
    sha256="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
    caches=("torch-checkpoints", "torch-hub"),
    source_note="sha256 as recorded by third-party projects; the release page publishes none"))
register_asset(Asset(
    "retinaface-mobilenet0.25", "mobilenet0.25_Final.pth",
    "https://github.com/elliottzheng/face-detection/releases/download/0.0.1/mobilenet0.25_Final.pth",
    used_by="landmark error (RetinaFace, biubug6 format)", license="MIT (biubug6/Pytorch_Retinaface)",
    source_note="no official sha256 is published: verified by trust-on-first-use"))
register_asset(Asset(
    "retinaface-resnet50", "Resnet50_Final.pth",
    "https://github.com/elliottzheng/face-detection/releases/download/0.0.1/Resnet50_Final.pth",
    used_by="landmark error, RetinaFace ResNet-50 variant", license="MIT (biubug6/Pytorch_Retinaface)",
    source_note="no official sha256 is published: verified by trust-on-first-use"))
register_asset(Asset(
    "niqe-pris-params", "niqe_pris_params.npz",
    "https://github.com/XPixelGroup/BasicSR/raw/master/basicsr/metrics/niqe_pris_params.npz",
    used_by="niqe (pristine MVG model of Mittal et al. 2013)", license="Apache-2.0 (BasicSR)",
    sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
    caches=("scgan-bench",), bundled=("basicsr", "metrics/niqe_pris_params.npz")))
register_asset(Asset(
    "dlib-face-recognition", "dlib_face_recognition_resnet_model_v1.dat",
    "http://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2",
    used_by="dlib-verif, dlib-cos, fid-dlib, kid-dlib (128-d face descriptor)", license="CC0",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    caches=("scgan-bench",),
    bundled=("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat")))
register_asset(Asset(
    "dlib-shape-68", "shape_predictor_68_face_landmarks.dat",
    "http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",
    used_by="landmark-dlib68 (68-point shape predictor)", license="dlib licence; iBUG 300-W data: research use",
    sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    caches=("scgan-bench",),
    bundled=("face_recognition_models", "models/shape_predictor_68_face_landmarks.dat")))
register_asset(Asset(
    "dlib-shape-5", "shape_predictor_5_face_landmarks.dat",
    "http://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2",
    used_by="face alignment for the dlib descriptor", license="CC0",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    caches=("scgan-bench",),
    bundled=("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat")))
