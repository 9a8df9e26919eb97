"""Stage 2: run one SR method over a prepared dataset, writing uint8 PNGs under
``<run>/sr/<dataset>/<method>/``.

The SR output is quantised to uint8 exactly once, here (``round(clamp(x, 0, 1) * 255)``); every metric
reads these PNGs, so the numbers describe what ships. An output with NaN / inf or values more than
``RANGE_SLACK`` outside [0, 1] (another range: 0-255, [-1, 1]) is a failure of that image, named, never
clamped into a picture. An image is recomputed only when its LR image
changed (its record holds the LR sha256). A failing batch is retried image by image so one bad input
cannot sink the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm import tqdm

from . import precision
from ..io.image_io import atomic_write_bytes, encode_png, read_image, remember
from ..interfaces import AnnotatingMethod, IdAwareMethod, ReferenceMethod, SRMethod
from ..io.manifest import sha256_bytes
from .parallel import prefetched, to_device
from .prepare import Failure, PreparedDataset
from .shard import SINGLE, Shard
from .store import files_intact, prepare_stage_dir, read_record, safe_name, write_record


@dataclass
class SRResult:
    dataset: str
    method: str
    dir: Path
    key: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    recomputed: int = 0

    def notes(self) -> dict[str, dict[str, Any]]:
        """Per-image method notes (cached images included), by image id."""
        return {i: r["notes"] for i, r in self.records.items() if r.get("notes")}


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 images -> float32 NCHW in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def quantise(sr: torch.Tensor) -> np.ndarray:
    """float NCHW (nominally [0, 1]) -> uint8 NHWC, the one place SR output is rounded."""
    x = sr.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)  # never in place: callers keep sr
    return x.permute(0, 2, 3, 1).cpu().numpy()


def _notes_checked(method, notes: Any, n: int) -> list[dict[str, Any]]:
    if not isinstance(notes, list) or len(notes) != n or not all(isinstance(x, dict) for x in notes):
        raise ValueError(f"method {method.name!r} returned notes that are not one dict per image")
    for note in notes:
        for k, v in note.items():
            if not isinstance(k, str) or not isinstance(v, (bool, int, float, str)):
                raise ValueError(f"method {method.name!r}: note {k!r}={v!r} is not a str -> bool/number/str pair")
    return notes


def _upscale_checked(method: SRMethod | ReferenceMethod | AnnotatingMethod | IdAwareMethod, lr: torch.Tensor,
                     hr: torch.Tensor | None = None, ids: list[str] | None = None, dataset: str = ""
                     ) -> tuple[np.ndarray, list[dict[str, Any]], list[str]]:
    """The method's uint8 outputs, per-image notes and per-image errors (``""`` for a good image); raises
    for what concerns the whole batch (a wrong shape, an exception of the method)."""
    notes: list[dict[str, Any]] = [{} for _ in range(lr.shape[0])]
    with torch.inference_mode():
        if hr is not None:
            sr = method.upscale_reference(lr, hr)
        elif isinstance(method, IdAwareMethod):
            sr = method.upscale_ids(lr, list(ids or []), dataset)
        elif isinstance(method, AnnotatingMethod):
            sr, raw = method.upscale_with_notes(lr)
            notes = _notes_checked(method, raw, lr.shape[0])
        else:
            sr = method.upscale(lr)
    n, _, h, w = lr.shape
    want = (n, 3, h * method.scale, w * method.scale)
    if tuple(sr.shape) != want:
        raise ValueError(f"method {method.name!r} returned shape {tuple(sr.shape)}, expected {want}")
    return quantise(sr), notes, output_errors(method.name, sr, ids or [""] * n)


#: SR outputs are clamped to [0, 1] before quantisation (as the official inference scripts do with a small
#: overshoot); a value further than this outside [0, 1] means another range ([-1, 1], 0-255): an error
RANGE_SLACK = 0.5


def output_errors(method: str, sr: torch.Tensor, ids: list[str]) -> list[str]:
    """Per image: ``""``, or why its SR output cannot be stored (NaN / inf, or values in another range than
    [0, 1], e.g. 0-255 or [-1, 1]), naming the method and the image."""
    flat = sr.detach().float().flatten(1)
    finite = torch.isfinite(flat).all(dim=1).tolist()
    clean = torch.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)   # the range of each image's finite values
    lo, hi = clean.amin(dim=1).tolist(), clean.amax(dim=1).tolist()
    out = []
    for i, ok, a, b in zip(ids, finite, lo, hi):
        if not ok:
            out.append(f"method {method!r} returned NaN or inf values for image {i!r}")
        elif a < -RANGE_SLACK or b > 1 + RANGE_SLACK:
            hint = " (0-255? divide by 255)" if b > 2 else " ([-1, 1]? map with (x + 1) / 2)" if a < -RANGE_SLACK else ""
            out.append(f"method {method!r} returned values in [{a:.3g}, {b:.3g}] for image {i!r}, not in [0, 1]{hint}; "
                       "SR methods return float32 in [0, 1]")
        else:
            out.append("")
    return out


def given_input(lr: np.ndarray, size: int | None) -> np.ndarray:
    """The LR image as a method is given it: as stored, or (a protocol bridging an x4 method, e.g. bfr-512's
    512 px input to 128 px) resized to ``size`` x ``size`` with Pillow bicubic, antialiased, on 8 bits."""
    if size is None or lr.shape[:2] == (size, size):
        return lr
    from ..io.resize import resize_uint8

    return resize_uint8(lr, (size, size), "bicubic")


def run_method(method: SRMethod | ReferenceMethod, data: PreparedDataset, out: Path, *, fingerprint: Mapping[str, Any],
               batch_size: int = 32, device: str = "cpu", progress: bool = True, shard: Shard = SINGLE,
               given_size: int | None = None) -> SRResult:
    """Stage 2 for one (dataset, method); see the module docstring. Sharded (:mod:`.shard`): each rank
    checks its part of the cache and super-resolves its batches; every rank returns the whole result.
    ``given_size``: the input size the protocol gives this method (:func:`given_input`; its fingerprint
    says so)."""
    sdir = out / "sr" / data.name / method.name
    key, _ = shard.from_main(lambda: prepare_stage_dir(sdir, {
        "method": dict(fingerprint), "dataset": data.name, "quantisation": "round(clamp(x,0,1)*255) uint8 PNG",
        **precision.tag()}))
    res = SRResult(data.name, method.name, sdir, key)

    def cached(image_id: str) -> dict[str, Any] | None:
        rec = read_record(sdir / "records" / f"{safe_name(image_id)}.json")
        ok = rec is not None and rec.get("lr_sha256") == data.records[image_id]["lr_sha256"] and \
            files_intact(sdir, rec, ("sr",))
        return rec if ok else None

    found = {i: cached(i) for i in shard.own(list(data.records))}
    if shard.world > 1:
        found = {k: v for part in shard.gather(found) for k, v in part.items()}
    todo: list[str] = []
    for image_id in data.records:
        if found[image_id] is not None:
            res.records[image_id] = found[image_id]
        else:
            todo.append(image_id)
    mine = res if shard.world == 1 else SRResult(data.name, method.name, sdir, key)
    batches = list(shard.own_batches(todo, batch_size))
    bar = tqdm(total=sum(map(len, batches)), desc=f"{data.name}: {method.name}", disable=None if progress else True,
               unit="img", leave=False)
    oracle = isinstance(method, ReferenceMethod)
    def load(chunk: list[str]) -> tuple[list, list]:
        lrs = [given_input(read_image(data.dir / data.records[i]["lr"]), given_size) for i in chunk]
        hrs = [read_image(data.dir / data.records[i]["hr"]) for i in chunk] if oracle else [None] * len(chunk)
        return lrs, hrs

    def hr_batch(items: list) -> torch.Tensor | None:
        return to_device(to_tensor(items), device) if oracle else None

    for chunk, (lrs, hrs) in prefetched(batches, load):  # next chunk decodes meanwhile
        try:
            srs, notes, errs = _upscale_checked(method, to_device(to_tensor(lrs), device), hr_batch(hrs), chunk,
                                                data.name)
            outs = [None if e else x for x, e in zip(srs, errs)]
        except Exception as exc:  # isolate the failing image(s): retry one by one
            if len(chunk) == 1:
                outs, errs, notes = [None], [f"{type(exc).__name__}: {exc}"], [{}]
            else:
                outs, errs, notes = [], [], []
                for image_id, lr, hr in zip(chunk, lrs, hrs):
                    try:
                        one, note, err = _upscale_checked(method, to_tensor([lr]).to(device), hr_batch([hr]),
                                                          [image_id], data.name)
                        outs.append(None if err[0] else one[0])
                        notes.append(note[0])
                        errs.append(err[0])
                    except Exception as exc1:  # noqa: BLE001 (reported per image)
                        outs.append(None)
                        notes.append({})
                        errs.append(f"{type(exc1).__name__}: {exc1}")
        for image_id, sr, err, note in zip(chunk, outs, errs, notes):
            if sr is None:
                mine.failures.append(Failure("sr", data.name, method.name, image_id,
                                             data.records[image_id]["lr"], err))
                continue
            png = encode_png(np.ascontiguousarray(sr))
            name = safe_name(image_id)
            atomic_write_bytes(sdir / f"{name}.png", png)
            remember(sdir / f"{name}.png", sr)
            rec = {"id": image_id, "lr_sha256": data.records[image_id]["lr_sha256"],
                   "sr": f"{name}.png", "sr_sha256": sha256_bytes(png)}
            if note:
                rec["notes"] = note
            write_record(sdir / "records" / f"{name}.json", rec)
            mine.records[image_id] = rec
            mine.recomputed += 1
        bar.update(len(chunk))
    bar.close()
    if shard.world > 1:  # every rank's new records and failures, for every rank
        for part in shard.gather((mine.records, mine.failures, mine.recomputed)):
            res.records.update(part[0])
            res.failures += part[1]
            res.recomputed += part[2]
    order = list(data.records)
    res.records = {i: res.records[i] for i in order if i in res.records}
    return res
