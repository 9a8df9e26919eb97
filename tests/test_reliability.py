"""Reliability (issue: no silent wrong numbers, no silently lost images, a clear message for every
fault): one folder, one run at a time; training that stops on NaNs and never overwrites silently;
per-image metric failures; collision-free ids; WIDER FACE boxes clipped and bad annotation lines named;
a clear message (and exit code) for every environment fault; damaged caches repaired; nothing read from
outside a dataset's root and no file content echoed."""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scgan_bench.cli import main

from sb_testdata import HR_FACES, SHARED, WILD, need, unpaired_faces

NIQE_WEIGHTS = SHARED / "weights"


def _faces(dst: Path, n: int = 6) -> Path:
    src = need(HR_FACES)
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob("*.png"))[:n]:
        shutil.copy(p, dst / p.name)
    return dst


def _run_args(out: Path, root: Path, *extra: str, dataset: str = "folder", metrics: str = "psnr") -> list[str]:
    return ["run", "--datasets", dataset, "--root", f"{dataset}={root}", "--methods", "bicubic",
            "--metrics", metrics, "--out", str(out), "--quiet", "--device", "cpu", *extra]


def _table(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("|")]


def _results(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "results.csv")))


def _failures(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "failures.csv")))


# ------------------------------------------------------------------------------------- run lock
HOLD = """
import sys
from pathlib import Path
from scgan_bench.run.runlock import run_lock
with run_lock(Path(sys.argv[1]), command="holder-command --seed 7"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_on_a_locked_folder_stops_naming_the_holder(tmp_path, capsys):
    faces, out = _faces(tmp_path / "faces", 3), tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(_run_args(out, faces)) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "holder-command --seed 7" in err and "--wait" in err
        assert not (out / "results.csv").exists()
    finally:
        holder.stdin.close()
        holder.wait()
    assert main(_run_args(out, faces)) == 0  # the lock went with its holder
    assert len(_results(out)) == 3


@pytest.mark.slow
def test_two_runs_with_different_seeds_on_one_folder_never_mix(tmp_path, capsys):
    """Started together with --wait, whichever gets the folder first runs alone: each process prints
    exactly its own solo run's table (the degradation, and so PSNR, depends on the seed)."""
    faces = _faces(tmp_path / "faces", 4)
    solo = {}
    for seed in ("0", "1"):
        assert main(_run_args(tmp_path / f"solo{seed}", faces, "--seed", seed)) == 0
        solo[seed] = _table(capsys.readouterr().out)
    assert solo["0"] != solo["1"]
    shared = tmp_path / "shared"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = {seed: subprocess.Popen([sys.executable, "-m", "scgan_bench.cli",
                                     *_run_args(shared, faces, "--seed", seed, "--wait")],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for seed in ("0", "1")}
    for seed, p in procs.items():
        out, err = p.communicate()
        assert p.returncode == 0, err
        assert _table(out) == solo[seed], seed


# --------------------------------------------------------------------------------------- training
def _train_cfg(out: Path, **kw):
    from scgan_bench.scgan.train import TrainConfig

    base = dict(variant="scgan-wo-cl", width=0.125, batch_size=4, epochs=10, seed=1, out=str(out), progress=False,
                max_steps=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def train_faces():
    return unpaired_faces(8)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("log_every", [None, 4])
def test_training_stops_on_non_finite_losses_and_keeps_the_last_good_checkpoint(tmp_path, train_faces, monkeypatch,
                                                                                 log_every):
    """Also when the losses reach the host every 4 steps: the divergence is found at the flush, named
    by the step it happened in, and no checkpoint was written in between."""
    from scgan_bench.errors import TrainingDiverged
    from scgan_bench.scgan.train import Trainer

    run = tmp_path / "run"
    Trainer(_train_cfg(run), *train_faces).fit(run)
    rls, latest = _sha(run / "rls.safetensors"), (run / "checkpoints" / "latest.json").read_text()
    tr = Trainer(_train_cfg(run, max_steps=4, log_every=log_every), *train_faces)
    real = tr.model.generator_loss

    def nan_loss(*a):
        t = real(*a)
        t["rls_pix"] = t["rls_pix"] * float("nan")
        return t

    monkeypatch.setattr(tr.model, "generator_loss", nan_loss)
    with pytest.raises(TrainingDiverged, match=r"step 3 .*rls_pix=nan.*last good checkpoint \(step 2"):
        tr.fit(run, resume=True)
    assert _sha(run / "rls.safetensors") == rls and (run / "checkpoints" / "latest.json").read_text() == latest
    # weights gone non-finite are never published either
    import torch

    with torch.no_grad():
        next(tr.model.rls.parameters()).fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="non-finite weights"):
        tr.save(run)
    assert _sha(run / "rls.safetensors") == rls and len(list((run / "checkpoints").glob("step-*"))) == 1


def test_training_refuses_to_overwrite_and_resume_does_not_repeat_log_rows(tmp_path, train_faces):
    from scgan_bench.errors import UsageError
    from scgan_bench.scgan.train import Trainer

    run = tmp_path / "run"
    Trainer(_train_cfg(run), *train_faces).fit(run)
    with pytest.raises(UsageError, match="already holds a training run.*--resume.*--overwrite"):
        Trainer(_train_cfg(run), *train_faces).fit(run)
    # a crash after steps 3-4 were logged but before they were checkpointed
    with open(run / "log.csv", "a") as f:
        f.write("2,3,0.0001,1,1,1,1\n2,4,0.0001,1,1,1,1\n")
    Trainer(_train_cfg(run, max_steps=4), *train_faces).fit(run, resume=True)
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))]
    assert steps == [1, 2, 3, 4]
    Trainer(_train_cfg(run, max_steps=1, overwrite=True), *train_faces).fit(run)
    assert [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))] == [1]


