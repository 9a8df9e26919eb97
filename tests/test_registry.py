"""The registry: decorator registration, duplicate names refused, did-you-mean on a miss."""
from __future__ import annotations

import pytest

from scgan_bench.errors import UnknownNameError, UsageError
from scgan_bench.registries import DATASETS, METHODS, METRICS, load_plugins
from scgan_bench.registry import Registry


def test_register_get_and_duplicates():
    reg: Registry = Registry("widget")

    @reg.register("alpha")
    def alpha():
        return 1

    reg.register("beta", 2)
    assert reg.get("alpha") is alpha and reg.get("beta") == 2
    assert list(reg) == ["alpha", "beta"] and "alpha" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="duplicate widget name 'alpha'"):
        reg.register("alpha", 3)
    with pytest.raises(ValueError, match="invalid"):
        reg.register("a,b", 3)


def test_unknown_name_suggests_close_matches():
    reg: Registry = Registry("method")
    for n in ("bicubic", "bilinear", "nearest"):
        reg.register(n, n)
    with pytest.raises(UnknownNameError) as ei:
        reg.get("bicubc")
    msg = str(ei.value)
    assert "unknown method 'bicubc'" in msg and "Did you mean 'bicubic'" in msg
    assert "Allowed: bicubic, bilinear, nearest" in msg
    assert isinstance(ei.value, UsageError)


def test_resolve_list_all_and_order():
    reg: Registry = Registry("metric")
    for n in ("ssim", "psnr", "lpips"):
        reg.register(n, n)
    assert reg.resolve_list("all") == ["lpips", "psnr", "ssim"]
    assert reg.resolve_list("ssim, psnr,ssim") == ["ssim", "psnr"]
    with pytest.raises(UnknownNameError, match="Did you mean 'psnr'"):
        reg.resolve_list("ssim,psnrr")
    with pytest.raises(UnknownNameError, match="no metric given"):
        reg.resolve_list(" , ")


def test_builtin_plugins_are_registered():
    load_plugins()
    assert {"bicubic", "bilinear", "nearest"} <= set(METHODS)
    assert {"psnr", "ssim", "psnr-y", "ssim-y"} <= set(METRICS)
    assert {"demo", "demo-real", "folder", "folder-lr", "ffhq", "ls3dw", "widerface",
            "webface"} <= set(DATASETS)
    for _, spec in METRICS.items():
        assert spec.version and isinstance(spec.higher_is_better, bool) and spec.summary
