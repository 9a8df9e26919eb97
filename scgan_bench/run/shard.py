"""Sharded evaluation: one ``scgan-bench run`` over several processes (``torchrun``, one or many nodes).

Under ``torchrun --nproc_per_node N -m scgan_bench run ...`` every rank runs the same pipeline on the same
run folder (a shared filesystem) and takes its part of each per-image stage:

* decoding and degrading (stage 1): images ``rank::world`` of the work left to do;
* SR, per-image metrics and feature extraction: the *batches* ``rank::world`` of the work left, the
  batches being those one process would form, so every network sees exactly the batches it would see
  in one process and results are bit for bit those of one process (on CPU; see the README);
* each rank writes only the per-image files of its own images (PNGs, records), and its own part file
  of a feature cache (``<extractor>.part-R-of-W.npz``); everything written once per folder (``key.json``,
  metric files, merged feature caches, ``run.json``, results, tables) is written by rank 0 alone,
  from what the ranks gathered;
* set metrics (FID, KID, verification) are computed by rank 0 from the merged features.

The control plane is a gloo process group (small Python objects: records, values, failures), so the
same code runs on CPUs and GPUs; each rank evaluates on ``cuda:LOCAL_RANK`` when it has GPUs. A rank
that dies ends the job (torchrun stops the others); rerunning the same command resumes from what
every rank finished. One process is the world of size 1 (:data:`SINGLE`): nothing is exchanged.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence, TypeVar

from ..errors import UsageError

T = TypeVar("T")


class RankStopped(UsageError):
    """Another rank (rank 0) stopped the run; this rank stops with its reason."""


@dataclass(frozen=True)
class Shard:
    """This process's place in the run: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one writer of every file that is not per image."""
        return self.rank == 0

    def own(self, items: Sequence[T]) -> list[T]:
        """This rank's items: ``items[rank::world]`` (per-image work, order kept)."""
        return list(items[self.rank::self.world])

    def own_batches(self, items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
        """This rank's batches: the batches of ``size`` one process would form, ``rank::world``."""
        for k, start in enumerate(range(0, len(items), size)):
            if k % self.world == self.rank:
                yield items[start:start + size]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def from_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 alone; its result reaches every rank, or its exception is raised on
        every rank (the same type and text, so every rank takes the same path)."""
        if self.world == 1:
            return fn()
        import pickle

        import torch.distributed as dist

        box: list[Any] = [None]
        if self.main:
            try:
                box[0] = ("ok", fn())
            except Exception as exc:  # noqa: BLE001 (re-raised on every rank below)
                original = exc
                try:
                    pickle.loads(pickle.dumps(exc))
                    box[0] = ("error", exc)
                except Exception:  # noqa: BLE001 (an exception that does not travel: its text does)
                    box[0] = ("error", RankStopped(f"rank 0 stopped: {type(exc).__name__}: {exc}"))
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise original if self.main else value
        return value

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


SINGLE = Shard()


def world_from_env(env: dict[str, str] | None = None) -> tuple[int, int]:
    """``(rank, world)`` from torchrun's ``RANK`` / ``WORLD_SIZE`` (``(0, 1)`` when absent)."""
    env = os.environ if env is None else env
    try:
        rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UsageError(f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} are not integers") from None
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is not a rank of WORLD_SIZE={world}")
    return rank, world


@contextmanager
def session(shard: Shard | None = None) -> Iterator[Shard]:
    """The shard of this process for the block (:func:`from_environment` unless given); a process group it
    started is destroyed at the end, so no rank exits with gloo's threads still running (which aborts the
    process: "terminate called without an active exception")."""
    import torch.distributed as dist

    started = shard is None and world_from_env()[1] > 1 and dist.is_available() and not dist.is_initialized()
    shard = from_environment() if shard is None else shard
    try:
        yield shard
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()


def from_environment() -> Shard:
    """This process's shard: torchrun's world (its gloo process group started here once), else :data:`SINGLE`.

    ``$SCGAN_BENCH_DIST_TIMEOUT_S`` (default 7200) bounds how long a rank waits for the others (rank 0
    computes set metrics while the others wait)."""
    rank, world = world_from_env()
    if world == 1:
        return SINGLE
    import torch.distributed as dist

    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("SCGAN_BENCH_DIST_TIMEOUT_S", "7200")))
        dist.init_process_group("gloo", timeout=timeout)
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise UsageError(f"the process group ({dist.get_rank()} of {dist.get_world_size()}) is not torchrun's "
                         f"RANK={rank} of WORLD_SIZE={world}")
    return Shard(rank, world)
