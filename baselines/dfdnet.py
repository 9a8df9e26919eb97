"""DFDNet (Li et al., ECCV 2020) as an SR method: 16 -> Pillow bicubic 512 (DFDNet's own ``AddUpSample``)
-> part boxes from dlib's 68 landmarks on the 512 px image -> UNetDictFace with the component dictionaries
-> area 64. Card: dfdnet.md.

Part boxes follow test_FaceDict.py: left eye = points 17-21 + 36-41, right eye = 22-26 + 42-47, nose =
29-35, mouth = 48-67; half-size L = max(max extent / 2, 16); box = int([mean - L + 1, mean + L]). The
official script takes its landmarks from FAN on the aligned crop; here dlib's 68-point predictor (bundled
offline, as BasicSR's port does). When dlib finds no face, fixed canonical boxes are used and the image
is flagged in its notes (``dfdnet_boxes``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch

from scgan_bench.errors import UsageError
from scgan_bench.assets.requirements import needs
from scgan_bench.assets.weights import Asset, WeightsError, register_asset, resolve

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    from . import dfdnet_arch as arch
from .adapter import Card, register
from .bridge import Bridge
from .dfdnet_layout import FEATURE_SIZES, PARTS
from .loading import Container, check_official_size, expect_family, load_strict, param_count, read_official

LICENSE = "CC BY-NC-SA 4.0 (NON-COMMERCIAL; README of csxmli2016/DFDNet; code and weights)"
PARAMS = 240_117_181
ASSET = "dfdnet"
URL = ("Google Drive folder https://drive.google.com/drive/folders/1ks_IbobH6WVQ_Jy4oWTTGjSbMZVUSbl4 "
       "(or BaiduNetDisk, code s9ht)")
CONTAINER = Container((), ("module.",), "raw UNetDictFace(64) state dict (checkpoints/facefh_dictionary/latest_net_G.pth)")
PART_POINTS = {"left_eye": list(range(17, 22)) + list(range(36, 42)),
               "right_eye": list(range(22, 27)) + list(range(42, 48)),
               "nose": list(range(29, 36)), "mouth": list(range(48, 68))}
#: fallback boxes (x1, y1, x2, y2 at 512 px): the official recipe applied to the mean dlib-68 landmarks of
#: the 146 FFHQ-aligned faces of the project's shared test data (128 px, Pillow bicubic to 512; dlib
#: found a face in all of them). Recomputed by tests/test_baselines.py when that data is present.
CANONICAL_BOXES = {"left_eye": (113, 127, 228, 242), "right_eye": (282, 127, 397, 242),
                   "nose": (222, 274, 288, 340), "mouth": (184, 303, 326, 446)}
CANONICAL_PROVENANCE = ("official part-box recipe on the mean dlib-68 landmarks of 146 FFHQ-aligned faces "
                        "(128 px -> Pillow bicubic 512)")


def dict_asset(part: str, size: int) -> str:
    return f"dfdnet-dict-{part}-{size}"


register_asset(Asset(ASSET, "DFDNet_latest_net_G.pth", f"{URL}: checkpoints/facefh_dictionary/latest_net_G.pth, "
                     "saved as DFDNet_latest_net_G.pth", used_by="dfdnet", license=LICENSE, caches=("scgan-bench",),
                     source_note="no hash is published: verified by trust-on-first-use"))
for _p in PARTS:
    for _f in FEATURE_SIZES:
        register_asset(Asset(dict_asset(_p, _f), f"DictionaryCenter512/{_p}_{_f}_center.npy",
                             f"{URL}: DictionaryCenter512/{_p}_{_f}_center.npy", used_by="dfdnet (component dictionary)",
                             license=LICENSE, caches=("scgan-bench",),
                             source_note="no hash is published: verified by trust-on-first-use"))
ALL_ASSETS = (ASSET,) + tuple(dict_asset(p, f) for p in PARTS for f in FEATURE_SIZES)


def part_boxes(landmarks: np.ndarray, size: int = 512) -> dict[str, tuple[int, int, int, int]]:
    """test_FaceDict.py's part boxes from 68 (x, y) landmarks, kept inside the image."""
    out = {}
    for part, idx in PART_POINTS.items():
        pts = np.asarray(landmarks, dtype=np.float64)[idx]
        mean = pts.mean(0)
        half = max(float((pts.max(0) - pts.min(0)).max()) / 2, 16.0)
        box = np.hstack((mean - half + 1, mean + half)).astype(int)
        out[part] = tuple(int(np.clip(v, 0, size)) for v in box)
    return out


