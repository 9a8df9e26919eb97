"""How a run ends: every unreadable dataset reported at once with the generic folder datasets as the
alternative, a dataset with no scored image failing the run (exit 2, ``"status": "failed"`` with the
reason) after the other datasets' results are written, an interrupted run marked so, and a failed run
never losing the folder's earlier results."""
from __future__ import annotations

import csv
import json

import numpy as np

from scgan_bench.cli import main


def _summary(run) -> set[tuple[str, str]]:
    with open(run / "summary.csv", newline="") as f:
        return {(r["dataset"], r["method"]) for r in csv.DictReader(f)}


def test_unreadable_datasets_are_reported_together_and_mark_the_run_failed(tmp_path, capsys):
    from PIL import Image

    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((80, 80, 3)) * 255).astype("uint8")).save(faces / f"f{i}.png")
    run = tmp_path / "run"
    base = ["--methods", "bicubic", "--metrics", "psnr", "--limit", "3", "--quiet", "--out", str(run)]
    assert main(["run", "--datasets", "demo", *base]) == 0
    assert main(["run", "--datasets", "ffhq,widerface", "--root", f"ffhq={faces}",
                 "--root", f"widerface={tmp_path / 'absent'}", *base]) == 2
    err = capsys.readouterr().err
    assert "2 of 2 dataset(s) cannot be read" in err and "does not look like FFHQ" in err and "widerface:" in err
    assert "--datasets folder --root folder=DIR" in err
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed" and "does not look like FFHQ" in meta["error"]
    # the folder keeps what it had: a later run still shows the first run's results beside its own
    assert main(["run", "--datasets", "demo", "--methods", "nearest", "--metrics", "psnr", "--limit", "3",
                 "--quiet", "--out", str(run)]) == 0
    assert _summary(run) == {("demo", "bicubic"), ("demo", "nearest")}


def test_a_dataset_with_no_scored_image_fails_the_run_after_writing_the_rest(tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(2):
        (broken / f"x{i}.png").write_bytes(b"not an image")
    run = tmp_path / "run"
    assert main(["run", "--datasets", "demo,folder", "--root", f"folder={broken}", "--methods", "bicubic",
                 "--metrics", "psnr", "--limit", "3", "--quiet", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no image could be scored for dataset folder: all 2 selected images failed to load (e.g." in err
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed" and "dataset folder" in meta["error"]
    assert ("demo", "bicubic") in _summary(run)  # the readable dataset was scored and written


def test_an_interrupted_run_is_marked_interrupted(tmp_path, capsys, monkeypatch):
    import scgan_bench.run.pipeline as pipeline

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_method", stop)
    run = tmp_path / "run"
    assert main(["run", "--datasets", "demo", "--methods", "bicubic", "--metrics", "psnr", "--limit", "2", "--quiet",
                 "--out", str(run)]) == 130
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_batch_job_logs_one_line_per_stage_and_run_json_keeps_the_seconds(tmp_path, capsys):
    import io

    from scgan_bench.run.pipeline import StageLog

    run = tmp_path / "run"
    assert main(["run", "--datasets", "demo", "--methods", "bicubic,nearest", "--metrics", "psnr,ssim", "--limit", "3",
                 "--quiet", "--out", str(run)]) == 0
    err = capsys.readouterr().err.splitlines()  # pytest's stderr is not a terminal, as in a batch job
    for want in ("prepare demo: 3 in", "sr demo bicubic: 3 in", "sr demo nearest: 3 in",
                 "metrics demo bicubic psnr,ssim: 6 in", "write results.csv, summary, failures.csv: 12 in"):
        assert sum(want in line for line in err) == 1, (want, err)
    stages = json.loads((run / "run.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["prepare", "sr", "metrics", "sr", "metrics", "write"]
    assert all(s["seconds"] >= 0 for s in stages) and stages[1]["computed"] == 3
    assert main(["run", "--datasets", "demo", "--methods", "bicubic", "--metrics", "psnr", "--limit", "3",
                 "--quiet", "--out", str(run)]) == 0
    assert "sr demo bicubic: 3 in" in capsys.readouterr().err  # cached: counted, nothing computed
    assert json.loads((run / "run.json").read_text())["stages"][1]["computed"] == 0

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    log = StageLog(tty)
    log.done("sr", "x", 1, 0.5)
    assert tty.getvalue() == "" and log.rows == [{"stage": "sr", "what": "x", "count": 1, "seconds": 0.5}]


def test_list_methods_groups_the_untrained_scgan_variants_into_one_line(capsys, monkeypatch, tmp_path):
    from scgan_bench.cli import build_parser
    from scgan_bench.scgan.variants import VARIANTS

    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert f"scgan variants ({len(VARIANTS)})" in out and "scgan-ladv-2-6" in out
    assert not [line for line in out.splitlines() if line.startswith("scgan-")]  # no 26 alike lines
    assert "lrgan-retrained" in out and "realesrgan" in out  # the paper's baselines each keep their line
    monkeypatch.setenv("SCGAN_BENCH_CKPT_SCGAN_FC", str(tmp_path))  # a variant with a checkpoint: its own line
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert f"scgan variants ({len(VARIANTS) - 1})" in out
    assert any(line.startswith("scgan-fc ") and "available" in line for line in out.splitlines())
    assert build_parser().parse_args(["demo", "--device", "cuda:1"]).device == "cuda:1"
