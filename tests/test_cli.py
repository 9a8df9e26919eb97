"""The command line: exit code 2 with did-you-mean for unknown names, `list`, the demo."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from scgan_bench.cli import main

from sb_testdata import assert_compiles


@pytest.mark.parametrize("flag,value,suggestion", [
    ("--datasets", "ffhqq", "Did you mean 'ffhq'"),
    ("--methods", "bicubik", "Did you mean 'bicubic'"),
    ("--metrics", "psnr,ssimm", "Did you mean 'ssim'"),
])
def test_unknown_names_exit_2_with_did_you_mean(capsys, tmp_path, flag, value, suggestion):
    args = {"--datasets": "demo", "--methods": "bicubic", "--metrics": "psnr"}
    args[flag] = value
    argv = ["run", "--out", str(tmp_path / "r"), "--quiet"] + [x for kv in args.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert suggestion in err and "Allowed:" in err
    assert not (tmp_path / "r").exists()  # nothing ran


def test_option_errors_exit_2(capsys, tmp_path):
    base = ["run", "--datasets", "demo", "--out", str(tmp_path / "r"), "--quiet"]
    assert main(base + ["--root", "ffhq=/nowhere"]) == 2
    assert "neither in --datasets" in capsys.readouterr().err
    assert main(base + ["--dataset-opt", "demo:include_astronot=false"]) == 2
    assert "Did you mean 'include_astronaut'" in capsys.readouterr().err
    assert main(base + ["--degradation", "demo=complx"]) == 2
    assert "Did you mean 'complex'" in capsys.readouterr().err
    assert main(base + ["--root", "demo"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["run", "--datasets", "ffhq", "--out", str(tmp_path / "f"), "--quiet"]) == 2
    assert "--root ffhq=DIR" in capsys.readouterr().err


def test_argparse_errors_also_exit_2():
    with pytest.raises(SystemExit) as ei:
        main(["list", "weights?"])
    assert ei.value.code == 2


def test_list_shows_availability(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "available (built in)" in out
    assert "ffhq" in out and "unavailable: root not found" in out and "ffhq.md" in out
    assert main(["list", "methods"]) == 0
    assert "bicubic" in capsys.readouterr().out
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    assert "psnr" in out and "↑" in out and "needs HR" in out
    dlib = out.split("dlib-verif ")[1].split("dlib-verif-balanced")[0]
    assert "backend: dlib" in dlib and "caveat: weak at 64 px" in dlib and "51.7% balanced accuracy" in dlib
    psnr = re.search(r"\npsnr .*?\n(?=\S)", out, re.S).group(0)
    assert "caveat" not in psnr  # only weak backends carry one
    assert main(["list", "degradations"]) == 0
    assert "blur_sigma" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["list", "methods"], ["list", "metrics"], ["list", "datasets"],
                                  ["table", "5", "--paper", "--out", "{tmp}"]])
def test_list_and_table_start_without_torch(tmp_path, argv):
    """Start-up of `list` and `table` (lazy imports): registering every method, metric and dataset, and
    asking each for its availability, imports neither torch, scipy, scikit-learn nor matplotlib (torch
    alone takes over a second to import on 2 cores)."""
    code = ("import sys; from scgan_bench.cli import main; rc = main(sys.argv[1:]); "
            "heavy = sorted(m for m in ('torch', 'scipy', 'sklearn', 'matplotlib', 'torchvision') if m in sys.modules); "
            "print('HEAVY', heavy); sys.exit(rc)")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("SCGAN_BENCH_")})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "HEAVY []" in res.stdout, res.stdout.splitlines()[-1]


def test_run_with_dataset_options_and_limit(capsys, tmp_path):
    out = tmp_path / "r"
    argv = ["run", "--datasets", "demo", "--methods", "bicubic", "--metrics", "psnr",
            "--dataset-opt", "demo:include_astronaut=false", "--degradation", "demo=simple-bicubic",
            "--limit", "7", "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "### demo (7 images)" in text and str(out / "summary.md") in text
    assert len(list((out / "data" / "demo" / "lr").glob("*.png"))) == 7


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scgan_bench.cli", "demo", "--out", str(tmp_path / "d"),
                        "--quiet"], capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "### demo (101 images)" in r.stdout and "### demo-real (100 images)" in r.stdout
    assert (tmp_path / "d" / "summary.csv").exists()
    figures = tmp_path / "d" / "figures"
    assert {p.name for p in figures.glob("grid_demo*.p*")} == {"grid_demo.png", "grid_demo.pdf", "grid_demo-real.png",
                                                               "grid_demo-real.pdf"}
    texs = sorted((tmp_path / "d" / "tables").glob("table*.tex"))
    assert [p.name for p in texs] == ["table5.tex", "table6.tex", "table7.tex"]
    if shutil.which("pdflatex"):  # every .tex the demo wrote compiles as printed (tests/test_latex.py: all layouts)
        for tex in texs:
            assert_compiles(tex, tmp_path / "latex")


def test_prepare_records_hashes_and_reports_bad_files(capsys, hr_faces):
    (hr_faces / "zz_empty.png").write_bytes(b"")
    assert main(["prepare", "folder", "--root", str(hr_faces)]) == 0
    out = capsys.readouterr().out
    assert "25 items in the manifest, 24 decoded, 1 failed" in out and "zz_empty" in out
    (hr_faces / "00001.png").write_bytes((hr_faces / "00002.png").read_bytes())
    assert main(["prepare", "folder", "--root", str(hr_faces)]) == 2
    assert "changed: 00001.png" in capsys.readouterr().err


def test_every_option_has_help_and_every_readme_section_it_cites_exists():
    """Issue 26: `--help` explains every option of every command; a help text that points to a README
    section names one that exists."""
    import argparse
    from pathlib import Path

    from scgan_bench.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    headings = {ln.lstrip("#").strip() for ln in readme.splitlines() if ln.startswith("#")}
    undocumented = []

    def walk(parser, path):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, path + [name])
            elif not isinstance(a, argparse._HelpAction):
                if not a.help:
                    undocumented.append(" ".join(path + [a.option_strings[0] if a.option_strings else a.dest]))
                for cited in re.findall(r"README '([^']+)'", a.help or ""):
                    assert cited in headings, (path, a.option_strings, cited)

    walk(build_parser(), ["scgan-bench"])
    assert undocumented == []
