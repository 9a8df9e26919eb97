"""CLIP-IQA: the in-project CLIP (OpenAI's layout) and tokenizer score shared faces as pyiqa's ``clipiqa``
does; OpenAI's TorchScript archive is read without running it, giving the tensors ``torch.jit.load`` gives.

OpenAI's RN50.pt is not offline here: the networks are random, at reduced width (the image tower 16 wide
with one bottleneck per stage, the text tower 128 wide with two blocks), their weights rounded to float16
as OpenAI's archive stores them (pyiqa's loader rounds through float16 too). pyiqa and its ``clip`` import
come from ``make install`` (openai-clip, installed without its dependencies)."""
from __future__ import annotations

import contextlib
import hashlib
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.metrics import clipiqa as _clipiqa  # noqa: F401 (registers the assets)

from sb_testdata import HR_FACES, need, tamper

REDUCED = dict(embed_dim=64, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16,
               vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=128,
               transformer_heads=2, transformer_layers=2)


@contextlib.contextmanager
def _quiet():
    """pkg_resources' deprecation and torch.jit's warnings, which the references raise on import / save."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _clip_package():
    try:
        with _quiet():
            import clip
    except ImportError as exc:
        pytest.skip(f"OpenAI's clip package is not installed ({exc}): `make install` adds openai-clip, the "
                    "reference tokenizer and pyiqa's clip import")
    return clip


def _faces() -> list[np.ndarray]:
    from scgan_bench.io.image_io import read_image
    from scgan_bench.io.resize import resize_uint8

    paths = sorted(need(HR_FACES).glob("*.png"))[:4]
    faces = [resize_uint8(read_image(p), (64, 64), "bicubic") for p in paths]
    return faces + [resize_uint8(read_image(paths[0]), (96, 72), "bicubic")]  # another size: 3 x 2 grid


def _tensor(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(im.copy()).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def reference_sd():
    """A random CLIP built by pyiqa's own constructor (OpenAI's layout), BatchNorm statistics and scales
    drawn (pyiqa zero-initialises the residual ones), every tensor rounded to float16."""
    _clip_package()
    with _quiet():
        from pyiqa.archs.clip_model import CLIP as Ref
    torch.manual_seed(0)
    ref = Ref(**REDUCED)
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if name.endswith("running_mean"):
                t.normal_(0, 0.2)
            elif name.endswith("running_var"):  # small: the random tower then tells faces apart (scores
                t.uniform_(0.05, 0.2)              # 0.59-0.83; with unit variances all were 0.7945 +- 2e-4)
            elif name.endswith(".weight") and ".bn" in name:
                t.uniform_(0.5, 1.5)
            elif name == "logit_scale":
                t.fill_(np.log(100.0))  # the trained value, so that softmax is not flat
    return {k: v.half().float() if v.is_floating_point() else v for k, v in ref.state_dict().items()}


def _pyiqa_clipiqa(path: Path, pairs=None, sd: dict | None = None):
    """pyiqa's CLIPIQA on the CLIP file ``path`` (its own loader: TorchScript archives), or on state dict
    ``sd`` through pyiqa's ``build_model`` (its loader's state-dict branch re-reads a consumed file)."""
    with _quiet():
        clip = _clip_package()
        import pyiqa.archs.clipiqa_arch as arch
        from pyiqa.archs.clip_model import build_model

        real = arch.load
        if sd is not None:
            arch.load = lambda name, device: build_model(dict(sd)).float()
        try:
            ref = arch.CLIPIQA(backbone=str(path), pretrained=False).eval()
        finally:
            arch.load = real
    if pairs is not None:
        ref.prompt_pairs = clip.tokenize([t for p in pairs for t in p])
    return ref


def _pin(path: Path) -> None:
    W.register_sha256("clip-rn50", hashlib.sha256(path.read_bytes()).hexdigest())


def test_tokenizer_equals_openais(weights_dir):
    """The in-project BPE against OpenAI's ``clip.tokenize`` (the vocabulary found in the clip package,
    sha256-checked): the prompts, punctuation, contractions, HTML entities, digits, accents, CJK, emoji."""
    clip = _clip_package()
    from scgan_bench.metrics.clipiqa import PAPER_PAIRS, PYIQA_PAIRS, load_tokenizer

    texts = [t for p in PYIQA_PAIRS + PAPER_PAIRS for t in p] + [
        "It's a dog's life, isn't it?", "  several   spaces\tand\nlines ", "café crème brûlée",
        "numbers 12345 and 3.14", "emoji 😀 and ü ß", "AT&amp;T &lt;tag&gt;", "snake_case__words ___",
        "Ωμέγα Привет 你好 日本語", "x" * 70]
    got = load_tokenizer().tokenize(texts)
    assert torch.equal(got, clip.tokenize(texts).long())
    with pytest.raises(ValueError, match="tokens long"):
        load_tokenizer().tokenize(["word " * 80])


#: the CLIP-IQA paper's (Wang, Chan & Loy, AAAI 2023) single antonym pair, written here
PAPER_PROMPTS = (("Good photo.", "Bad photo."),)


@pytest.mark.parametrize("name", ["clip-iqa", "clip-iqa-paper"])
def test_clipiqa_equals_pyiqa_on_faces(name, reference_sd, weights_dir):
    """The registered metric, built by its factory from the weights file (state dict loaded strictly into
    the in-project CLIP), scores faces of two sizes as pyiqa's CLIPIQA: ``clip-iqa`` with pyiqa's own
    default prompts, ``clip-iqa-paper`` with the paper's pair given to both."""
    from scgan_bench.registries import METRICS

    path = weights_dir / "RN50.pt"
    torch.save(reference_sd, path)
    _pin(path)
    ref = _pyiqa_clipiqa(path, None if name == "clip-iqa" else PAPER_PROMPTS, reference_sd)
    faces = _faces()
    assert METRICS.get(name).higher_is_better is True
    got = METRICS.get(name).create().score_images(faces)
    with torch.no_grad():
        want = [float(ref(_tensor(f))) for f in faces]
    # float32 both, the attention pool through another kernel, logits scaled by 100: 3e-5 absolute on
    # probabilities in [0, 1] (observed 5.8e-6 and 1.7e-6; the mutants shift scores by far more)
    assert got == pytest.approx(want, abs=3e-5)
    assert max(got) - min(got) > 0.1  # the faces are told apart: a shift of 1e-5 is not hidden in noise


