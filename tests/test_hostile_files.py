"""Issue 33: files and state that must not trap a user or lose work. Long file names are scored; a
first-use weight file is pinned only once it loads; damaged state files are refused in one line with the
way out (and a backup kept); a killed or signalled job says so; tiny files cannot make the loader allocate
gigabytes; identical checkpoints are byte-identical; every refused weight file is one line naming it;
the silent cases report themselves; the HTML report survives any file name."""
from __future__ import annotations

import csv
import io
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scgan_bench.assets import weights as W
from scgan_bench.cli import main
from scgan_bench.errors import WeightsError

from sb_testdata import rgb_face


def _faces(root: Path, names: list[str]) -> Path:
    for k, name in enumerate(names):
        p = root / f"{name}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb_face(k, 64)).save(p)
    return root


def _run(out: Path, root: Path, dataset: str = "folder", metrics: str = "psnr", *extra: str) -> list[str]:
    return ["run", "--datasets", dataset, "--root", f"{dataset}={root}", "--methods", "bicubic", "--metrics",
            metrics, "--out", str(out), "--quiet", "--device", "cpu", *extra]


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def _one_line(err: str, *fragments: str) -> None:
    """One error line (stage log lines of a batch run aside), holding every fragment, and no traceback."""
    lines = [ln for ln in err.strip().splitlines() if ln and not ln.startswith("scgan-bench [")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ---------------------------------------------------------------------------------- 1. long names
def test_file_names_up_to_the_file_systems_limit_are_scored_and_rerun_from_cache(tmp_path, capsys):
    """Stems of 238 and 251 characters (a 255-byte name with its .png) and a deep path whose id joins
    to over 300 bytes: each is scored (a long id keeps its start and ends in a hash of its path), every
    rerun reads them from the cache."""
    long_a, long_b, deep = "a" * 238, "b" * 251, f"{'d' * 200}/{'e' * 120}"
    root = _faces(tmp_path / "faces", ["short", long_a, long_b, deep])
    out = tmp_path / "run"
    assert main(_run(out, root)) == 0
    ids = sorted(r["image_id"] for r in _csv(out / "results.csv"))
    assert len(ids) == 4 and not _csv(out / "failures.csv")
    assert all(len(i.encode()) <= 200 for i in ids) and "short" in ids
    assert {i[:20] for i in ids} >= {"a" * 20, "b" * 20, "d" * 20}
    capsys.readouterr()
    assert main(_run(out, root)) == 0
    assert "0 images prepared, 0 images super resolved, 0 metric values" in capsys.readouterr().out


def test_an_id_too_long_for_a_file_name_is_one_images_failure(tmp_path):
    """Ids from elsewhere (a plug-in dataset, a cached manifest) are guarded where they become names:
    safe_name refuses them with a ValueError the prepare stage reports for that image alone; the temporary
    name beside a 251-byte file fits the limit."""
    from scgan_bench.io.image_io import atomic_write_bytes
    from scgan_bench.run.prepare import DatasetJob, _process_safe
    from scgan_bench.interfaces import SourceItem
    from scgan_bench.run.store import safe_name

    with pytest.raises(ValueError, match="231 bytes long; file names allow 230"):
        safe_name("x" * 231)
    for bad in ("..", "a/b", "a\0b"):
        with pytest.raises(ValueError, match="not a safe file name"):
            safe_name(bad)
    atomic_write_bytes(tmp_path / ("n" * 251), b"ok")
    assert (tmp_path / ("n" * 251)).read_bytes() == b"ok"
    root = _faces(tmp_path / "faces", ["x"])
    job = DatasetJob("folder", {}, str(root), "simple-bicubic", 0, str(tmp_path / "out"))
    image_id, rec, err = _process_safe(job, SourceItem("y" * 240, "x.png"), "0" * 64)
    assert rec is None and "240 bytes long" in err


# ------------------------------------------------------------------------- 4. damaged state files
def test_a_damaged_weights_pin_file_is_refused_in_one_line_with_its_backup(tmp_path, capsys, weights_dir):
    from scgan_bench.io.manifest import data_home

    lock = data_home() / "weights-lock.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_bytes(b"\x00\xffgarbage")
    torch.save({"w": torch.zeros(2)}, weights_dir / "Resnet50_Final.pth")   # a first-use file: its pin is read
    for argv in (["weights", "list"], ["weights", "verify"], _run(tmp_path / "run", _faces(tmp_path / "f", ["a"]))):
        assert main(argv) == 2
        _one_line(capsys.readouterr().err, str(lock), "damaged weights pin file", "delete it")
    lock.unlink()
    torch.save({"w": torch.zeros(2)}, weights_dir / "mobilenet0.25_Final.pth")
    for name in ("retinaface-resnet50", "retinaface-mobilenet0.25"):   # two rewrites: the first is backed up
        with W.pin_after_load():
            W.load_state_dict(name)
    assert set(json.loads((lock.parent / "weights-lock.json.bak").read_text())) == {"retinaface-resnet50"}
    lock.write_text('["not", "an", "object"]')
    assert main(["weights", "list"]) == 2
    _one_line(capsys.readouterr().err, "a JSON list, not an object", f"cp {lock}.bak {lock}")


def test_a_damaged_data_integrity_lock_is_refused_in_one_line(tmp_path, capsys):
    from scgan_bench.io.manifest import data_home

    root = _faces(tmp_path / "faces", ["a", "b"])
    assert main(_run(tmp_path / "run", root)) == 0
    (lock,) = (data_home() / "locks").glob("folder-*.json")
    lock.write_text("{truncated")
    capsys.readouterr()
    assert main(_run(tmp_path / "run", root)) == 2
    _one_line(capsys.readouterr().err, str(lock), "damaged data integrity lock of 'folder'", "not JSON", "delete it")


# --------------------------------------------------------------------- 5. killed and signalled jobs
def test_sigterm_marks_the_run_interrupted_and_exits_143(tmp_path, capsys, monkeypatch):
    import scgan_bench.run.pipeline as pipeline

    def stopped(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)   # the handler raises in the main thread before this ends
        raise AssertionError("SIGTERM was not turned into an interruption")

    monkeypatch.setattr(pipeline, "run_method", stopped)
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", "--datasets", "demo", "--methods", "bicubic", "--metrics", "psnr", "--limit", "2",
                 "--quiet", "--out", str(out)]) == 128 + signal.SIGTERM
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "interrupted" and "SIGTERM" in meta["error"]
    assert "interrupted (stopped by SIGTERM)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before   # the host program's handler is back


