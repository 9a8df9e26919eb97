"""The margins of the two-process training tests (issue 26): a model trained 3 steps in one process and in
two gloo ranks, and how many of its SR network's weights differ by more than 1e-5, lr / 2 and lr.

    python tests/ddp_margin.py scgan|cyclegan [TAG]
    ATEN_CPU_CAPABILITY=default python tests/ddp_margin.py scgan default      # and avx2, and unset (native)

``test_two_process_gloo_equals_one_process`` (SCGAN) and ``test_two_gloo_processes_equal_one[cyclegan]``
assert the share above lr / 2. Run this under each ISA, and with a deliberately broken step (each rank
querying its own image pool; gradients no longer averaged after the first step), to see the noise floor
and the bug level that the tests' limit sits between; the numbers are quoted beside the asserts.
"""
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sb_testdata import (ddp_model_worker, ddp_train_worker, dp_steps, model_steps, spawn_ranks,  # noqa: E402
                         unpaired_faces)


def shares(single: dict, ddp: dict) -> dict:
    w1 = torch.cat([w.flatten() for w in single["weights"].values()])
    w2 = torch.cat([ddp["weights"][k].flatten() for k in single["weights"]])
    d = (w1 - w2).abs()
    return {"share_above_1e-5": float((d > 1e-5).float().mean()), "share_above_5e-5": float((d > 5e-5).float().mean()),
            "share_above_1e-4": float((d > 1e-4).float().mean()), "max": float(d.max())}


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "scgan"
    tag = sys.argv[2] if len(sys.argv) > 2 else "run"
    faces = unpaired_faces(16)
    tmp = Path(tempfile.mkdtemp())
    torch.set_num_threads(1)
    if model == "scgan":   # as tests/test_scgan.py::test_two_process_gloo_equals_one_process
        from scgan_bench.scgan.train import Trainer, TrainConfig

        single = dp_steps(Trainer(TrainConfig(variant="scgan", width=0.125, batch_size=8, epochs=10, seed=3,
                                              out=str(tmp / "s"), progress=False), *faces))
        ddp = spawn_ranks(ddp_train_worker, 29570, tmp / "d", *faces)
    else:                  # as tests/test_training.py::test_two_gloo_processes_equal_one[cyclegan]
        from scgan_bench.training.engine import Engine, TrainConfig

        cfg = dict(method="cyclegan", width=0.125, epochs=10, seed=3, learning_rate=1e-4, batch_size=4,
                   options={"pool_size": 2})
        single = model_steps(Engine(TrainConfig(out=str(tmp / "s"), progress=False, **cfg), *faces), "g_a")
        (ddp,) = spawn_ranks(ddp_model_worker, 29650, tmp / "d", [(cfg, "g_a")], *faces)
    print(model, tag, json.dumps(shares(single, ddp)))


if __name__ == "__main__":
    main()