class LandmarkBoxes:
    """dlib's frontal detector + the bundled 68-point predictor on the 512 px input (largest face)."""

    def __init__(self) -> None:
        import dlib

        from scgan_bench.assets.weights import dlib_model

        self.det = dlib.get_frontal_face_detector()
        self.sp = dlib_model(dlib.shape_predictor, "dlib-shape-68", allow_download=False)

    def __call__(self, img: np.ndarray) -> tuple[dict[str, tuple[int, int, int, int]], str]:
        faces = self.det(img, 0)
        if not len(faces):
            return dict(CANONICAL_BOXES), "canonical (no face found)"
        shape = self.sp(img, max(faces, key=lambda r: r.area()))
        return part_boxes(np.array([(p.x, p.y) for p in shape.parts()])), "dlib68"


def load_dictionaries(width: float = 1.0, paths: Mapping[str, Path] | None = None
                      ) -> tuple[dict[int, dict[str, torch.Tensor]], dict[str, str]]:
    """The 16 ``{part}_{size}_center.npy`` files, read without unpickling and reshaped to (K, C, s, s)."""
    import torch

    from . import dfdnet_arch as arch

    dicts: dict[int, dict[str, torch.Tensor]] = {}
    digests = {}
    for part in arch.PARTS:
        for f in arch.FEATURE_SIZES:
            name = dict_asset(part, f)
            r = resolve(name, (paths or {}).get(name), allow_download=None)
            try:
                arr = np.load(r.path, allow_pickle=False)
            except ValueError as exc:
                raise WeightsError(f"dfdnet: {r.path} holds pickled objects ({exc}); scgan-bench reads the "
                                   "dictionaries without unpickling: re-save the array with np.save") from None
            k = arr.shape[0] if arr.ndim else 0
            want = arch.dictionary_shape(part, f, k, width)
            if arr.ndim not in (2, 4) or int(np.prod(arr.shape)) != int(np.prod(want)) or k == 0:
                raise WeightsError(f"dfdnet: {r.path} has shape {arr.shape}; a {part} dictionary at {f} px needs "
                                   f"(K, {want[1]}, {want[2]}, {want[3]}) atoms")
            dicts.setdefault(f, {})[part] = torch.from_numpy(np.ascontiguousarray(arr, np.float32)).reshape(want)
            digests[name] = r.sha256
    return dicts, digests


def load_network(sd: dict[str, torch.Tensor], path: Path | str, any_config: bool = False) -> arch.UNetDictFace:
    """Strict load (the official loader keeps only matching keys, silently). Allowed to be absent, and
    filled: the VGG slices' second names of ``model.features`` tensors (the same modules) and the up-blocks'
    fixed blur kernels; when present they must equal what they duplicate / the fixed kernel."""
    import torch

    from . import dfdnet_arch as arch

    expect_family(sd, "dfdnet", path, "dfdnet")
    try:
        net = arch.UNetDictFace(arch.width_from_state_dict(sd))
    except KeyError as exc:
        raise WeightsError(f"dfdnet: {path} lacks {exc.args[0]!r}, which latest_net_G.pth holds") from None
    own = net.state_dict()
    full = dict(sd)
    for k in own:
        if k.startswith("VggExtract.features."):               # VggExtract.features.<slice>.<j>.<param>
            twin = "VggExtract.model.features." + k.split(".", 3)[3]
            if k in sd and twin in sd and not torch.equal(sd[k], sd[twin]):
                raise WeightsError(f"dfdnet: {path}: {k} differs from {twin}, the tensor it names again")
            if k not in sd and twin in sd:
                full[k] = sd[twin]
        elif k.startswith("up") and (k.endswith("conv1.0.weight") or k.endswith("conv1.0.weight_flip")):
            if k in sd and (sd[k].shape != own[k].shape or not torch.allclose(sd[k], own[k])):
                raise WeightsError(f"dfdnet: {path}: {k} is not the fixed [1, 2, 1] blur kernel")
            full.setdefault(k, own[k])
    load_strict(net, full, path, "dfdnet")
    check_official_size(net, PARAMS, path, "dfdnet", any_config)
    return net.eval()