def test_full_size_is_rn50():
    """OpenAI's RN50 CLIP at full size: parameter count and key layout as pyiqa builds it from the file's
    shapes (``build_model``'s RN50: width 64, layers 3-4-6-3, text width 512 x 12, embedding 1024)."""
    _clip_package()
    with _quiet():
        from pyiqa.archs.clip_model import CLIP as Ref
    from scgan_bench.networks.clip import CLIP

    ours = CLIP()
    ref = Ref(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12)
    sd = ours.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == 102_007_137
    assert CLIP.shape_of(sd) == dict(embed_dim=1024, layers=(3, 4, 6, 3), width=64, resolution=224, context=77,
                                     vocab=49408, text_width=512, text_layers=12)


def _traced_archive(sd: dict, path: Path) -> None:
    """A genuine TorchScript archive of pyiqa's CLIP holding ``sd`` in float16, with OpenAI's setting
    tensors, as OpenAI's RN50.pt was made (traced)."""
    with _quiet():
        from pyiqa.archs.clip_model import CLIP as Ref

        net = Ref(**REDUCED).eval()
        net.load_state_dict(sd)
        for k, v in (("input_resolution", 64), ("context_length", 77), ("vocab_size", 49408)):
            if hasattr(net, k):
                delattr(net, k)  # a plain int on pyiqa's class, a tensor in OpenAI's archive
            net.register_buffer(k, torch.tensor(v))
        traced = torch.jit.trace(net, (torch.zeros(1, 3, 64, 64), torch.zeros(2, 77, dtype=torch.long)),
                                 check_trace=False)
        traced.half()
        torch.jit.save(traced, str(path))


