"""Reading the authors' weight files: verify (weights manager), unpickle safely, unwrap the official
container, recognise whose weights a file holds, and load strictly.

* :func:`read_official` resolves an asset (sha256 / git blob / trust-on-first-use), loads it with
  ``torch.load(weights_only=True)`` and unwraps the container the method ships (``params_ema``, a
  Lightning ``state_dict`` with a ``vqvae.`` prefix, a raw dict) — the container is stated per method,
  not guessed.
* :func:`identify` names the method family a state dict belongs to from signature keys, so a file put
  in the wrong place is refused with both names ("holds Real-ESRGAN weights, not CodeFormer").
* :func:`load_strict` loads into a network and names every missing, unexpected or mis-shaped key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch
    from torch import nn

from scgan_bench.assets.safeload import torch_load
from scgan_bench.assets.weights import Resolved, WeightsError, resolve

StateDict = dict[str, "torch.Tensor"]

#: family -> (label, keys that must all be present, keys that must all be absent)
SIGNATURES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "realesrgan": ("Real-ESRGAN / ESRGAN (RRDBNet)", ("conv_first.weight", "body.0.rdb1.conv1.weight"), ()),
    "esrgan-old": ("ESRGAN, old key layout (RRDBNet)", ("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"), ()),
    "gfpgan-clean": ("GFPGAN v1.2 / v1.3 / v1.4 (GFPGANv1Clean)",
                     ("conv_body_first.weight", "stylegan_decoder.style_convs.0.modulated_conv.weight"), ()),
    "gfpgan-v1": ("GFPGAN v1, paper model (GFPGANv1)",
                  ("conv_body_first.0.weight", "stylegan_decoder.style_conv1.activate.bias"), ()),
    "codeformer": ("CodeFormer", ("position_emb", "idx_pred_layer.1.weight"), ()),
    "restoreformer++": ("RestoreFormer++", ("quantize.embedding.weight", "encoder.conv_in.weight",
                                            "decoder.up.4.attn.0.q.weight"), ()),
    "restoreformer": ("RestoreFormer", ("quantize.embedding.weight", "encoder.conv_in.weight"),
                      ("decoder.up.4.attn.0.q.weight",)),
    "lrgan": ("LRGAN generator (GEN_DEEP with BatchNorm)", ("layers_in.weight", "layers_set_final.0.0.bn1.weight"), ()),
    "scgan-released": ("SCGAN R_LS, released key layout", ("layers_in.weight", "layers_set_final.0.0.conv1.weight"),
                       ("layers_set_final.0.0.bn1.weight",)),
    "scgan": ("SCGAN R_LS (scgan-bench layout)", ("layers_in.weight", "group1.0.conv1.weight"), ()),
    "dfdnet": ("DFDNet (UNetDictFace)", ("VggExtract.model.features.0.weight",), ()),
    "hifacegan": ("HiFaceGAN / LIP-SPADE generator", ("lip_encoder.model.0.weight",), ()),
    "pulse": ("StyleGAN v1 synthesis (PULSE)", ("blocks.4x4.const",), ()),
}

#: prefixes that training wrappers add (DataParallel, Lightning's RestoreFormer module)
KNOWN_PREFIXES = ("module.", "vqvae.", "netG.")


def identify(sd: Mapping[str, Any]) -> str | None:
    """The family whose signature keys ``sd`` holds, or None. Looks inside the usual containers
    (``params_ema``, ``params``, ``state_dict``) and ignores known wrapper prefixes."""
    for inner in ("params_ema", "params", "state_dict"):
        if isinstance(sd.get(inner), Mapping):
            found = identify(sd[inner])
            if found is not None:
                return found
    keys = set(sd)
    for prefix in KNOWN_PREFIXES:
        if any(k.startswith(prefix) for k in keys):
            keys |= {k[len(prefix):] for k in keys if k.startswith(prefix)}
    for family, (_, present, absent) in SIGNATURES.items():
        if all(k in keys for k in present) and not any(k in keys for k in absent):
            return family
    if keys & {"G_RLS", "G_l2h"}:
        return "scgan-released"
    return None


def family_label(family: str | None) -> str:
    return SIGNATURES[family][0] if family in SIGNATURES else "weights of an unknown network"


@dataclass(frozen=True)
class Container:
    """Where the state dict sits in an official file: the first of ``keys`` present (``()`` = the file
    is the state dict itself), then a ``strip`` prefix removed from every key (where all keys carry it)."""

    keys: tuple[str, ...] = ()
    strip: tuple[str, ...] = ()
    label: str = "raw state dict"


def _torch_load(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` after the size checks of :mod:`scgan_bench.assets.safeload`."""
    return torch_load(path, what)