def test_damaged_weights_file_stops_resume(tmp_path, train_faces):
    from scgan_bench.errors import UsageError
    from scgan_bench.scgan.train import Trainer

    run = tmp_path / "run"
    Trainer(_train_cfg(run), *train_faces).fit(run)
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    weights = run / "checkpoints" / latest["folder"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[4096:8192] = os.urandom(4096)
    weights.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="model.safetensors is damaged"):
        Trainer(_train_cfg(run, max_steps=3), *train_faces).fit(run, resume=True)


# --------------------------------------------------------------------------- per-image isolation
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NIQE's statistics of the flat image
def test_one_flat_image_fails_niqe_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("SCGAN_BENCH_WEIGHTS", str(need(NIQE_WEIGHTS)))
    clean = _faces(tmp_path / "clean", 5)
    mixed = _faces(tmp_path / "mixed", 5)
    Image.new("RGB", (64, 64), (128, 128, 128)).save(mixed / "zz_flat.png")
    assert main(_run_args(tmp_path / "a", clean, dataset="folder-lr", metrics="niqe")) == 0
    assert main(_run_args(tmp_path / "b", mixed, dataset="folder-lr", metrics="niqe")) == 0
    a = {r["image_id"]: r["value"] for r in _results(tmp_path / "a")}
    b = {r["image_id"]: r["value"] for r in _results(tmp_path / "b")}
    assert len(a) == 5 and a == b  # the 5 good faces keep exactly their values
    fails = _failures(tmp_path / "b")
    assert [(f["image_id"], f["stage"]) for f in fails] == [("zz_flat", "metric")]
    assert "SVD" in fails[0]["reason"] or "LinAlgError" in fails[0]["reason"]