def test_torchscript_archive_read_without_running_it(reference_sd, weights_dir):
    """The reader gives exactly ``torch.jit.load(...).state_dict()``; the archive loads (sha256-checked)
    into the in-project CLIP and scores as pyiqa's loader of the same archive."""
    from scgan_bench.metrics.clipiqa import CLIPIQAScore, load_clip
    from scgan_bench.assets.torchscript import is_torchscript, read_state_dict

    path = weights_dir / "RN50.pt"
    _traced_archive(reference_sd, path)
    assert is_torchscript(path)
    with _quiet():
        want = torch.jit.load(str(path)).state_dict()
    got = read_state_dict(path)
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype
                                           for k in want)
    assert got["visual.conv1.weight"].dtype == torch.float16
    _pin(path)
    net = load_clip()
    assert all(torch.equal(v, reference_sd[k]) for k, v in net.state_dict().items())
    faces = _faces()[:2]
    with torch.no_grad():
        want_scores = [float(_pyiqa_clipiqa(path)(_tensor(f))) for f in faces]
    assert CLIPIQAScore(net=net).score_images(faces) == pytest.approx(want_scores, abs=3e-5)


def test_archive_with_a_foreign_global_is_refused(tmp_path):
    """A pickle that would call ``os.system`` is refused before anything runs, naming the file."""
    from scgan_bench.assets.torchscript import ArchiveError, read_state_dict

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        zf.writestr("evil/code/__torch__.py", "")
    with pytest.raises(ArchiveError, match=r"evil\.pt.*(posix|os)\.system is not allowed"):
        read_state_dict(path)
    assert not marker.exists()
    with pytest.raises(ArchiveError, match="not a TorchScript archive"):
        read_state_dict(Path(__file__))


def test_clip_files_load_strictly_after_their_sha256(reference_sd, weights_dir):
    """State dict and safetensors forms; a missing tensor, a wrong shape and a setting that contradicts
    the tensors are refused by name; a tampered file fails its sha256."""
    from safetensors.torch import save_file

    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.clipiqa import load_clip

    path = weights_dir / "RN50.pt"

    def save(obj) -> None:
        torch.save(obj, path)
        _pin(path)

    sd = reference_sd
    for bad, what in (({k: v for k, v in sd.items() if k != "ln_final.bias"}, "ln_final.bias"),
                      ({**sd, "visual.attnpool.c_proj.bias": sd["visual.attnpool.c_proj.bias"][:10]}, "c_proj.bias"),
                      ({**sd, "context_length": torch.tensor(76)}, "context_length")):
        save(bad)
        with pytest.raises(UsageError, match=what):
            load_clip()
    save({**sd, "vocab_size": torch.tensor(49408)})
    assert torch.equal(load_clip().state_dict()["ln_final.bias"], sd["ln_final.bias"])
    tamper(path)
    with pytest.raises(W.WeightsError, match="sha256"):
        load_clip()
    st = weights_dir / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    W.register_sha256("clip-rn50", hashlib.sha256(st.read_bytes()).hexdigest())
    net = load_clip(str(st))
    assert all(torch.equal(v, sd[k]) for k, v in net.state_dict().items())


def test_clipiqa_listed_with_licence_and_reason(weights_dir, capsys):
    """Without RN50.pt both metrics are unavailable with the file and URL; the licence is shown."""
    from scgan_bench.cli import main

    main(["list", "metrics"])
    out = capsys.readouterr().out
    for name in ("clip-iqa ", "clip-iqa-paper "):
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        assert "unavailable" in line and "RN50.pt" in line and "openaipublic" in line
    assert "MIT (openai/CLIP)" in out