def unwrap(obj: Any, container: Container, path: Path, what: str) -> StateDict:
    """The state dict inside ``obj`` per ``container``; a clear error when it is not there."""
    import torch

    if not isinstance(obj, Mapping):
        raise WeightsError(f"{what}: {path} holds a {type(obj).__name__}, not a state dict ({container.label})")
    if container.keys:
        key = next((k for k in container.keys if k in obj), None)
        if key is None:
            fam = identify(obj)
            if fam is not None:
                raise WeightsError(f"{what}: {path} holds {family_label(fam)} weights, not {what}")
            raise WeightsError(f"{what}: {path} has no {' or '.join(repr(k) for k in container.keys)} entry "
                               f"(top-level keys: {', '.join(map(str, list(obj)[:6]))}); expected "
                               f"{container.label}")
        obj = obj[key]
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{what}: {path}[{key!r}] is a {type(obj).__name__}, not a state dict")
    sd = dict(obj)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad and identify(sd) is not None:
        raise WeightsError(f"{what}: {path} holds {family_label(identify(sd))} weights, not {what}")
    if bad:
        raise WeightsError(f"{what}: {path}: entries {', '.join(map(repr, bad[:4]))} are not tensors "
                           f"({container.label} expected)")
    for prefix in container.strip:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: Path | str, what: str) -> StateDict:
    """A checkpoint as most diffusion releases' loaders read it (DifFace's ``sampler.load_model``, DiffBIR's
    ``load_model_from_url``): a ``state_dict`` entry if there is one, else the file itself; a ``module.`` prefix
    on every key removed. ``.safetensors`` files are read with safetensors, others with ``torch.load``
    (weights only)."""
    from scgan_bench.assets.safeload import safetensors_load

    path = Path(path)
    obj = safetensors_load(path, what)[0] if path.suffix == ".safetensors" else _torch_load(path, what)
    keys = ("state_dict",) if isinstance(obj, Mapping) and "state_dict" in obj else ()
    return unwrap(obj, Container(keys, ("module.",), "a state dict, or one under 'state_dict'"), path, what)


def read_official(asset: str, container: Container, what: str, path: Path | None = None
                  ) -> tuple[StateDict, Resolved]:
    """Resolve and verify ``asset`` (or an explicit ``path``), then load and unwrap it."""
    r = resolve(asset, path, allow_download=None)
    return unwrap(_torch_load(r.path, what), container, r.path, what), r


def expect_family(sd: Mapping[str, Any], family: str | tuple[str, ...], path: Path | str, what: str) -> None:
    """Refuse a file that holds another method's weights, naming both."""
    families = (family,) if isinstance(family, str) else family
    got = identify(sd)
    if got is not None and got not in families:
        raise WeightsError(f"{what}: {path} holds {family_label(got)} weights, not {what} "
                           f"({family_label(families[0])}); check which file you put where")


def _list(keys: Iterable[str]) -> str:
    """Every key, sorted (a file of another method is refused before, naming both methods)."""
    return ", ".join(sorted(keys))


def layout_differences(expected: Mapping[str, Any] | Iterable[str], sd: Mapping[str, Any],
                       allow_missing: Iterable[str] = (), allow_unexpected: Iterable[str] = ()) -> list[str]:
    """Every difference between a file and a layout: missing keys, unexpected keys and (where
    ``expected`` maps keys to shapes or tensors) every tensor of another shape, each named."""
    shapes = ({k: tuple(getattr(v, "shape", v)) for k, v in expected.items()} if isinstance(expected, Mapping)
              else {k: None for k in expected})
    missing = set(shapes) - set(sd) - set(allow_missing)
    unexpected = set(sd) - set(shapes) - set(allow_unexpected)
    wrong = sorted(k for k in set(sd) & set(shapes)
                   if shapes[k] is not None and tuple(getattr(sd[k], "shape", ())) != shapes[k])
    return (([f"{len(missing)} missing ({_list(missing)})"] if missing else [])
            + ([f"{len(unexpected)} unexpected ({_list(unexpected)})"] if unexpected else [])
            + ([f"{len(wrong)} of another shape ("
                + ", ".join(f"{k}: {tuple(sd[k].shape)}, the network needs {shapes[k]}" for k in wrong) + ")"]
               if wrong else []))


