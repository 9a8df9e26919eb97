"""``train``: SCGAN (any of its variants), LRGAN or CycleGAN with the training engine."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from .options import add_recipe_options, crossings, pairs


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Arguments of the train command."""
    t = sub.add_parser("train", help="train SCGAN (or one of its ablation variants), LRGAN or CycleGAN")
    t.add_argument("--method", default=None, help="scgan (default), lrgan or cyclegan: the model the engine trains "
                                                  "(`scgan-bench list trainable`)")
    t.add_argument("--variant", default=None, help="the method's variant: an SCGAN variant (`scgan-bench list "
                                                   "variants`), lrgan, cyclegan or cyclegan-16")
    add_recipe_options(t, "SCGAN: official = the released train.py (default); paper = the equations as printed, R_LS "
                           "regularised by both cycles (README: SCGAN recipes)")
    t.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the method (lrgan: schedule=two-stage ...; cyclegan: lambda_cyc=10 ...; "
                        "`scgan-bench list trainable`)")
    t.add_argument("--hr", required=True, help="folder of HR faces (-> 64 px), or dataset:ffhq (its 20,000 "
                                               "training ids)")
    t.add_argument("--lr", required=True, help="folder of real LR faces (-> 16 px), or dataset:widerface "
                                               "(its 4,000 training crops)")
    t.add_argument("--root", action="append", default=[], metavar="NAME=DIR",
                   help="where a dataset:NAME source lives")
    t.add_argument("--out", type=Path, default=None, help="run folder (default runs/<SR method>)")
    t.add_argument("--epochs", type=int, default=None, help="default: the method's recipe (SCGAN 200, LRGAN 50, "
                                                            "CycleGAN 200)")
    t.add_argument("--batch-size", type=int, default=None, help="default: the method's recipe (SCGAN 64, LRGAN "
                                                                "32, CycleGAN 1)")
    t.add_argument("--learning-rate", type=float, default=None, help="default: the method's recipe")
    t.add_argument("--seed", type=int, default=2020, help="training seed: initialisation, data order, noise")
    t.add_argument("--width", type=float, default=1.0, help="channel-width factor (1 = the paper's model)")
    t.add_argument("--amp", default="none", choices=("none", "bf16"),
                   help="mixed precision: none (float32, default) or bf16 autocast")
    t.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convolutions with bf16)")
    t.add_argument("--speed", default=None, choices=("eager", "compiled", "graph", "compiled-graph"),
                   help="how the step executes: eager (default); compiled (torch.compile of the networks and "
                        "losses); graph (CUDA: the whole step recorded once as a CUDA graph and replayed); "
                        "compiled-graph (both). Recorded in the run: --resume keeps it")
    t.add_argument("--compile", action="store_true", help="same as --speed compiled")
    t.add_argument("--d-calls", default="fused", choices=("fused", "separate"),
                   help="a discriminator judges real and fake images in one call (fused, default: one "
                        "spectral-norm power iteration per optimiser phase) or two (separate: the released "
                        "code's two in the discriminator phase). Recorded in the run: --resume keeps it")
    t.add_argument("--log-every", type=int, default=None, metavar="N",
                   help="bring the losses to the host every N steps (default 1 on CPU, 25 on GPU: one sync per N)")
    t.add_argument("--save-every", type=int, default=1, metavar="N",
                   help="checkpoint every N epochs (default 1) and when the run stops; --resume continues from the "
                        "last checkpoint")
    t.add_argument("--background-save", action="store_true",
                   help="write checkpoints in a background thread while training goes on (same atomic files)")
    t.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda[:N]")
    t.add_argument("--max-steps", type=int, default=None, help="stop after N steps (smoke runs)")
    t.add_argument("--limit-hr", type=int, default=None, help="train on the first N HR faces only (smoke runs)")
    t.add_argument("--limit-lr", type=int, default=None, help="train on the first N real LR faces only (smoke runs)")
    t.add_argument("--lr-schedule", default=None, choices=("cosine", "restarts"),
                   help="SCGAN: cosine (default): CosineAnnealingLR(T_max=10) as released, a 20-epoch wave; "
                        "restarts: 1e-4 -> 1e-5 in every 10-epoch period")
    t.add_argument("--deterministic", action="store_true",
                   help="deterministic CUDA kernels (a resumed run then equals an uninterrupted one on GPU too; "
                        "CPU runs are deterministic anyway)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly (refused if its "
                                                         "settings differ)")
    t.add_argument("--overwrite", action="store_true", help="replace the training run already in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


def _speed(speed: str | None, compile_flag: bool) -> str:
    """``--speed`` with the older ``--compile`` folded in (compiled; with ``--speed graph``: compiled-graph)."""
    speed = speed or "eager"
    return {"eager": "compiled", "graph": "compiled-graph"}.get(speed, speed) if compile_flag else speed


def cmd_train(args: argparse.Namespace) -> int:
    from ..run.pipeline import resolve_device
    from ..training.engine import TrainConfig, run_training
    from ..training.models import trainable_for

    spec = trainable_for(args.method, args.variant)
    variant = args.variant or spec.default_variant
    if variant not in spec.variants():
        if spec.name == "scgan":
            from ..scgan.variants import VARIANTS

            VARIANTS.get(variant)  # unknown SCGAN variant: did-you-mean
        raise UsageError(f"method {spec.name} has no variant {variant!r}; its variants: {', '.join(spec.variants())}")
    method = spec.sr_method(variant)
    out = args.out or Path("runs") / method
    cfg = TrainConfig(method=spec.name, variant=variant, recipe=args.recipe, hr=args.hr, lr=args.lr, out=str(out),
                      roots=pairs(args.root, "--root"), crossings=crossings(args), lr_schedule=args.lr_schedule,
                      options=pairs(args.opt, "--opt"), deterministic=args.deterministic, overwrite=args.overwrite,
                      epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                      seed=args.seed, width=args.width, amp=args.amp, channels_last=args.channels_last,
                      speed=_speed(args.speed, args.compile), d_calls=args.d_calls,
                      device=resolve_device(args.device), max_steps=args.max_steps,
                      log_every=args.log_every, save_every=args.save_every, background_save=args.background_save,
                      limit_hr=args.limit_hr, limit_lr=args.limit_lr, progress=not args.quiet)
    run = run_training(cfg, resume=args.resume)
    sr_file = "rls.safetensors" if spec.name == "scgan" else "sr.safetensors"
    print(f"trained {spec.name} {variant}: checkpoint {run / 'checkpoints'}, SR network {run / sr_file}, "
          f"log {run / 'log.csv'}, samples {run / 'samples'}")
    print(f"score it: SCGAN_BENCH_CKPT_{method.upper().replace('-', '_')}={run} "
          f"scgan-bench run --methods {method} --datasets ...")
    return 0


COMMANDS: dict[str, Callable[..., int]] = {"train": cmd_train}
