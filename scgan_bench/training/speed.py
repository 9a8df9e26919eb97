"""How a training step is executed: ``--speed eager|compiled|graph|compiled-graph``.

* ``eager``: the step as written, one host dispatch per operation.
* ``compiled``: the tensor functions a model names (:attr:`Trainable.compiled_parts`: its generators'
  forward and its losses) run through ``torch.compile`` (inductor; their backward is compiled with
  them); the optimiser steps, the gradient routing and host-side logic (CycleGAN's image pools, LRGAN's
  stages) stay eager. Only tensors cross a compiled function's boundary, so a new step never recompiles.
* ``graph`` (CUDA): the whole step (generation, losses, backward, optimiser steps) captured once as one
  CUDA graph after :data:`WARMUP_STEPS` eager steps, then replayed: the host launches one graph per
  step instead of ~10,000 kernels. Needs capturable optimisers (fused Adam reading its learning rate
  from a device tensor that mirrors the scheduled float) and a step without host decisions (CycleGAN's
  pools draw on the host: refused).
* ``compiled-graph`` (CUDA): ``graph`` around the ``compiled`` step.

Every mode computes the same step: the modes differ in floating-point order only (tested on the CPU for
``compiled``; the device check measures ``graph`` against ``eager``). Modes other than ``eager`` run
one process. The mode is part of a run's identity (a resume keeps it)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import torch

from ..errors import UsageError

if TYPE_CHECKING:
    from .engine import Batch, Engine

SPEEDS = ("eager", "compiled", "graph", "compiled-graph")
GRAPH_SPEEDS = ("graph", "compiled-graph")
COMPILED_SPEEDS = ("compiled", "compiled-graph")
#: eager steps before a capture (on a side stream): lazily made state (optimiser moments, cuDNN plans,
#: autotuned kernels) exists before the graph records the step
WARMUP_STEPS = 3

StepFn = Callable[["Batch"], Mapping[str, torch.Tensor]]


def check_speed(speed: str, device: torch.device, world: int, capturable: bool, method: str) -> None:
    """A clear error when ``speed`` cannot run here."""
    if speed not in SPEEDS:
        raise UsageError(f"--speed must be one of {', '.join(SPEEDS)}, got {speed!r}")
    if speed != "eager" and world > 1:
        raise UsageError(f"--speed {speed} runs one process (the cross-rank BatchNorm's and the gradients' "
                         "all-reduces are neither traced nor captured); with torchrun use --speed eager")
    if speed in GRAPH_SPEEDS:
        if device.type != "cuda":
            raise UsageError(f"--speed {speed} captures the step as a CUDA graph: it needs --device cuda "
                             f"(on {device.type} use --speed eager or compiled)")
        if not capturable:
            raise UsageError(f"--speed {speed}: method {method}'s step makes host-side decisions every step "
                             "(CycleGAN's image pools draw on the host), so it cannot be captured as one graph; "
                             "use --speed compiled")


#: extra ``torch.compile`` arguments (the tests use ``{"backend": "aot_eager"}``: dynamo's capture and
#: AOT autograd without inductor's minutes of code generation on two CPU cores)
COMPILE_OPTIONS: dict[str, Any] = {}


def compile_parts(impl: Any) -> None:
    """Replace each function the model names in ``compiled_parts`` by its ``torch.compile``d version."""
    for owner, name in impl.compiled_parts():
        setattr(owner, name, torch.compile(getattr(owner, name), dynamic=False, **COMPILE_OPTIONS))


class GraphedStep:
    """The whole step as one CUDA graph: :data:`WARMUP_STEPS` eager steps on a side stream, then the
    step is recorded once (inputs in static buffers, outputs stacked into one static tensor) and every
    later step copies its batch in and replays. ``capture`` and ``side_stream`` are injectable so the
    plumbing is testable without a GPU. ``key(batch)``: what the step's host-side structure depends on (LRGAN's
    stage); a new key records a new graph after a new warm-up."""

    def __init__(self, step: StepFn, optimizers: Iterable[torch.optim.Optimizer] = (), *,
                 key: Callable[["Batch"], Any] | None = None, warmup: int = WARMUP_STEPS,
                 capture: Callable[[Callable[[], Any]], Any] | None = None,
                 side_stream: Callable[[], Any] | None = None) -> None:
        self.step, self.warmup = step, warmup
        self.key = key or (lambda b: None)
        self._key: Any = None
        self.optimizers = list(optimizers)
        self._lr: list[tuple[dict[str, Any], torch.Tensor]] = []
        self._capture = capture or _cuda_capture
        self._side_stream = side_stream or _cuda_side_stream
        self.steps_run = 0
        self.replay: Callable[[], None] | None = None
        self.static_in: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.static_out: torch.Tensor | None = None
        self.keys: list[str] = []

    def __call__(self, b: "Batch") -> dict[str, torch.Tensor]:
        key = self.key(b)
        if key != self._key:  # the step's host-side structure changed (LRGAN's stage): warm up, record anew
            self._key, self.steps_run, self.replay = key, 0, None
            self.static_in = self.static_out = None
        if self.steps_run < self.warmup:
            with self._side_stream():
                terms = dict(self.step(b))
            self.steps_run += 1
            return terms
        if self.replay is None:
            self._record(b)
        assert self.static_in is not None and self.static_out is not None and self.replay is not None
        for dst, src in zip(self.static_in, (b.hr, b.lr, b.z)):
            dst.copy_(src, non_blocking=True)
        self.replay()
        self.steps_run += 1
        out = self.static_out.clone()  # the next replay overwrites the static outputs
        return dict(zip(self.keys, out.unbind()))

    def _record(self, b: "Batch") -> None:
        from .batch import Batch

        self.static_in = (b.hr.clone(), b.lr.clone(), b.z.clone())
        static_batch = Batch(*self.static_in, b.epoch, b.step)

        def body() -> None:
            terms = self.step(static_batch)
            self.keys = list(terms)
            self.static_out = torch.stack([t.detach().float().reshape(()) for t in terms.values()])

        # the captured optimiser reads its learning rate from device memory: a tensor per group while
        # recording; the groups keep their floats (schedulers, checkpoints), mirrored by :meth:`sync_lr`
        self._lr = [(g, torch.tensor(float(g["lr"]), dtype=torch.float32, device=b.hr.device))
                    for opt in self.optimizers for g in opt.param_groups]
        floats = [g["lr"] for g, _ in self._lr]
        for g, t in self._lr:
            g["lr"] = t
        try:
            self.replay = self._capture(body)
        finally:
            for (g, _), f in zip(self._lr, floats):
                g["lr"] = f

    def sync_lr(self) -> None:
        """Copy each group's (scheduled) learning rate into the tensor the graph reads (no host sync)."""
        for g, t in self._lr:
            t.fill_(float(g["lr"]))


def _cuda_side_stream():
    """A context that runs the block on a side stream ordered after (and before) the current one."""
    from contextlib import contextmanager

    @contextmanager
    def ctx():
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            yield
        torch.cuda.current_stream().wait_stream(s)

    return ctx()


def _cuda_capture(body: Callable[[], Any]) -> Callable[[], None]:
    """Record ``body`` (nothing runs during recording) as a CUDA graph; returns its replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def make_step(engine: "Engine") -> StepFn:
    """The engine's step function for its ``--speed``."""
    cfg = engine.cfg
    impl = engine.impl
    check_speed(cfg.speed, engine.device, engine.world, getattr(impl, "capturable", False), cfg.method)
    if cfg.speed in COMPILED_SPEEDS:
        compile_parts(impl)

    def eager(b: "Batch") -> Mapping[str, torch.Tensor]:
        return impl.step(b, engine)

    if cfg.speed not in GRAPH_SPEEDS:
        return eager
    return GraphedStep(eager, engine.optimizers.values(), key=getattr(impl, "graph_key", None))