def check_keys(expected: Mapping[str, Any] | Iterable[str], sd: Mapping[str, Any], path: Path | str, what: str,
               allow_missing: Iterable[str] = (), allow_unexpected: Iterable[str] = ()) -> None:
    """Strict layout check: every missing or unexpected key, and (where ``expected`` maps keys to shapes
    or tensors) every tensor of another shape, named in one error (allow-lists are explicit)."""
    parts = layout_differences(expected if isinstance(expected, Mapping) else list(expected), sd,
                               allow_missing, allow_unexpected)
    if parts:
        raise WeightsError(f"{what}: {path} does not match the official key layout: {'; '.join(parts)}")


def refuse_layout(what: str, path: Path | str, layout: str, missing: Sequence[str], unexpected: Iterable[str]) -> None:
    """After a key map: the tensors the network lacks (in the release's names) and the file's keys the map did
    not take, the first eight of each named, in one error; nothing when both are empty."""
    parts = [f"{len(n)} {kind} ({', '.join(n[:8])}" + (f" +{len(n) - 8} more" if len(n) > 8 else "") + ")"
             for kind, n in (("missing", list(missing)), ("unexpected", sorted(unexpected))) if n]
    if parts:
        raise WeightsError(f"{what}: {path} does not match the official key layout of {layout}: {'; '.join(parts)}")


def load_strict(net: nn.Module, sd: Mapping[str, torch.Tensor], path: Path | str, what: str,
                allow_missing: Iterable[str] = (), allow_unexpected: Iterable[str] = (), assign: bool = False
                ) -> nn.Module:
    """Load ``sd`` into ``net``: every missing, unexpected and mis-shaped tensor named in one error;
    ``assign``: the file's tensors become the parameters (a network built on the meta device)."""
    own = net.state_dict()
    check_keys(own, sd, path, what, allow_missing, allow_unexpected)
    keep = {k: v for k, v in sd.items() if k in own}
    net.load_state_dict({**{k: own[k] for k in own if k not in keep}, **keep}, strict=True, assign=assign)
    return net


def param_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def check_official_size(net: nn.Module, expected: int, path: Path | str, what: str, any_config: bool) -> int:
    """Refuse a network of another size than the official one (a different model that happens to share
    the architecture), unless ``any_config``; returns the parameter count (it enters the fingerprint)."""
    n = param_count(net)
    if n != expected and not any_config:
        raise WeightsError(f"{what}: {path} builds a network with {n:,} parameters; the official model has "
                           f"{expected:,}. It is another configuration of the architecture; pass the method "
                           f"option any_config=true to score it anyway (its size is recorded)")
    return n


def meta_shapes(make: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry's shape of ``make()``, built on the meta device (no memory, no time)."""
    import torch

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in make().state_dict().items()}


def spandrel_build(sd: Mapping[str, torch.Tensor], arch_id: str, path: Path | str, what: str,
                   expected: Callable[[], Mapping[str, Any]] | None = None) -> nn.Module:
    """The network spandrel builds from ``sd`` (it reads the configuration from the tensors), refused
    unless it is architecture ``arch_id``. When spandrel cannot build it, the error names every key that
    differs from ``expected()`` (the official layout: key -> shape) and keeps all of spandrel's message."""
    import spandrel

    try:
        desc = spandrel.ModelLoader().load_from_state_dict(dict(sd))
    except Exception as exc:  # noqa: BLE001 (spandrel raises several types; the cause is named)
        said = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or "no message"
        diffs = layout_differences(expected(), sd) if expected is not None else []
        against = f"; against the official layout: {'; '.join(diffs)}" if diffs else ""
        raise WeightsError(f"{what}: {path}: spandrel cannot build {arch_id} from it "
                           f"({type(exc).__name__}: {said}){against}") from None
    if desc.architecture.id != arch_id:
        raise WeightsError(f"{what}: {path} loads as {desc.architecture.id}, not {arch_id}")
    net = desc.model
    net.spandrel_scale = desc.scale
    return net