def test_reproduce_status_tells_a_killed_job_from_a_running_one(tmp_path):
    from scgan_bench.plan import reproduce as R

    plan = R.build_plan(tmp_path, [1], smoke=True, variants=["scgan"])
    job = plan.job("train-scgan")
    dead = subprocess.Popen(["true"])
    dead.wait()

    def state(pid: int, start: str | None, host: str = socket.gethostname()) -> str:
        p = R.state_path(tmp_path, job.id)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"status": "running", "fingerprint": job.fingerprint(), "host": host, "pid": pid,
                                 "pid_start": start, "started_ts": 1.0}))
        row = {r[0]: r for r in R.status_rows(plan)}[job.id]
        return f"{row[1]} | {row[2]}"

    assert state(dead.pid, None).startswith("killed | its process")
    assert state(os.getpid(), R.process_start(os.getpid())).startswith("running")
    if R.process_start(os.getpid()) is not None:   # /proc tells a recycled pid from the job's process
        assert state(os.getpid(), "1").startswith("killed")
    assert "not checkable from here" in state(1, None, host="another-node")


def test_a_second_reproduce_executor_on_one_folder_is_refused_naming_the_holder(tmp_path, capsys):
    from scgan_bench.run.runlock import run_lock

    with run_lock(tmp_path / "state", command="scgan-bench reproduce --executor local (the first)"):
        assert main(["reproduce", "--tables", "1", "--smoke", "--variants", "scgan", "--out", str(tmp_path),
                     "--executor", "none"]) == 2
    _one_line(capsys.readouterr().err, "is in use by another scgan-bench process", "(the first)")


