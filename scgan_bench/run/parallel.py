"""Concurrency of the per-image stages.

CPU-bound per-image work spread over worker processes: dlib's HOG detector, 68-point landmarks and
face descriptor each run on one core, and they are most of a CPU run. A class opts in with
``cpu_parallel = True`` (it must rebuild from its dataclass fields, or take no arguments); inside
``with worker_pool(n):`` its ``extract`` / ``score_images`` / ``score_pairs`` calls are split over ``n``
processes, each holding one instance per class. Values are computed per image exactly as in one
process, so results are identical (tested); outside a pool, or for one worker, nothing changes.

:func:`prefetched` decodes the next batch in a thread while the current one runs; :func:`to_device`
copies a batch to a GPU through pinned memory."""
from __future__ import annotations

import contextvars
import dataclasses
import importlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
U = TypeVar("U")

_POOL: ProcessPoolExecutor | None = None
_WORKERS = 1
_BUILT: dict[tuple, Any] = {}  # in a worker: (module, class, kwargs) -> the instance


@contextmanager
def worker_pool(workers: int) -> Iterator[None]:
    """Run the block's opted-in per-image work in ``workers`` processes (started once, on first use)."""
    global _POOL, _WORKERS
    if workers <= 1 or _WORKERS > 1:  # one process, or a pool is already open (nested runs share it)
        yield
        return
    _WORKERS = workers
    try:
        yield
    finally:
        if _POOL is not None:
            _POOL.shutdown(cancel_futures=True)
        _POOL, _WORKERS = None, 1


def _spec(obj: Any) -> tuple | None:
    if not getattr(type(obj), "cpu_parallel", False):
        return None
    kwargs = tuple((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init) \
        if dataclasses.is_dataclass(obj) else ()
    return type(obj).__module__, type(obj).__qualname__, kwargs


def _run(spec: tuple, method: str, args: tuple, settings: Any = None) -> Any:
    """In a worker: the instance of ``spec`` (built once per process) applied to one part, under the
    calling run's settings."""
    if settings is not None:
        from ..settings import in_settings

        return in_settings(settings, _run, spec, method, args)
    obj = _BUILT.get(spec)
    if obj is None:
        module, qualname, kwargs = spec
        obj = _BUILT[spec] = getattr(importlib.import_module(module), qualname)(**dict(kwargs))
    return getattr(obj, method)(*args)


def call(obj: Any, method: str, *lists: Sequence[Any]) -> list[Any]:
    """``obj.method(*lists)`` (lists of images, one entry per image), split over the pool's workers
    when ``obj`` opts in and a pool is open; the parts' results concatenated in input order."""
    global _POOL
    spec = _spec(obj)
    n = len(lists[0]) if lists else 0
    if spec is None or _WORKERS <= 1 or n < 2:
        return list(getattr(obj, method)(*lists))
    if _POOL is None:
        _POOL = ProcessPoolExecutor(max_workers=_WORKERS, mp_context=get_context("spawn"))
    parts = min(_WORKERS, n)
    bounds = [n * k // parts for k in range(parts + 1)]
    from ..settings import current

    settings = current()
    futures = [_POOL.submit(_run, spec, method, tuple(list(x[a:b]) for x in lists), settings)
               for a, b in zip(bounds, bounds[1:])]
    out: list[Any] = []
    for f in futures:
        out.extend(list(f.result()))
    return out


def prefetched(chunks: Iterable[T], load: Callable[[T], U]) -> Iterator[tuple[T, U]]:
    """Each chunk with ``load(chunk)``, the next chunk's ``load`` (decoding PNGs: Pillow releases the GIL)
    running in a thread while the caller works on this one (the GPU, or the metrics, are not kept
    waiting for the disk). Order and values are those of the plain loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        it = iter(chunks)
        try:
            nxt = next(it)
        except StopIteration:
            return
        ctx = contextvars.copy_context()   # the loads see this run's settings
        fut = pool.submit(ctx.copy().run, load, nxt)
        for chunk in it:
            cur, cur_fut = nxt, fut
            nxt, fut = chunk, pool.submit(ctx.copy().run, load, chunk)
            yield cur, cur_fut.result()
        yield nxt, fut.result()


def to_device(t: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """A host tensor on ``device``: through pinned memory and an asynchronous copy on CUDA."""
    import torch

    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
