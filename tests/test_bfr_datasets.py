"""Issue 30: the blind-face-restoration test sets in their authors' layouts, generated here from the shared
128 px faces standing in for the 512 px ones: ids, pairing, landmarks, missing and extra files named,
counts against the published ones, and the sizes each protocol gives."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scgan_bench.errors import UsageError
from scgan_bench.protocols import get_protocol
from scgan_bench.registries import DATASETS, load_plugins

from sb_testdata import HR_FACES, need

load_plugins()


def _faces(n: int, start: int = 0) -> list[Path]:
    return [need(HR_FACES) / f"{i:05d}.png" for i in range(start, start + n)]


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture
def celeba(tmp_path) -> Path:
    """GFPGAN's layout: celeba_512_validation/ (HQ) beside celeba_512_validation_lq/; 00000003 has no LQ, an
    LQ 00000099 no HQ. The LQ stand-ins are the next faces, JPEG-compressed (any distinct image will do)."""
    root = tmp_path / "CelebA-Test"
    (root / "celeba_512_validation").mkdir(parents=True)
    (root / "celeba_512_validation_lq").mkdir()
    for i, f in enumerate(_faces(4)):
        shutil.copy(f, root / "celeba_512_validation" / f"{i:08d}.png")
        if i != 3:
            Image.open(_faces(1, 10 + i)[0]).convert("RGB").save(root / "celeba_512_validation_lq" / f"{i:08d}.png")
    shutil.copy(_faces(1, 20)[0], root / "celeba_512_validation_lq" / "00000099.png")
    return tmp_path


def test_celeba_test_pairs_by_name_and_names_what_is_unpaired(celeba):
    ds = DATASETS.get("celeba-test").create()
    root = ds.locate(celeba)
    assert root.name == "CelebA-Test"
    m = ds.manifest(root)
    assert [it.id for it in m.items] == ["00000000", "00000001", "00000002"]
    assert [it.source for it in m.items][0] == "celeba_512_validation/00000000.png"
    rejected = dict(m.rejected)
    assert "no LR image celeba_512_validation_lq/00000003.* beside it" in rejected["celeba_512_validation/00000003.png"]
    assert "no HR image celeba_512_validation/ of this name" in rejected["celeba_512_validation_lq/00000099"]
    assert m.header["published_count"] == 3000 and "3 images found, the published set has 3,000" in m.header["count_note"]
    with pytest.raises(UsageError, match="must hold celeba_512_validation/ and celeba_512_validation_lq/ folders"):
        ds.locate(celeba / "CelebA-Test" / "celeba_512_validation")


def test_celeba_test_lq_is_given_as_it_is_under_bfr_and_resized_under_scgan(celeba, tmp_path):
    from scgan_bench.run.prepare import prepare_dataset

    p = prepare_dataset("celeba-test", out=tmp_path / "bfr", seed=0, root=celeba, progress=False,
                        protocol=get_protocol("bfr-128"))
    assert p.degradation is None and len(p.records) == 3
    assert {f.source for f in p.failures} == {"celeba_512_validation/00000003.png", "celeba_512_validation_lq/00000099"}
    for i in range(3):
        rec = p.records[f"{i:08d}"]
        assert np.array_equal(_png(p.dir / rec["lr"]), _png(celeba / "CelebA-Test" / "celeba_512_validation_lq" / f"{i:08d}.png"))
        assert np.array_equal(_png(p.dir / rec["hr"]), _png(_faces(4)[i]))
    q = prepare_dataset("celeba-test", out=tmp_path / "sr", seed=0, root=celeba, progress=False)
    rec = q.records["00000000"]
    assert _png(q.dir / rec["lr"]).shape == (16, 16, 3) and _png(q.dir / rec["hr"]).shape == (64, 64, 3)
    with pytest.raises(UsageError, match="given LR/HR pairs|takes no degradation"):
        prepare_dataset("celeba-test", out=tmp_path / "x", seed=0, root=celeba, degradation="gfpgan", progress=False,
                        protocol=get_protocol("bfr-128"))


@pytest.mark.parametrize("name,folder,published", [("lfw-test", "LFW-Test", 1711), ("webphoto-test", "WebPhoto-Test", 407),
                                                   ("wider-test", "Wider-Test", 970),
                                                   ("celebchild-test", "CelebChild-Test", 180)])
def test_real_sets_are_found_as_unpacked_and_say_their_count(tmp_path, name, folder, published):
    """``ROOT/<set>/<set>/*.png`` (an archive unpacked twice) is found from ROOT; every image is listed with
    its relative-path id; the count differs from the published one and the manifest says so."""
    inner = tmp_path / folder / folder
    (inner / "sub").mkdir(parents=True)
    for i, f in enumerate(_faces(3)):
        shutil.copy(f, inner / ("sub" if i == 2 else "") / f"{i:04d}.png")
    ds = DATASETS.get(name).create()
    root = ds.locate(tmp_path)
    assert root == inner
    m = ds.manifest(root)
    assert [it.id for it in m.items] == ["0000", "0001", "sub__0002"]
    assert m.header["count_note"].startswith(f"{name}: 3 images found, the published set has {published:,}")
    assert ds.load(root, m.items[0]).shape == (16, 16, 3)
    assert DATASETS.get(name).default_reference == "ffhq" and DATASETS.get(name).kind == "real"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="holds no images and no folder named"):
        ds.locate(empty)


# ------------------------------------------------------------------------------------------ NTIRE
HEADER = ["filename", "dataset", "x1", "y1", "x2", "y2", "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y",
          "nose_x", "nose_y", "mouth_left_x", "mouth_left_y", "mouth_right_x", "mouth_right_y"]


def _ntire(tmp_path: Path, landmark_name: str = "test_face.csv", in_subfolder: bool = True) -> tuple[Path, dict]:
    """test/{CelebA, Wider-Test, LFW-Test}/ with the organisers' landmark columns: 162747 (CelebA) and 0412,
    0541 (Wider-Test) listed and present; 0777 (Wider-Test) present without a row; 0001 listed in LFW-Test but
    absent; 0900 listed as LFW-Test but in Wider-Test/."""
    root = tmp_path / "NTIRE"
    files = {"CelebA": ["162747"], "Wider-Test": ["0412", "0541", "0777", "0900"], "LFW-Test": []}
    faces = iter(_faces(6))
    for sub, ids in files.items():
        (root / "test" / sub).mkdir(parents=True)
        for i in ids:
            shutil.copy(next(faces), root / "test" / sub / f"{i}.png")
    rows = {"162747": ("CelebA", 110.5, 133.8), "0412": ("Wider-Test", 109.9, 105.6), "0541": ("Wider-Test", 112.5, 105.8),
            "0001": ("LFW-Test", 90.0, 90.0), "0900": ("LFW-Test", 80.0, 81.0)}
    where = root / "face_alignment" if in_subfolder else root
    where.mkdir(exist_ok=True)
    with open(where / landmark_name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for fid, (sub, x, y) in rows.items():
            w.writerow([fid, sub, x, y, x + 280, y + 330] + [round(x + k * 10.5, 3) for k in range(10)])
    return root, rows


def test_ntire_ids_landmarks_and_every_mismatch_named(tmp_path):
    root, rows = _ntire(tmp_path)
    ds = DATASETS.get("ntire2025-rwfr").create()
    assert ds.locate(tmp_path / "NTIRE") == root
    m = ds.manifest(root)
    assert [it.id for it in m.items] == ["162747", "0412", "0541"]
    assert [it.source for it in m.items] == ["test/CelebA/162747.png", "test/Wider-Test/0412.png",
                                             "test/Wider-Test/0541.png"]
    why = dict(m.rejected)
    assert "no row for '0777' in test_face.csv" in why["test/Wider-Test/0777.png"]
    assert "lists '0900' in LFW-Test, not WIDER-Test" in why["test/Wider-Test/0900.png"]
    assert "listed in test_face.csv, no image" in why["test/LFW-Test/0001.png"]
    assert m.header["subsets"] == {"CelebA": 1, "LFW-Test": 0, "WIDER-Test": 2}
    assert "CelebA: 1 images, the challenge's 100" in m.header["count_note"]
    marks = ds.landmarks(root)
    got = marks["0412"]
    assert got.subset == "WIDER-Test" and got.box == (109.9, 105.6, 389.9, 435.6)
    want = np.array([[109.9 + 2 * k * 10.5, 109.9 + (2 * k + 1) * 10.5] for k in range(5)]).round(3)   # as written above
    np.testing.assert_allclose(got.points, want, rtol=0, atol=1e-9)
    assert ds.subset_of(m.items[1]) == "WIDER-Test"
    one = DATASETS.get("ntire2025-rwfr").create(subset="WIDER-Test").manifest(root)
    assert [it.id for it in one.items] == ["0412", "0541"]
    assert all("CelebA" not in src for src, _ in one.rejected)


def test_ntire_2026_reads_its_own_landmark_file_and_bad_input_is_named(tmp_path):
    root, _ = _ntire(tmp_path, "test_2026_face.csv", in_subfolder=False)
    ds = DATASETS.get("ntire2026-rwfr").create()
    assert [it.id for it in ds.manifest(root).items] == ["162747", "0412", "0541"]
    with pytest.raises(UsageError, match="subset must be all or one of"):
        DATASETS.get("ntire2026-rwfr").create(subset="FFHQ")
    shutil.copy(root / "test" / "CelebA" / "162747.png", root / "test" / "Wider-Test" / "162747.png")
    with pytest.raises(UsageError, match="have one file name"):
        ds.manifest(root)
    (root / "test" / "Wider-Test" / "162747.png").unlink()
    text = (root / "test_2026_face.csv").read_text().replace("110.5,133.8", "oops,133.8", 1)
    (root / "test_2026_face.csv").write_text(text)
    with pytest.raises(UsageError, match="test_2026_face.csv, line 2: a coordinate is not a number"):
        ds.manifest(root)
    (root / "test_2026_face.csv").write_text("name,x\n1,2\n")
    with pytest.raises(UsageError, match="not the organisers' landmark file"):
        ds.manifest(root)


def test_a_bfr_run_over_celeba_test_and_a_real_set_says_what_is_not_comparable(celeba, tmp_path):
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    real = tmp_path / "web" / "WebPhoto-Test"
    real.mkdir(parents=True)
    for f in _faces(2, 30):
        shutil.copy(f, real / f.name)
    res = run_benchmark(RunConfig(datasets=["celeba-test", "webphoto-test"], methods=["bicubic", "ground-truth"],
                                  metrics=["psnr", "niqe"], out=tmp_path / "run", protocol="bfr-128", progress=False,
                                  roots={"celeba-test": celeba, "webphoto-test": tmp_path / "web"}))
    psnr = {(c.dataset, c.method): c for c in res.cells if c.metric == "psnr"}
    assert psnr[("celeba-test", "ground-truth")].mean == float("inf")
    assert psnr[("webphoto-test", "bicubic")].status == "n/a"
    lines = " ".join(line for group in res.caveats.values() for line in group)
    assert "3 images found, the published set has 3,000" in lines and "2 images found, the published set has 407" in lines
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["datasets"]["celeba-test"]["manifest"]["published_count"] == 3000
