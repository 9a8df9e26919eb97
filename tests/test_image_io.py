"""Robust decoding: every good format and mode becomes RGB uint8; every bad file gets an error that
names the file and the cause."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scgan_bench.errors import ImageDecodeError
from scgan_bench.io.image_io import atomic_write_bytes, read_image

from sb_testdata import ORL, need, rgb_face


def _save(path: Path, im: Image.Image, **kw) -> Path:
    im.save(path, **kw)
    return path


@pytest.fixture
def face() -> np.ndarray:
    return rgb_face(0, 64)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tif"),
                                        ("WEBP", ".webp"), ("PPM", ".ppm")])
def test_lossless_formats_roundtrip_exactly(tmp_path, face, fmt, suffix):
    kw = {"lossless": True} if fmt == "WEBP" else {}
    p = _save(tmp_path / f"f{suffix}", Image.fromarray(face), format=fmt, **kw)
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out, face)


def test_jpeg_decodes_close_to_source(tmp_path, face):
    p = _save(tmp_path / "f.jpg", Image.fromarray(face), format="JPEG", quality=95)
    out = read_image(p)
    assert out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - face.astype(int)).mean() < 3.0


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255  # white left half, landscape 40x20
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "rot.jpg"
    im.save(p, format="JPEG", quality=95, exif=exif.tobytes())
    out = read_image(p)
    assert out.shape == (40, 20, 3)  # portrait after transposition
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half is now on top


def test_grey_pgm_from_orl(tmp_path):
    p = need(ORL) / "s1" / "1.pgm"
    out = read_image(p)
    assert out.shape == (112, 92, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    a16 = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, 0)
    p = tmp_path / "g16.png"
    Image.fromarray(a16).save(p)
    out = read_image(p)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])


def test_alpha_and_palette_composite_on_white(tmp_path, face):
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    rgba[:8, :8, 3] = 0
    p = _save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA"))
    out = read_image(p)
    assert (out[:8, :8] == 255).all()
    np.testing.assert_array_equal(out[8:, 8:], face[8:, 8:])

    pal = Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    p2 = _save(tmp_path / "p.png", pal, transparency=0)
    assert read_image(p2).shape == (64, 64, 3)
    p3 = _save(tmp_path / "p.gif", Image.fromarray(face).convert("P"))
    assert read_image(p3).shape == (64, 64, 3)
    la = Image.fromarray(face).convert("LA")
    assert read_image(_save(tmp_path / "la.png", la)).shape == (64, 64, 3)


def test_cmyk_jpeg(tmp_path, face):
    p = _save(tmp_path / "c.jpg", Image.fromarray(face).convert("CMYK"), format="JPEG", quality=95)
    out = read_image(p)
    assert out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - face.astype(int)).mean() < 10


# ----------------------------------------------------------------------------- bad inputs
def _expect(path: Path, *fragments: str) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as ei:
        read_image(path)
    msg = str(ei.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return ei.value


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    _expect(p, "empty file")


def test_missing_file_and_directory(tmp_path):
    _expect(tmp_path / "nope.png", "file not found")
    (tmp_path / "dir.png").mkdir()
    _expect(tmp_path / "dir.png", "directory")


def test_non_image_file(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is a text file pretending to be a JPEG\n")
    msg = str(_expect(p, "not a recognised image format", "44 bytes")).replace(str(p), "")
    assert "text" not in msg and "74 68" not in msg  # the file's content is never echoed


def test_truncated_png_and_jpeg(tmp_path, face):
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg")):
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, format=fmt)
        data = buf.getvalue()
        p = tmp_path / f"trunc{suffix}"
        p.write_bytes(data[: len(data) // 2])
        _expect(p, "truncated")


def test_corrupt_png_data(tmp_path, face):
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 8
    for i in range(start, min(start + 200, len(data) - 20)):
        data[i] ^= 0xA5
    p = tmp_path / "corrupt.png"
    p.write_bytes(bytes(data))
    err = _expect(p)
    assert "corrupt" in err.reason or "truncated" in err.reason


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    # A 100,000 x 100,000 greyscale PNG header (10 gigapixels) with a tiny payload.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
           + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + _png_chunk(b"IEND", b""))
    p = tmp_path / "bomb.png"
    p.write_bytes(png)
    _expect(p, "decompression-bomb guard", "100000x100000 = 10,000,000,000 pixels")


def test_max_pixels_limit_is_configurable(tmp_path, face, monkeypatch):
    p = _save(tmp_path / "f.png", Image.fromarray(face))
    monkeypatch.setenv("SCGAN_BENCH_MAX_PIXELS", "1000")
    _expect(p, "64x64", "over the limit of 1,000")
    assert read_image(p, max_pixels=5000).shape == (64, 64, 3)


def test_atomic_write_leaves_no_temp_and_normal_permissions(tmp_path):
    p = tmp_path / "sub" / "x.bin"
    atomic_write_bytes(p, b"abc")
    atomic_write_bytes(p, b"defg")
    assert p.read_bytes() == b"defg"
    assert [q.name for q in p.parent.iterdir()] == ["x.bin"]
    assert p.stat().st_mode & 0o044  # group/other readable under a normal umask