# ------------------------------------------------------------------------------ ids and sources
def test_colliding_names_get_distinct_ids_and_every_file_is_accounted_for(tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    src = sorted(need(HR_FACES).glob("*.png"))
    names = ["dup.png", "dup.PNG", "sp ace.png", "sp_ace.png", "sub/x.png", "sub__x.png"]
    for name, face in zip(names, src):
        (root / name).parent.mkdir(exist_ok=True)
        shutil.copy(face, root / name)
    (root / "broken.png").symlink_to(tmp_path / "gone.png")
    (root / "notes.png").write_text("not an image")
    out = tmp_path / "run"
    det = ("--degradation", "folder=simple-bicubic")  # no random draw: values depend on the image only
    assert main(_run_args(out, root, *det)) == 0
    ids = [r["image_id"] for r in _results(out)]
    assert len(ids) == 6 == len(set(i.lower() for i in ids))
    recs = {json.loads(p.read_text())["id"]: json.loads(p.read_text())["source"]
            for p in (out / "data" / "folder" / "records").glob("*.json")}
    failed = {Path(f["source"]).name: f["reason"] for f in _failures(out)}
    assert set(recs.values()) == set(names) and set(failed) == {"broken.png", "notes.png"}
    assert "broken symbolic link" in failed["broken.png"]
    # each image's value equals a clean run over the same images under plain names
    clean = tmp_path / "clean"
    clean.mkdir()
    for k, face in enumerate(src[:6]):
        shutil.copy(face, clean / f"{k}.png")
    assert main(_run_args(tmp_path / "clean-run", clean, *det)) == 0
    want = {r["image_id"]: r["value"] for r in _results(tmp_path / "clean-run")}
    got = {names.index(recs[r["image_id"]]): r["value"] for r in _results(out)}
    assert {str(k): v for k, v in got.items()} == want


def test_sources_outside_the_root_are_refused_and_never_echoed(tmp_path, capsys):
    root = _faces(tmp_path / "faces", 3)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(sorted(need(HR_FACES).glob("*.png"))[10], outside / "face.png")
    (outside / "secret.txt").write_text("root:x:0:0:SECRET-CONTENT\n")
    (root / "linked.png").symlink_to(outside / "face.png")
    (root / "passwd.png").symlink_to(outside / "secret.txt")
    out = tmp_path / "run"
    assert main(_run_args(out, root)) == 0
    failed = {Path(f["source"]).name: f["reason"] for f in _failures(out)}
    assert set(failed) == {"linked.png", "passwd.png"} and all("outside the dataset root" in r for r in failed.values())
    assert main(_run_args(tmp_path / "clean", _faces(tmp_path / "clean-faces", 3))) == 0
    assert _results(out) == _results(tmp_path / "clean")  # the good images, exactly as in a clean run
    assert main(_run_args(tmp_path / "follow", root, "--follow-links")) == 0
    failed = {Path(f["source"]).name: f["reason"] for f in _failures(tmp_path / "follow")}
    assert set(failed) == {"passwd.png"} and "not a recognised image format" in failed["passwd.png"]
    assert len(_results(tmp_path / "follow")) == 4
    for folder in (out, tmp_path / "follow"):
        assert "SECRET" not in (folder / "failures.csv").read_text()
    assert "SECRET" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------ WIDER FACE
def _wider(dst: Path, annotation: str | bytes) -> Path:
    photo = need(WILD) / "2008_001009.jpg"
    (dst / "WIDER_val" / "images" / "0--Parade").mkdir(parents=True)
    shutil.copy(photo, dst / "WIDER_val" / "images" / "0--Parade" / "a.jpg")
    (dst / "wider_face_split").mkdir()
    ann = dst / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    ann.write_bytes(annotation if isinstance(annotation, bytes) else annotation.encode())
    return dst


def test_wider_boxes_are_clipped_to_the_photo_and_empty_ones_reported_with_their_line(tmp_path):
    w, h = Image.open(need(WILD) / "2008_001009.jpg").size
    ann = "\n".join(["0--Parade/a.jpg", "5",
                     "-10 -8 30 30 0 0 0 0 0 0",          # line 3: clipped to 0,0,20,22
                     f"{w + 5} 10 20 20 0 0 0 0 0 0",     # line 4: right of the photo
                     "100 100 30 30 0 0 0 0 0 0",         # line 5: inside
                     "-60 10 20 20 0 0 0 0 0 0",          # line 6: left of the photo
                     f"{w - 10} {h - 10} 40 40 0 0 0 0 0 0"]) + "\n"  # line 7: 10x10 left: < min_size
    root = _wider(tmp_path / "wider", ann)
    out = tmp_path / "run"
    assert main(_run_args(out, root, dataset="widerface", metrics="niqe-b32")) in (0,)
    records = {json.loads(p.read_text())["id"] for p in (out / "data" / "widerface" / "records").glob("*.json")}
    assert records == {"0--Parade__a__f000", "0--Parade__a__f002"}
    rejected = {f["reason"].split(":")[1] for f in _failures(out) if f["stage"] == "annotation"}
    assert rejected == {"4", "6"}
    # line 3 became the box (0, 0, 20, 22): its 22 px square starts one column left of the photo
    photo = np.asarray(Image.open(root / "WIDER_val" / "images" / "0--Parade" / "a.jpg").convert("RGB"))
    square = np.concatenate([photo[0:22, :1], photo[0:22, 0:21]], axis=1)
    want = np.asarray(Image.fromarray(square).resize((16, 16), Image.Resampling.BICUBIC))
    lr = np.asarray(Image.open(out / "data" / "widerface" / "lr" / "0--Parade__a__f000.png"))
    assert np.array_equal(lr, want)


@pytest.mark.parametrize("content,where", [
    ("0--Parade/a.jpg\n1\n10 10 20 nan 0 0 0 0 0 0\n", "wider_face_val_bbx_gt.txt:3: non-finite"),
    ("0--Parade/a.jpg\n1\n10 10 twenty 20 0 0 0 0 0 0\n", "wider_face_val_bbx_gt.txt:3: expected 10 numbers"),
    (b"0--Parade/a.jpg\n1\n10 10 20 20 0 0 0 0 0 0\n\xff\xfe\n", "wider_face_val_bbx_gt.txt:4: not UTF-8"),
    ("0--Parade/a.jpg\nmany\n", "wider_face_val_bbx_gt.txt:2: expected the number of faces"),
    ("\n\n", "wider_face_val_bbx_gt.txt: the annotation file is empty"),
])
def test_malformed_wider_annotations_name_the_file_and_line(tmp_path, capsys, content, where):
    root = _wider(tmp_path / "wider", content)
    assert main(_run_args(tmp_path / "run", root, dataset="widerface", metrics="niqe-b32")) == 2
    err = capsys.readouterr().err
    assert where in err and "Traceback" not in err


def test_wider_annotation_paths_leaving_the_image_folder_are_dropped(tmp_path):
    ann = "0--Parade/a.jpg\n1\n100 100 30 30 0 0 0 0 0 0\n../../../../etc/x.jpg\n1\n1 1 30 30 0 0 0 0 0 0\n"
    root = _wider(tmp_path / "wider", ann)
    out = tmp_path / "run"
    assert main(_run_args(out, root, dataset="widerface", metrics="niqe-b32")) == 0
    rejected = [f for f in _failures(out) if f["stage"] == "annotation"]
    assert len(rejected) == 1 and "leaves the image folder" in rejected[0]["reason"]


def test_an_edited_cached_manifest_is_rebuilt(tmp_path):
    from scgan_bench.io.manifest import data_home

    root = _wider(tmp_path / "wider", "0--Parade/a.jpg\n1\n100 100 30 30 0 0 0 0 0 0\n")
    out = tmp_path / "run"
    assert main(_run_args(out, root, dataset="widerface", metrics="niqe-b32")) == 0
    (cached,) = (data_home() / "manifests").glob("widerface-test-*.tsv")
    cached.write_text(cached.read_text().replace("\tWIDER_val/images/0--Parade/a.jpg", "\t/etc/hostname"))
    assert main(_run_args(out, root, dataset="widerface", metrics="niqe-b32")) == 0
    assert "/etc/hostname" not in cached.read_text() and not _failures(out)


# ------------------------------------------------------------------------------------ messages
def test_environment_faults_get_a_message_naming_the_path(tmp_path, capsys, monkeypatch):
    import scgan_bench.io.image_io as image_io

    faces = _faces(tmp_path / "faces", 2)
    (tmp_path / "afile").write_text("x")
    cases = [
        (tmp_path / "afile", 2, ["afile", "is a file"]),
        (tmp_path / ("n" * 300) / "run", 2, ["too long"]),
    ]
    for out, code, fragments in cases:
        assert main(_run_args(out, faces)) == code
        err = capsys.readouterr().err
        assert all(f in err for f in fragments) and "Traceback" not in err, err
    # an unwritable data home (here: a path through a file)
    monkeypatch.setenv("SCGAN_BENCH_HOME", str(tmp_path / "afile" / "home"))
    assert main(_run_args(tmp_path / "run1", faces)) == 1
    err = capsys.readouterr().err
    assert "SCGAN_BENCH_HOME" in err and "afile" in err
    monkeypatch.setenv("SCGAN_BENCH_HOME", str(tmp_path / "home"))

    # a full disk, a read-only file system, no permission (simulated: root ignores permissions)
    for code, advice in ((errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission")):
        def fail(path, data, code=code, **kw):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(image_io, "atomic_write_bytes", fail)
        out = tmp_path / f"run-{code}"
        assert main(_run_args(out, faces)) == 1
        err = capsys.readouterr().err
        assert advice in err and str(out) in err and "Traceback" not in err, err


@pytest.mark.parametrize("args,env,fragment", [
    (["--max-pixels", "0"], {}, "--max-pixels must be a positive"),
    (["--max-pixels", "-5"], {}, "--max-pixels must be a positive"),
    ([], {"SCGAN_BENCH_MAX_PIXELS": "lots"}, "must be a positive integer, got 'lots'"),
])
def test_bad_pixel_limits_are_usage_errors(tmp_path, capsys, monkeypatch, args, env, fragment):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    faces = _faces(tmp_path / "faces", 1)
    assert main(_run_args(tmp_path / "run", faces, *args)) == 2
    assert fragment in capsys.readouterr().err


def test_train_width_and_report_on_a_damaged_run_json(tmp_path, capsys):
    assert main(["train", "--hr", "x", "--lr", "y", "--width", "0", "--quiet"]) == 2
    assert "--width must be between" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"status": "comp')
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "run.json is damaged" in err and "Traceback" not in err


def test_weights_that_fail_to_load_make_their_metric_or_method_unavailable(tmp_path, capsys, weights_dir,
                                                                           monkeypatch):
    from scgan_bench.assets import weights as W

    bad = weights_dir / "alexnet-owt-7be5be79.pth"
    bad.write_bytes(b"this is not a checkpoint")
    W.register_sha256("alexnet", hashlib.sha256(bad.read_bytes()).hexdigest())
    ckpt = tmp_path / "scgan.safetensors"
    ckpt.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    monkeypatch.setenv("SCGAN_BENCH_CKPT_SCGAN", str(ckpt))
    faces = _faces(tmp_path / "faces", 2)
    out = tmp_path / "run"
    args = _run_args(out, faces, metrics="psnr,lpips")
    args[args.index("bicubic")] = "bicubic,scgan"
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "unavailable metric:lpips: lpips could not be loaded" in text
    assert "unavailable method:scgan: could not be loaded" in text
    assert {(r["method"], r["metric"]) for r in _results(out)} == {("bicubic", "psnr")}


def test_pillow_guard_follows_max_pixels_and_files_are_not_read_whole(tmp_path, monkeypatch):
    from scgan_bench.errors import ImageDecodeError
    from scgan_bench.io.image_io import read_image

    p = tmp_path / "a.png"
    Image.new("RGB", (60, 60), (10, 20, 30)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse 3,600 pixels
    assert read_image(p, max_pixels=5000).shape == (60, 60, 3)
    with pytest.raises(ImageDecodeError, match="over the limit of 3,000"):
        read_image(p, max_pixels=3000)
    assert Image.MAX_IMAGE_PIXELS == 1000
    big = tmp_path / "sparse.png"
    with open(big, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(1_500_000_000)  # 1.5 GB, sparse: no disk used
    # peak memory of a fresh process (VmHWM: ru_maxrss would include this pytest process's, kept
    # across fork and exec)
    probe = ("import sys\nfrom scgan_bench.io.image_io import read_image\n"
             "try:\n    read_image(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__)\n"
             "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
             "print(int(hwm.split()[1]) // 1024)")
    res = subprocess.run([sys.executable, "-c", probe, str(big)], capture_output=True, text=True)
    name, rss_mb = res.stdout.split()
    assert name == "ImageDecodeError" and int(rss_mb) < 400, res.stdout + res.stderr


# ---------------------------------------------------------------------------------- repair
def test_damaged_cache_entries_are_recomputed_and_nothing_else(tmp_path, capsys):
    faces = _faces(tmp_path / "faces", 4)
    out = tmp_path / "run"
    args = _run_args(out, faces, metrics="psnr,ssim")
    assert main(args) == 0
    clean = (out / "results.csv").read_text()
    capsys.readouterr()
    ids = sorted(p.stem for p in (out / "data" / "folder" / "records").glob("*.json"))
    (out / "data" / "folder" / "records" / f"{ids[0]}.json").write_text("")       # power loss: empty record
    psnr = out / "metrics" / "folder" / "bicubic" / "psnr.json"
    psnr.write_text(psnr.read_text()[: len(psnr.read_text()) // 2])                 # truncated metric file
    sr = out / "sr" / "folder" / "bicubic" / f"{ids[1]}.png"
    sr.write_bytes(sr.read_bytes()[:-20] + bytes(20))                               # damaged SR PNG
    (out / "sr" / "folder" / "bicubic" / ".x.png.abc.tmp").write_bytes(b"stray")    # interrupted writes
    (out / ".results.csv.def.tmp").write_bytes(b"stray")
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "computed this run: 1 images prepared, 1 images super resolved, 4 metric values" in said
    assert (out / "results.csv").read_text() == clean
    assert not list(out.rglob("*.tmp"))
