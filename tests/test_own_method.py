"""A researcher's own method on the SCGAN protocol without code: ``export-lr`` writes the exact LR
inputs of a run, ``--methods dir:NAME=DIR`` scores a folder of outputs matched by image id, with a
per-file error for each missing, wrong-size, unreadable or extra output."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from scgan_bench.cli import main


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_lr_then_score_a_folder_of_outputs(tmp_path, capsys):
    from scgan_bench.io.image_io import encode_png, read_image
    from scgan_bench.registries import METHODS
    from scgan_bench.run.superres import quantise, to_tensor

    run, lr_dir, mine = tmp_path / "run", tmp_path / "lr", tmp_path / "mine"
    base = ["--datasets", "demo", "--metrics", "psnr", "--limit", "6", "--quiet", "--device", "cpu", "--out", str(run)]
    assert main(["run", "--methods", "bicubic", *base]) == 0
    assert main(["export-lr", str(run), "--dataset", "demo", "--out", str(lr_dir)]) == 0
    assert "wrote 6 LR inputs of demo" in capsys.readouterr().out
    table = list(csv.DictReader(open(lr_dir / "ids.tsv"), delimiter="\t"))
    ids = [r["id"] for r in table]
    assert len(ids) == 6 and all(r["size"] == "16x16" for r in table)
    for r in table:  # byte-identical to what the run super-resolved
        assert (lr_dir / r["file"]).read_bytes() == (run / "data" / "demo" / "lr" / r["file"]).read_bytes()
    # "my method" = bicubic computed outside the runner, written as <id>.png
    bicubic = METHODS.get("bicubic").create()
    mine.mkdir()
    for image_id in ids:
        sr = quantise(bicubic.upscale(to_tensor([read_image(lr_dir / f"{image_id}.png")])))[0]
        (mine / f"{image_id}.png").write_bytes(encode_png(np.ascontiguousarray(sr)))
    missing, small, broken = ids[0], ids[1], ids[2]
    (mine / f"{missing}.png").unlink()
    (mine / f"{small}.png").write_bytes(encode_png(np.zeros((32, 32, 3), np.uint8)))
    (mine / f"{broken}.png").write_bytes(b"not a png")
    (mine / "someone-else.png").write_bytes(encode_png(np.zeros((64, 64, 3), np.uint8)))
    assert main(["run", "--methods", f"dir:mine={mine},bicubic", *base]) == 0
    psnr = {(r["method"], r["image_id"]): float(r["value"]) for r in _rows(run / "results.csv")}
    scored = sorted(i for m, i in psnr if m == "mine")
    assert scored == sorted(ids[3:])
    for i in scored:  # the same pixels as the runner's own bicubic: the same numbers
        assert psnr[("mine", i)] == psnr[("bicubic", i)]
    fails = {(r["image_id"], r["source"]): r["reason"] for r in _rows(run / "failures.csv") if r["method"] == "mine"}
    assert any(f"no output for image {missing!r}" in why for why in fails.values())
    assert any(f"{small}.png: 32x32 px, expected 64x64" in why for why in fails.values())
    assert any(f"{broken}.png" in why and "ImageDecodeError" in why for why in fails.values())
    assert any(src.endswith("someone-else.png") and "extra output" in why for (_, src), why in fails.items())
    fp = json.loads((run / "run.json").read_text())["methods"]["mine"]["fingerprint"]
    assert fp["files"] == 6 and len(fp["files_sha256"]) == 64
    # the fingerprint covers the files: fixing one output rescoring only this method's images
    (mine / f"{small}.png").write_bytes((mine / f"{ids[3]}.png").read_bytes())
    assert main(["run", "--methods", f"dir:mine={mine},bicubic", *base]) == 0
    again = json.loads((run / "run.json").read_text())
    assert again["methods"]["mine"]["fingerprint"]["files_sha256"] != fp["files_sha256"]
    assert again["recomputed"]["images_super_resolved"] == 4  # mine's 4 readable outputs, not bicubic's
    assert sorted(i for m, i in ((r["method"], r["image_id"]) for r in _rows(run / "results.csv"))
                  if m == "mine") == sorted([small, *ids[3:]])
    # an LR file that no longer matches its record is never exported
    lr_file = run / "data" / "demo" / "lr" / f"{ids[4]}.png"
    lr_file.write_bytes(lr_file.read_bytes()[:-1] + b"x")
    capsys.readouterr()
    assert main(["export-lr", str(run), "--dataset", "demo", "--out", str(tmp_path / "again")]) == 2
    assert f"{ids[4]}.png is missing or differs from the sha256 recorded" in capsys.readouterr().err


@pytest.mark.parametrize("spec,msg", [
    ("dir:mine", "expected dir:NAME=FOLDER"),
    ("dir:bicubic={folder}", "'bicubic' is already a method"),
    ("dir:mine={folder}/absent", "is not a folder"),
    ("dir:my/name={folder}", "a method name is letters"),
])
def test_folder_method_specs_are_checked(tmp_path, capsys, spec, msg):
    folder = tmp_path / "outs"
    folder.mkdir()
    assert main(["run", "--datasets", "demo", "--methods", spec.format(folder=folder), "--metrics", "psnr",
                 "--limit", "2", "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert msg in capsys.readouterr().err


def test_export_lr_names_what_is_missing(tmp_path, capsys):
    assert main(["export-lr", str(tmp_path), "--dataset", "demo", "--out", str(tmp_path / "x")]) == 2
    assert "no dataset 'demo' prepared by a run" in capsys.readouterr().err


PLUGIN = '''
import os
from torch.nn import functional as F
from scgan_bench.interfaces import MethodSpec
from scgan_bench.registries import METHODS


class Nearest:
    scale = 4

    def __init__(self, name):
        self.name = name

    def upscale(self, lr):
        return F.interpolate(lr, scale_factor=4, mode="nearest")

    def fingerprint(self):
        return {"method": self.name, "version": 1}


class SeesIds(Nearest):
    def upscale_ids(self, lr, ids, dataset):
        with open(os.environ["SEEN_IDS"], "a") as f:
            f.writelines(f"{dataset} {i}\\n" for i in ids)
        return self.upscale(lr)


def register():
    METHODS.register("ep-near", MethodSpec(name="ep-near", factory=lambda device="cpu": SeesIds("ep-near"),
                                           summary="entry-point plugin"))


if __name__ == "plug_cli":
    METHODS.register("plug-near", MethodSpec(name="plug-near", factory=lambda device="cpu": Nearest("plug-near"),
                                             summary="--plugin module"))
'''


def test_plugins_from_an_entry_point_and_from_the_command_line(tmp_path, capsys, monkeypatch):
    """An installed distribution's ``scgan_bench.plugins`` entry point (a dist-info on sys.path) and a
    ``--plugin`` module both register methods; an id-aware plugin receives the run's image ids; both
    appear in the run and, with ``--extra-methods``, beside the paper's methods in Table 5; a broken
    entry point is reported by name and the rest still load."""
    import scgan_bench.registries as reg

    site = tmp_path / "site"
    (site / "scgan_bench_test_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "scgan_bench_test_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: scgan-bench-test-plugin\nVersion: 0.1\n")
    (site / "scgan_bench_test_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[scgan_bench.plugins]\nnearest = plug_ep:register\nbroken = plug_missing_module\n")
    (site / "plug_ep.py").write_text(PLUGIN)
    (site / "plug_cli.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(reg, "_loaded", False)
    monkeypatch.setattr(reg, "PLUGIN_ERRORS", {})
    monkeypatch.setenv("SEEN_IDS", str(tmp_path / "seen.txt"))
    run = tmp_path / "run"
    assert main(["--plugin", "plug_cli", "run", "--datasets", "demo", "--methods", "plug-near,ep-near,bicubic",
                 "--metrics", "psnr", "--limit", "3", "--quiet", "--device", "cpu", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "plugin 'broken' (plug_missing_module) failed to load: ModuleNotFoundError" in err
    ids = (run / "data" / "demo" / "ids.txt").read_text().split()
    assert (tmp_path / "seen.txt").read_text().split("\n")[:-1] == [f"demo {i}" for i in ids]
    methods = {r["method"] for r in _rows(run / "results.csv")}
    assert {"plug-near", "ep-near", "bicubic"} <= methods
    assert main(["table", "5", str(run), "--dataset-map", "ls3dw=demo", "--metric-map", "lpips=psnr",
                 "--extra-methods", "plug-near,ep-near"]) == 0
    md = (run / "table5.md").read_text()
    header = [c.strip() for c in md.splitlines()[2].strip("|").split("|")]
    row = next(line for line in md.splitlines() if line.startswith("| LS3D-W balanced → demo | LPIPS (psnr) ↓"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    for m in ("plug-near", "ep-near", "Bicubic Interpolation"):
        assert np.isfinite(float(cells[header.index(m)].split("[")[0].split(" ")[0].strip("*"))), m
    assert main(["list", "methods"]) == 0
    assert "plugin:broken" in capsys.readouterr().out
    assert main(["--plugin", "no_such_plugin_module", "list", "methods"]) == 2
    assert "--plugin no_such_plugin_module: cannot import it" in capsys.readouterr().err


def test_runs_accumulate_until_told_otherwise(tmp_path, capsys):
    """A rerun with another method keeps the earlier methods' results (byte-identical values); cells
    whose dataset preparation or method fingerprint changed since are dropped, and ``--only-this-run``
    writes the invocation's own outputs beside the folder's, dropping nothing (issue 26)."""
    from scgan_bench.io.image_io import encode_png, read_image
    from scgan_bench.registries import METHODS
    from scgan_bench.run.superres import quantise, to_tensor

    run, mine = tmp_path / "run", tmp_path / "mine"
    base = ["--datasets", "demo", "--limit", "4", "--quiet", "--device", "cpu", "--out", str(run)]
    assert main(["run", "--methods", "bicubic", "--metrics", "psnr,ssim", *base]) == 0
    first = [r for r in _rows(run / "results.csv")]
    mine.mkdir()
    bicubic = METHODS.get("bicubic").create()
    for i in (run / "data" / "demo" / "ids.txt").read_text().split():
        sr = quantise(bicubic.upscale(to_tensor([read_image(run / "data" / "demo" / "lr" / f"{i}.png")])))[0]
        (mine / f"{i}.png").write_bytes(encode_png(np.ascontiguousarray(sr)))
    assert main(["run", "--methods", f"dir:mine={mine}", "--metrics", "psnr,ssim", *base]) == 0
    assert main(["run", "--methods", "nearest", "--metrics", "psnr", *base]) == 0
    summary = {(r["method"], r["metric"]): r for r in _rows(run / "summary.csv")}
    assert set(summary) == {("bicubic", "psnr"), ("bicubic", "ssim"), ("mine", "psnr"), ("mine", "ssim"),
                            ("nearest", "psnr")}
    results = _rows(run / "results.csv")
    assert [r for r in results if r["method"] == "bicubic"] == first  # the same values, to the last digit
    meta = json.loads((run / "run.json").read_text())
    assert {tuple(k)[1] for k in meta["kept_from_earlier_runs"]} == {"bicubic", "mine"}
    assert set(meta["methods"]) == {"bicubic", "mine", "nearest"}
    md = (run / "summary.md").read_text()
    assert "| bicubic |" in md and "| mine |" in md and "| nearest |" in md
    # mine's outputs change: its cells computed now are replaced, the others (ssim) no longer hold
    (mine / sorted(p.name for p in mine.iterdir())[0]).write_bytes(encode_png(np.zeros((64, 64, 3), np.uint8)))
    assert main(["run", "--methods", f"dir:mine={mine}", "--metrics", "psnr", *base]) == 0
    summary = {(r["method"], r["metric"]) for r in _rows(run / "summary.csv")}
    assert ("mine", "psnr") in summary and ("mine", "ssim") not in summary and ("bicubic", "ssim") in summary
    # another degradation of the dataset: nothing of the earlier preparation stays
    assert main(["run", "--methods", "nearest", "--metrics", "psnr", "--degradation", "demo=simple-bilinear", *base]) == 0
    assert {(r["method"], r["metric"]) for r in _rows(run / "summary.csv")} == {("nearest", "psnr")}
    assert main(["run", "--methods", "bicubic", "--metrics", "psnr", *base]) == 0
    capsys.readouterr()
    assert main(["run", "--methods", "nearest", "--metrics", "psnr", "--only-this-run", *base]) == 0
    # a view of this invocation in this_run/ (printed, and `table N RUN/this_run` reads it)...
    assert {r["method"] for r in _rows(run / "this_run" / "summary.csv")} == {"nearest"}
    assert {r["method"] for r in _rows(run / "this_run" / "results.csv")} == {"nearest"}
    out = capsys.readouterr().out
    assert "| nearest |" in out.split("this invocation only")[0] and "| bicubic |" not in out
    assert json.loads((run / "this_run" / "run.json").read_text())["view_of"] == str(run)
    # ...that never drops what the folder accumulated: its files and the next normal run keep bicubic
    kept = _rows(run / "results.csv")
    assert {r["method"] for r in kept} == {"nearest", "bicubic"}
    assert main(["run", "--methods", "nearest", "--metrics", "psnr", *base]) == 0
    assert _rows(run / "results.csv") == kept


def test_export_lr_prints_a_next_command_that_works_as_printed(tmp_path, capsys, hr_faces):
    """Issue 26: the printed command carries the run's --root, degradation, seed, limit and metrics."""
    import shlex

    run, lr_dir, mine = tmp_path / "run", tmp_path / "lr", tmp_path / "mine"
    assert main(["run", "--datasets", "folder", "--root", f"folder={hr_faces}", "--degradation",
                 "folder=simple-bilinear", "--seed", "3", "--limit", "3", "--methods", "bicubic", "--metrics", "psnr",
                 "--quiet", "--device", "cpu", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["export-lr", str(run), "--dataset", "folder", "--out", str(lr_dir)]) == 0
    cmd = capsys.readouterr().out.strip().splitlines()[-1].strip()
    assert cmd.startswith("scgan-bench run ") and f"--root folder={hr_faces.resolve()}" in cmd
    assert "--seed 3" in cmd and "--limit 3" in cmd and "--degradation folder=simple-bilinear" in cmd
    mine.mkdir()
    for p in lr_dir.glob("*.png"):   # "my method": nearest x4 of the exported inputs
        from PIL import Image

        Image.open(p).resize((64, 64), Image.Resampling.NEAREST).save(mine / p.name)
    argv = shlex.split(cmd.replace("dir:NAME=FOLDER", f"dir:mine={mine}"))[1:] + ["--quiet", "--device", "cpu"]
    assert main(argv) == 0
    meta = json.loads((run / "run.json").read_text())
    assert set(meta["methods"]) == {"bicubic", "mine"} and meta["recomputed"]["images_prepared"] == 0


class _BadMethod:
    """A plug-in whose fingerprint or outputs break the contract."""

    scale = 4

    def __init__(self, name: str, fingerprint, scale_values: float = 1.0, nan_on: int | None = None):
        self.name, self._fp, self._k, self._nan = name, fingerprint, scale_values, nan_on

    def upscale(self, lr):
        import torch

        out = torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest") * self._k
        if self._nan is not None:
            out[self._nan] = float("nan")
        return out

    def fingerprint(self):
        return self._fp


def test_plugin_contract_is_checked_per_method_and_per_image(tmp_path, capsys):
    """A fingerprint that is not a dict is refused with a message naming the method; an output in 0-255
    or with NaN fails the images it concerns, named, and the method's good images are still scored."""
    from scgan_bench.interfaces import MethodSpec
    from scgan_bench.registries import METHODS

    specs = {"fp-list": _BadMethod("fp-list", ["v1"]), "range-255": _BadMethod("range-255", {"v": 1}, 255.0),
             "nan-one": _BadMethod("nan-one", {"v": 1}, nan_on=1)}
    for name, obj in specs.items():
        METHODS.register(name, MethodSpec(name=name, factory=lambda device="cpu", _o=obj: _o, summary="test plug-in"))
    try:
        run = tmp_path / "run"
        assert main(["run", "--datasets", "demo", "--limit", "4", "--batch-size", "4", "--methods",
                     "fp-list,range-255,nan-one", "--metrics", "psnr", "--quiet", "--device", "cpu",
                     "--out", str(run)]) == 0
        out = capsys.readouterr().out
        assert "unavailable method:fp-list: could not be loaded: UsageError: method fp-list: fingerprint() returned " \
               "list" in out
        fails = _rows(run / "failures.csv")
        ids = (run / "data" / "demo" / "ids.txt").read_text().split()
        rng = [f for f in fails if f["method"] == "range-255"]
        assert len(rng) == 4 and all(f"for image {f['image_id']!r}" in f["reason"] and "0-255?" in f["reason"]
                                     for f in rng)
        nan = [f for f in fails if f["method"] == "nan-one"]
        assert [f["image_id"] for f in nan] == [ids[1]] and "NaN or inf" in nan[0]["reason"]
        scored = {r["image_id"] for r in _rows(run / "results.csv") if r["method"] == "nan-one"}
        assert scored == set(ids) - {ids[1]}                       # the batch's other images are kept
    finally:
        for name in specs:
            METHODS._entries.pop(name, None)
