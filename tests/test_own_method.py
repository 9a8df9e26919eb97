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
    from scgan_bench.image_io import encode_png, read_image
    from scgan_bench.registries import METHODS
    from scgan_bench.superres import quantise, to_tensor

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