@dataclass
class DFDNetMethod:
    """DFDNet behind the SR interface, one image at a time; notes say where each image's boxes came from."""

    net: arch.UNetDictFace
    bridge: Bridge
    boxes: Any = None     # callable(img512 uint8) -> (boxes, source); default LandmarkBoxes
    provenance: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    name: str = "dfdnet"
    scale: int = 4

    def __post_init__(self) -> None:
        self.net = self.net.to(self.device).eval()
        self.boxes = self.boxes or LandmarkBoxes()

    def upscale_with_notes(self, lr: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        import torch

        from scgan_bench.run.superres import quantise

        x = self.bridge.up(lr)                                   # [0, 1] at 512, 8-bit values
        u8 = quantise(x)
        outs, notes = [], []
        with torch.inference_mode():
            for i in range(x.shape[0]):
                boxes, source = self.boxes(np.ascontiguousarray(u8[i]))
                y = self.net((x[i:i + 1] * 2 - 1).to(self.device), boxes)
                outs.append((y.clamp(-1, 1) + 1) / 2)
                notes.append({"dfdnet_boxes": source})
        return self.bridge.down(torch.cat(outs).float(), lr.shape[-1] * self.scale), notes

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        return self.upscale_with_notes(lr)[0]

    def fingerprint(self) -> Mapping[str, Any]:
        return {"method": self.name, "version": 1, "bridge": self.bridge.describe(), "input_range": "[-1,1]",
                "landmarks": "dlib frontal detector (upsample 0) + shape_predictor_68 on the 512 px input",
                "fallback_boxes": {**{k: list(v) for k, v in CANONICAL_BOXES.items()},
                                   "provenance": CANONICAL_PROVENANCE},
                "spectral_norm": "stored u, v (eval)", **self.provenance}


def create(device: str = "cpu", bridge: str = "bicubic", any_config: bool = False, weights: str = "") -> DFDNetMethod:
    if bridge not in ("bicubic", "official"):
        raise UsageError(f"dfdnet: bridge={bridge!r}; allowed: bicubic, official (both are Pillow bicubic: "
                         "DFDNet's own AddUpSample)")
    sd, r = read_official(ASSET, CONTAINER, "dfdnet", Path(weights) if weights else None)
    net = load_network(sd, r.path, any_config)
    dicts, digests = load_dictionaries(net.width)
    net.set_dictionaries(dicts)
    b = Bridge(512, bridge, "pil-bicubic", "test_FaceDict.py AddUpSample: PIL bicubic to 512")
    return DFDNetMethod(net, b, device=device, provenance={
        "weights": {ASSET: r.sha256, **digests}, "params": param_count(net),
        "width": net.width, "atoms": {f"{p}_{f}": int(dicts[f][p].shape[0]) for f in dicts for p in dicts[f]}})


register("dfdnet", Card(
    "DFDNet (released UNetDictFace + component dictionaries; dlib-68 part boxes); 16 -> bicubic 512 -> area 64",
    "Li et al., ECCV 2020", LICENSE, "dfdnet.md", ALL_ASSETS),
    create, needs(modules=(("dlib", "pip install dlib-bin"),), weights=ALL_ASSETS + ("dlib-shape-68",)),
    options=(("bridge", "bicubic", "16->512: Pillow bicubic either way (DFDNet's own AddUpSample)"),
             ("any_config", False, "accept another width (recorded)"),
             ("weights", "", "explicit latest_net_G.pth (still verified)")))