# ------------------------------------------------------------------------- 6. what a file declares
def _zip_with(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _declaring(numel: int) -> bytes:
    """A pickle whose one value is a persistent storage declaring ``numel`` float32 values."""
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj == "STORAGE" else None

    P(buf, protocol=2).dump({"w": "STORAGE"})
    return buf.getvalue()


def _legacy_declaring(numel: int) -> bytes:
    buf = io.BytesIO()
    for head in (torch.serialization.MAGIC_NUMBER, torch.serialization.PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(head, buf, protocol=2)

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj == "STORAGE" else None

    P(buf, protocol=2).dump({"w": "STORAGE"})
    pickle.dump(["0"], buf, protocol=2)
    return buf.getvalue() + (4).to_bytes(8, "little") + b"\0" * 16


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _hostile(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what its one-line refusal must say)."""
    good = io.BytesIO()
    torch.save({"w": torch.zeros(64)}, good)
    evil = io.BytesIO()
    torch.save({"x": Evil()}, evil)
    files = {
        "garbage": (b"\x89not a weight file at all" * 3, "is not a readable PyTorch weight file"),
        "empty": (b"", "is empty"),
        "truncated": (good.getvalue()[: len(good.getvalue()) // 2], "damaged zip archive"),
        "pickled code": (evil.getvalue(), "pickles objects other than tensors (posix.system)"),
        "legacy huge": (_legacy_declaring(10 ** 9), "declares 4,000,000,000 bytes of storages but is"),
    }
    out = {k: (tmp_path / f"{k.replace(' ', '_')}.pth", why) for k, (_, why) in files.items()}
    for k, (data, _) in files.items():
        out[k][0].write_bytes(data)
    out["declared huge"] = (_zip_with(tmp_path / "declared.pth", {"archive/data.pkl": _declaring(10 ** 9),
                                                                   "archive/data/0": b"\0" * 4}),
                            "declares storage '0' of 4,000,000,000 bytes but holds 4")
    out["zip bomb"] = (_zip_with(tmp_path / "bomb.pth", {"archive/data.pkl": _declaring(1),
                                                         "archive/data/0": b"\0" * (80 << 20)}, zipfile.ZIP_DEFLATED),
                       "members expand to 83,886,")
    broadcast = io.BytesIO()
    torch.save({"layers_in.weight": torch.zeros(1).expand(10 ** 8)}, broadcast)
    out["broadcast view"] = (tmp_path / "broadcast.pth", "broadcast views, not stored weights")
    out["broadcast view"][0].write_bytes(broadcast.getvalue())
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    out["fifo"] = (fifo, "is not a regular file")
    return out


def test_every_hostile_weight_file_is_refused_in_one_line_before_it_is_allocated(tmp_path):
    """Each file through the loader every method and metric uses: a WeightsError naming the file and
    the cause, never PyTorch's text (which suggests weights_only=False), never a raw library error; the
    zip bomb (80 MB of zeros in 80 KB) and the declared gigabytes are refused from the file's listing."""
    from scgan_bench.assets.safeload import torch_load

    sizes = {}
    for name, (path, why) in _hostile(tmp_path).items():
        with pytest.raises(WeightsError) as ei:
            torch_load(path, "test asset")
        msg = str(ei.value)
        assert str(path) in msg and why in msg and "\n" not in msg, (name, msg)
        assert "weights_only=False" not in msg and "add_safe_globals" not in msg, (name, msg)
        sizes[name] = path.stat().st_size if path.is_file() else 0
    assert sizes["zip bomb"] < 1 << 20 and sizes["declared huge"] < 4096


def test_refusals_through_the_weights_manager_and_the_cli_are_one_line(tmp_path, capsys, weights_dir):
    """An explicit path that is a pipe; an empty or non-hex sha256 sidecar; a bogus safetensors header; a
    broadcast SCGAN checkpoint whose first tensor implies a wider network (checked on the meta device
    against every shape before anything is built)."""
    from scgan_bench.assets.safeload import safetensors_load
    from scgan_bench.scgan.method import load_rls

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(WeightsError, match=r"explicit weight path .*pipe is not a regular file"):
        W.resolve("alexnet", fifo)
    from scgan_bench.registries import load_plugins

    load_plugins()   # registers the trained checkpoints' assets (sha256 sidecars)
    path = weights_dir / "scgan.safetensors"
    path.write_bytes(b"x")
    side = path.with_name(path.name + ".sha256")
    for content, said in ((b"", "is empty"), (b"not-a-digest  scgan.safetensors\n", "does not start with a sha256"),
                          (b"\xff\xfe\x00", "cannot be read as a sha256 sidecar")):
        side.write_bytes(content)
        with pytest.raises(WeightsError, match=said + r".*sha256sum scgan.safetensors > scgan.safetensors.sha256"):
            W.resolve("scgan")
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes((10 ** 12).to_bytes(8, "little") + b"{}")
    with pytest.raises(WeightsError, match=r"bogus.safetensors is not a readable safetensors file"):
        safetensors_load(bogus, "checkpoint")
    wide = tmp_path / "wide.pth"
    torch.save({"G_RLS": {"layers_in.weight": torch.zeros(1).expand(8 * 256, 3, 3, 3)}}, wide)   # 1.3 KB
    with pytest.raises(Exception, match=r"wide.pth: not an SCGAN R_LS state dict of width 8: .* missing"):
        load_rls(wide)


# ---------------------------------------------------------------------- 7. reproducible checkpoints
def test_checkpoint_headers_are_written_in_sorted_order(tmp_path):
    """safetensors writes metadata in hash-map order (it differs between processes): the checkpoint and
    the exported SR network are rewritten with sorted keys, so equal trainings give equal sha256."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save

    from scgan_bench.training.engine import canonical_safetensors, CheckpointPayload, SRExport, write_checkpoint

    meta = {k: str(i) for i, k in enumerate("fedcbazyx")}
    tensors = {"b.weight": torch.arange(6.0), "a.bias": torch.ones(2, dtype=torch.float16)}
    payload = CheckpointPayload(3, tensors, meta, {"global_step": 3}, {}, SRExport("sr.safetensors", tensors, meta), {})
    folder = write_checkpoint(tmp_path, payload)
    for blob in ((folder / "model.safetensors").read_bytes(), (tmp_path / "sr.safetensors").read_bytes()):
        n = int.from_bytes(blob[:8], "little")
        header = blob[8:8 + n].decode()
        keys = list(json.loads(header)["__metadata__"])
        assert keys == sorted(keys) and header.index('"a.bias"') < header.index('"b.weight"')
        assert (8 + n) % 8 == 0 and all(torch.equal(v, tensors[k]) for k, v in st_load(blob).items())
    raw = save(tensors, metadata=meta)
    assert canonical_safetensors(raw) == canonical_safetensors(canonical_safetensors(raw))


# ------------------------------------------------------------------------------ 8. more tracebacks
def test_damaged_run_files_given_to_table_report_and_export_lr_are_one_line(tmp_path, capsys):
    root = _faces(tmp_path / "faces", ["a", "b"])
    run = tmp_path / "run"
    assert main(_run(run, root)) == 0
    ids = run / "data" / "folder" / "ids.txt"
    ids.write_text("a\n../../../etc/passwd\n")
    capsys.readouterr()
    assert main(["export-lr", str(run), "--dataset", "folder", "--out", str(tmp_path / "lr")]) == 2
    _one_line(capsys.readouterr().err, f"{ids}, line 2", "not a safe file name")
    (run / "results.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff binary")
    for argv in (["table", "6", str(run)], ["report", str(run), "--no-tsne"]):
        assert main(argv) == 2
        _one_line(capsys.readouterr().err, str(run / "results.csv"), "not a text file")
    (run / "results.csv").write_text("dataset,method,metric,image_id,value\nfolder,bicubic,psnr,a,high\n")
    assert main(["table", "6", str(run)]) == 2
    _one_line(capsys.readouterr().err, "results.csv, line 2: value is 'high', not a number")


# ----------------------------------------------------------------------------- 9. silent cases
def _wider(root: Path, annotation: str) -> Path:
    photo = root / "WIDER_val" / "images" / "0--Parade" / "a.jpg"
    photo.parent.mkdir(parents=True)
    Image.fromarray(np.tile(rgb_face(0, 128), (2, 2, 1))).save(photo, quality=95)
    (root / "wider_face_split").mkdir()
    (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text(annotation)
    return root


def test_a_photo_listed_twice_reports_its_second_listing(tmp_path):
    ann = ("0--Parade/a.jpg\n2\n10 10 30 30 0 0 0 0 0 0\n100 100 30 30 0 0 0 0 0 0\n"
           "0--Parade/a.jpg\n1\n50 50 30 30 0 0 0 0 0 0\n")
    out = tmp_path / "run"
    assert main(_run(out, _wider(tmp_path / "wider", ann), "widerface")) == 0
    assert (out / "data" / "widerface" / "ids.txt").read_text().split() == ["0--Parade__a__f000", "0--Parade__a__f001"]
    (dropped,) = [f for f in _csv(out / "failures.csv") if f["stage"] == "annotation"]
    assert "wider_face_val_bbx_gt.txt:7: the photo is listed again (its face 0 is already read from line 3)" \
        in dropped["reason"]


def test_an_emptied_cached_manifest_is_rebuilt(tmp_path):
    from scgan_bench.io.manifest import data_home

    root = _wider(tmp_path / "wider", "0--Parade/a.jpg\n1\n100 100 30 30 0 0 0 0 0 0\n")
    out = tmp_path / "run"
    assert main(_run(out, root, "widerface")) == 0
    (cached,) = (data_home() / "manifests").glob("widerface-test-*.tsv")
    cached.write_bytes(b"")
    assert main(_run(out, root, "widerface")) == 0
    assert "0--Parade__a__f000" in cached.read_text()
    assert (out / "data" / "widerface" / "ids.txt").read_text().split() == ["0--Parade__a__f000"]


def test_max_steps_zero_is_refused(tmp_path, capsys):
    root = _faces(tmp_path / "faces", ["a"])
    assert main(["train", "--hr", str(root), "--lr", str(root), "--out", str(tmp_path / "t"), "--max-steps", "0",
                 "--quiet"]) == 2
    _one_line(capsys.readouterr().err, "--max-steps must be at least 1, got 0")


# --------------------------------------------------------------------------------- 10. HTML report
def _hostile_report(tmp_path: Path) -> tuple[Path, str]:
    from scgan_bench.reports.report import build_report

    root = _faces(tmp_path / "faces", ["<script>alert(1)<!--", "</script><!--", "plain"])
    run = tmp_path / "run"
    assert main(_run(run, root)) == 0
    return run, build_report(run, per_dataset=3, figures=False).read_text()


def test_the_report_embeds_file_names_that_cannot_close_or_comment_out_its_script(tmp_path):
    from scgan_bench.reports.report import script_json

    names = ["<script>alert(1)<!--", "</script><!--", "plain"]
    assert json.loads(script_json({"n": names})) == {"n": names}
    assert not {"<", ">", "&"} & set(script_json({"n": names}))
    _, page = _hostile_report(tmp_path)
    data = page.split("id='browser-data'>", 1)[1].split("</script>", 1)[0]
    assert "<" not in data and "alert(1)" in data


def test_the_report_with_hostile_file_names_runs_in_headless_chromium(tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium is not installed: `apt-get install chromium` (make test does this as root)")
    run, _ = _hostile_report(tmp_path)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'c'}"]
    dom = subprocess.run([exe, *flags, "--dump-dom", (run / "report.html").as_uri()], capture_output=True, text=True)
    assert 'data-ready="yes"' in dom.stdout   # the browser's script ran to its end
    assert dom.stdout.count("<img") >= 3 * 2


@pytest.mark.parametrize("content", [{"a": 1, "b": "text"}, {}], ids=["non-tensor entries", "empty dict"])
def test_every_method_and_metric_refuses_a_file_that_is_no_state_dict_in_one_line(weights_dir, content):
    """Each method and metric that reads weight files, given files that load but hold no usable state
    dict (pinned, so the sha256 check passes): a UsageError of one line naming the file, never a raw
    library error (AttributeError, dlib's or load_state_dict's multi-line text)."""
    import hashlib

    from scgan_bench.errors import UsageError
    from scgan_bench.registries import METHODS, METRICS, load_plugins

    load_plugins()
    raw = []
    for registry in (METHODS, METRICS):
        for name in registry:
            spec = registry.get(name)
            assets = [a for a in getattr(spec.availability, "weights", ()) or () if "." in W.ASSETS.get(a).filename]
            if not assets or getattr(spec, "kind", "") == "composite":
                continue
            for f in weights_dir.iterdir():
                shutil.rmtree(f) if f.is_dir() else f.unlink()
            W.clear_sha256_overrides()
            for a in assets:
                p = weights_dir / W.ASSETS.get(a).filename
                p.parent.mkdir(parents=True, exist_ok=True)   # a snapshot folder (q-align/)
                if p.suffix == ".safetensors":
                    p.write_bytes((2).to_bytes(8, "little") + b"{}")
                else:
                    torch.save(content, p)
                W.register_sha256(a, hashlib.sha256(p.read_bytes()).hexdigest())
            try:
                spec.create(device="cpu")
                raw.append(f"{name}: accepted")
            except UsageError as exc:
                if "\n" in str(exc) or str(weights_dir) not in str(exc):
                    raw.append(f"{name}: {str(exc)[:200]}")
            except Exception as exc:  # noqa: BLE001 (what the test looks for)
                raw.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not raw, raw


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    """A write that fails for lack of space raises an OSError without a file name; the atomic writer
    adds it, so the one-line message names the path, not '?'."""
    import errno

    from scgan_bench.io import image_io
    from scgan_bench.errors import describe_os_error

    class Full(io.BufferedWriter):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    real = os.fdopen
    monkeypatch.setattr(image_io.os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    target = tmp_path / "out" / "x.png"
    with pytest.raises(OSError) as ei:
        image_io.atomic_write_bytes(target, b"data")
    assert describe_os_error(ei.value).startswith(f"{target}: No space left on device (the disk is full")
    assert not any(target.parent.iterdir())   # no temporary file left behind
