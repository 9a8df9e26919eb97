"""Dataset loaders on real layouts: FFHQ manifests and folders, WIDER FACE annotations, LS3D-W,
generic folders with bad files mixed in, the demo sets, and source-integrity checks."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scgan_bench.errors import DataIntegrityError, DatasetUnavailableError, UsageError
from scgan_bench.io.image_io import read_image
from scgan_bench.io.manifest import Manifest, packaged_manifest_path
from scgan_bench.run.prepare import prepare_dataset
from scgan_bench.registries import DATASETS, load_plugins

from sb_testdata import HR_FACES, need

load_plugins()


# ----------------------------------------------------------------------------------- FFHQ
def test_ffhq_packaged_manifests_are_the_seeded_selection():
    from scgan_bench.datasets import ffhq

    for split, n, lo, hi in (("train", 20_000, 0, 59_999), ("test", 2_500, 60_000, 69_999)):
        shipped = Manifest.load(packaged_manifest_path("ffhq", split), "ffhq", split)
        assert shipped.digest() == ffhq.build_manifest(split).digest()
        ids = [int(it.id) for it in shipped.items]
        assert len(ids) == n == len(set(ids)) and ids == sorted(ids)
        assert lo <= min(ids) and max(ids) <= hi
    train = {it.id for it in Manifest.load(packaged_manifest_path("ffhq", "train"), "ffhq", "train").items}
    test = {it.id for it in Manifest.load(packaged_manifest_path("ffhq", "test"), "ffhq", "test").items}
    assert not train & test


def test_edited_shipped_manifest_is_refused(tmp_path, monkeypatch):
    from scgan_bench.datasets import ffhq

    edited = tmp_path / "ffhq-test.tsv"
    text = packaged_manifest_path("ffhq", "test").read_text()
    edited.write_text(text.replace("\n60000\t", "\n59999\t", 1))
    monkeypatch.setattr(ffhq, "packaged_manifest_path", lambda d, s: edited)
    (tmp_path / "root" / "00000").mkdir(parents=True)
    with pytest.raises(DataIntegrityError, match="differs from the FFHQ test selection"):
        DATASETS.get("ffhq").create().manifest(tmp_path / "root")


@pytest.mark.parametrize("layout", ["thumbnails128x128", "flat"])
def test_ffhq_reads_official_layouts(tmp_path, layout):
    src = sorted(need(HR_FACES).glob("*.png"))
    test_ids = [it.id for it in Manifest.load(packaged_manifest_path("ffhq", "test"), "ffhq", "test").items][:4]
    root = tmp_path / "ffhq"
    for k, i in enumerate(test_ids):
        dst = (root / layout / f"{int(i) // 1000 * 1000:05d}" / f"{i}.png" if layout != "flat"
               else root / f"{i}.png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src[k], dst)
    res = prepare_dataset("ffhq", out=tmp_path / "run", seed=0, root=root, limit=4, progress=False)
    assert list(res.records) == test_ids and not res.failures
    for rec in res.records.values():
        assert read_image(res.dir / rec["hr"]).shape == (64, 64, 3)
        assert read_image(res.dir / rec["lr"]).shape == (16, 16, 3)
        assert rec["degradation"]["name"] == "complex"


def test_missing_root_names_every_place_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("SCGAN_BENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailableError) as ei:
        prepare_dataset("ffhq", out=tmp_path / "run", seed=0, progress=False)
    msg = str(ei.value)
    assert "--root ffhq=DIR" in msg and "SCGAN_BENCH_ROOT_FFHQ" in msg and str(tmp_path / "ffhq") in msg


# ----------------------------------------------------------------------------- WIDER FACE
def test_widerface_parses_official_annotations(wider_root):
    from scgan_bench.datasets.widerface import find_annotation, parse_annotations

    boxes = parse_annotations(find_annotation(wider_root, "val"))
    assert len(boxes) > 30
    assert all(b.w > 0 and b.h > 0 for b in boxes)
    assert {b.image.split("/")[0] for b in boxes} == {"0--Parade", "1--Handshaking"}


def test_widerface_filters_selection_and_crops(wider_root, tmp_path):
    ds = DATASETS.get("widerface").create()
    m = ds.manifest(wider_root)
    from scgan_bench.datasets.widerface import find_annotation, parse_annotations

    boxes = parse_annotations(find_annotation(wider_root, "val"))
    expected = sum(ds.keep(b) for b in boxes)
    assert 0 < len(m) == expected < len(boxes)  # the size filter removed the large faces
    for it in m.items:
        l, t, r, b = it.box
        assert r - l == b - t and 16 <= r - l <= 64  # square crops of kept faces
        assert "__f" in it.id and it.source.startswith("WIDER_val/images/")
    assert ds.manifest(wider_root).digest() == m.digest()  # deterministic (and cached)

    few = DATASETS.get("widerface").create(n=5, max_size=200)
    m5 = few.manifest(wider_root)
    assert len(m5) == 5
    other = DATASETS.get("widerface").create(n=5, max_size=200, seed=1).manifest(wider_root)
    assert {i.id for i in other.items} != {i.id for i in m5.items}

    res = prepare_dataset("widerface", out=tmp_path / "run", seed=0, root=wider_root, progress=False)
    assert len(res.records) == len(m) and not res.failures
    for rec in res.records.values():
        assert rec["hr"] is None and rec["degradation"] is None
        assert read_image(res.dir / rec["lr"]).shape == (16, 16, 3)


def test_widerface_bad_annotation_file_is_named(tmp_path):
    from scgan_bench.datasets.widerface import parse_annotations

    p = tmp_path / "wider_face_val_bbx_gt.txt"
    p.write_text("0--Parade/a.jpg\n2\n1 2 30 30 0 0 0 0 0 0\n")
    with pytest.raises(UsageError, match="announces 2 faces"):
        parse_annotations(p)
    p.write_text("0--Parade/a.jpg\nfour\n")
    with pytest.raises(UsageError, match=r"wider_face_val_bbx_gt.txt:2"):
        parse_annotations(p)


def test_widerface_rejects_a_degradation(wider_root, tmp_path):
    with pytest.raises(UsageError, match="real-world LR set"):
        prepare_dataset("widerface", out=tmp_path / "r", seed=0, root=wider_root,
                        degradation="complex", progress=False)


# ----------------------------------------------------------------------------- LS3D-W, folders
def test_ls3dw_seeded_selection_and_simple_degradation(hr_faces, tmp_path):
    res = prepare_dataset("ls3dw", out=tmp_path / "run", seed=0, root=hr_faces,
                          options={"n": 10}, progress=False)
    assert len(res.records) == 10 and not res.failures
    assert {r["degradation"]["kernel"] for r in res.records.values()} <= {"bilinear", "bicubic"}
    assert res.manifest.header["selection"].startswith("random.Random(2205)")
    again = DATASETS.get("ls3dw").create(n=10).manifest(hr_faces)
    assert again.digest() == res.manifest.digest()


def _write_bad_files(folder: Path) -> dict[str, str]:
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    good = (folder / "00000.png").read_bytes()
    (folder / "half.png").write_bytes(good[: len(good) // 3])
    return {"zero": "empty file", "text": "not a recognised image format", "half": "truncated"}


def test_folder_with_bad_files_finishes_the_good_ones(hr_faces, tmp_path):
    bad = _write_bad_files(hr_faces)
    res = prepare_dataset("folder", out=tmp_path / "run", seed=0, root=hr_faces, progress=False)
    assert len(res.records) == 24
    reasons = {f.image_id: f.reason for f in res.failures}
    assert set(reasons) == set(bad)
    for k, frag in bad.items():
        assert frag in reasons[k]


def test_demo_sets_are_built_offline(tmp_path):
    syn = prepare_dataset("demo", out=tmp_path / "r", seed=0, progress=False)
    real = prepare_dataset("demo-real", out=tmp_path / "r", seed=0, progress=False)
    assert len(syn.records) == 101 and len(real.records) == 100
    hr = read_image(syn.dir / syn.records["astronaut"]["hr"])
    assert hr.shape == (64, 64, 3) and hr.std() > 20  # a real colour face, not a blank
    assert read_image(real.dir / real.records["lfw-000"]["lr"]).shape == (16, 16, 3)


# ----------------------------------------------------------------------------- integrity
def test_changed_or_missing_source_is_detected(hr_faces, tmp_path):
    prepare_dataset("folder", out=tmp_path / "a", seed=0, root=hr_faces, progress=False)
    victim = hr_faces / "00003.png"
    arr = read_image(victim)
    arr[0, 0] = 255 - arr[0, 0]
    from scgan_bench.io.image_io import write_png

    write_png(victim, arr)
    with pytest.raises(DataIntegrityError) as ei:
        prepare_dataset("folder", out=tmp_path / "b", seed=0, root=hr_faces, progress=False)
    assert "changed: 00003.png" in str(ei.value) and "--accept-data-changes" in str(ei.value)

    res = prepare_dataset("folder", out=tmp_path / "b", seed=0, root=hr_faces,
                          accept_data_changes=True, progress=False)
    assert len(res.records) == 24
    prepare_dataset("folder", out=tmp_path / "b", seed=0, root=hr_faces, progress=False)  # re-recorded

    ds = DATASETS.get("ls3dw").create(n=24)
    prepare_dataset("ls3dw", out=tmp_path / "c", seed=0, root=hr_faces, options={"n": 24},
                    progress=False)
    (hr_faces / "00005.png").unlink()
    with pytest.raises(DataIntegrityError, match=r"missing: 00005.png \(.*file not found"):
        prepare_dataset("ls3dw", out=tmp_path / "c", seed=0, root=hr_faces, options={"n": 24},
                        progress=False)
    assert ds.name == "ls3dw"


def test_unknown_dataset_option_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="bad option"):
        prepare_dataset("demo", out=tmp_path, seed=0, options={"colour": True}, progress=False)


def test_records_hold_degradation_parameters(tmp_path, monkeypatch):
    res = prepare_dataset("demo", out=tmp_path / "r", seed=3, limit=5, progress=False)
    for rec in res.records.values():
        d = rec["degradation"]
        assert 0.5 <= d["blur_sigma"] <= 8 and 1 <= d["noise_sigma"] <= 25 and 30 <= d["jpeg_quality"] <= 95
    first = {k: v["lr_sha256"] for k, v in res.records.items()}
    shutil.rmtree(tmp_path / "r")
    from scgan_bench.run import prepare

    monkeypatch.setattr(prepare, "MIN_ITEMS_PER_PROCESS", 1)  # force real worker processes
    res2 = prepare_dataset("demo", out=tmp_path / "r", seed=3, limit=5, workers=2, progress=False)
    assert {k: v["lr_sha256"] for k, v in res2.records.items()} == first
    np.testing.assert_array_equal(read_image(res.dir / "lr" / "lfw-000.png"),
                                  read_image(res2.dir / "lr" / "lfw-000.png"))


def test_folder_pairs_scores_given_lr_hr_pairs_as_given(tmp_path, hr_faces):
    """Issue 26: a folder of given LR/HR pairs (hr/ and lr/, matched by name, any suffix): LR used byte for
    byte (no degradation), unpaired files and a wrong-size LR reported, a degradation refused."""
    import csv as _csv

    from PIL import Image

    from scgan_bench.cli import main
    from scgan_bench.io.image_io import read_image

    root = tmp_path / "pairs"
    (root / "hr" / "sub").mkdir(parents=True)
    (root / "lr" / "sub").mkdir(parents=True)
    faces = sorted(hr_faces.glob("*.png"))[:5]
    for k, f in enumerate(faces[:4]):
        rel = f"sub/f{k}" if k % 2 else f"f{k}"
        Image.open(f).save(root / "hr" / f"{rel}.png")
        Image.open(f).resize((16, 16), Image.Resampling.BOX).save(root / "lr" / f"{rel}.png")
    Image.open(faces[1]).resize((16, 16)).save(root / "lr" / "sub" / "f1.png")   # overwrite: used as given
    (root / "lr" / "f2.png").unlink()
    Image.open(faces[2]).resize((16, 16)).convert("RGB").save(root / "lr" / "f2.jpg", quality=95)  # any suffix
    Image.open(faces[4]).save(root / "hr" / "lonely.png")                          # no LR
    Image.open(faces[0]).resize((32, 32)).save(root / "lr" / "f0.png")            # wrong size
    run = tmp_path / "run"
    assert main(["run", "--datasets", "folder-pairs", "--root", f"folder-pairs={root}", "--methods", "bicubic",
                 "--metrics", "psnr", "--quiet", "--device", "cpu", "--out", str(run)]) == 0
    fails = {r["image_id"] or r["source"]: r["reason"] for r in _csv.DictReader(open(run / "failures.csv"))}
    assert any("no LR image lr/lonely" in why for why in fails.values())
    assert "32x32 px, but folder-pairs takes 16x16" in fails["f0"]
    ids = (run / "data" / "folder-pairs" / "ids.txt").read_text().split()
    assert ids == ["f2", "sub__f1", "sub__f3"]
    for i, rel in (("sub__f1", "lr/sub/f1.png"), ("f2", "lr/f2.jpg")):
        assert (read_image(run / "data" / "folder-pairs" / "lr" / f"{i}.png") == read_image(root / rel)).all()
    rec = json.loads((run / "data" / "folder-pairs" / "records" / "f2.json").read_text())
    assert rec["degradation"] == {"name": "given"}
    assert main(["run", "--datasets", "folder-pairs", "--root", f"folder-pairs={root}", "--degradation",
                 "folder-pairs=simple", "--methods", "bicubic", "--metrics", "psnr", "--quiet", "--out",
                 str(tmp_path / "r2")]) == 2
