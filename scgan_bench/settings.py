"""Settings that change what a run reads or fetches: the decompression-bomb pixel limit, offline mode and
following links out of a dataset root. A run takes them in its config (:class:`RunConfig` fields); the
environment (``$SCGAN_BENCH_MAX_PIXELS``, ``$SCGAN_BENCH_OFFLINE``, ``$SCGAN_BENCH_FOLLOW_LINKS``) is read
once, at the edge, as the default. Code below reads :func:`current`; a run sets it for its duration
(:func:`using`), and the worker threads and processes it starts get the same settings
(:func:`in_settings`), so two runs in one process never share them and ``os.environ`` is never written."""
from __future__ import annotations

import contextvars
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping

from .errors import UsageError

#: Default decompression-bomb guard: 50 megapixels (a 7071x7071 image). FFHQ's largest is 1 Mpx.
DEFAULT_MAX_PIXELS = 50_000_000

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    max_pixels: int = DEFAULT_MAX_PIXELS
    offline: bool = False
    follow_links: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The environment's settings (a malformed pixel limit is a usage error)."""
        env = os.environ if env is None else env
        raw = env.get("SCGAN_BENCH_MAX_PIXELS")
        limit = DEFAULT_MAX_PIXELS
        if raw:
            try:
                limit = int(raw)
            except ValueError:
                limit = 0
            if limit < 1:
                raise UsageError(f"--max-pixels / $SCGAN_BENCH_MAX_PIXELS must be a positive integer, got {raw!r}")
        return cls(max_pixels=limit, offline=env.get("SCGAN_BENCH_OFFLINE", "").lower() in _TRUE,
                   follow_links=env.get("SCGAN_BENCH_FOLLOW_LINKS", "") not in ("", "0"))

    def overridden(self, **values: Any) -> "Settings":
        """These settings with every value that is not ``None`` replaced (a config's explicit choices)."""
        given = {k: v for k, v in values.items() if v is not None}
        if "max_pixels" in given and (not isinstance(given["max_pixels"], int) or given["max_pixels"] < 1):
            raise UsageError(f"max_pixels must be a positive number of pixels, got {given['max_pixels']!r}")
        return replace(self, **given)


_CURRENT: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("scgan_bench_settings", default=None)


def current() -> Settings:
    """The settings in force: those of the run in progress, else the environment's."""
    s = _CURRENT.get()
    return s if s is not None else Settings.from_env()


@contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    """``settings`` in force for the block (this thread / task, and what :func:`in_settings` starts)."""
    token = _CURRENT.set(settings)
    try:
        yield settings
    finally:
        _CURRENT.reset(token)


def in_settings(settings: Settings, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` under ``settings``: what a worker thread or process runs (picklable when ``fn`` is)."""
    with using(settings):
        return fn(*args)
