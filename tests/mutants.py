"""One-line mutations of the SCGAN code, the pretrained baselines, the reliability guarantees and the
metrics, each of which a fast test must catch (``make mutants``).

Each mutant is applied to a copy of the package in a temporary folder (the repository is never
touched), and the fast SCGAN tests run against that copy (``PYTHONPATH`` puts it before the editable
install); a mutant that no test kills is reported and the script exits 1.

    python tests/mutants.py [--list] [--only NAME ...] [--jobs 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_scgan_released.py", "tests/test_scgan_losses.py", "tests/test_scgan_train.py",
         "tests/test_scgan.py", "tests/test_reliability.py", "tests/test_metric_references.py",
         "tests/test_metric_suite.py",
         "tests/test_tables.py::test_variant_tables_state_each_checkpoints_recipe_and_mark_identical_networks",
         "tests/test_baselines.py", "tests/test_training.py", "tests/test_own_method.py", "tests/test_run_status.py",
         "tests/test_latex.py", "tests/test_tables.py",
         "tests/test_pipeline.py::test_dlib_metrics_over_worker_processes_equal_one_process",
         "tests/test_sharded.py", "tests/test_reproduce.py", "tests/test_fid_stats.py", "tests/test_presets.py",
         "tests/test_arcface.py", "tests/test_dists.py", "tests/test_adaface.py",
         "tests/test_lmd.py", "tests/test_precision.py", "tests/test_musiq.py", "tests/test_maniqa.py",
         "tests/test_clipiqa.py", "tests/test_composite.py", "tests/test_comparability.py", "tests/test_weights.py",
         "tests/test_datasets.py", "tests/test_cli.py"]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str   # relative to the repository
    old: str    # must occur exactly once
    new: str
    why: str


MUTANTS = [
    # pretrained baselines (tests/test_baselines.py)
    Mutant("baseline-range-0-1", "baselines/adapter.py",
           'RANGES = {"[-1,1]": (lambda x: x * 2 - 1,', 'RANGES = {"[-1,1]": (lambda x: x,',
           "[0, 1] fed to the [-1, 1] networks (the spandrel descriptor trap)"),
    Mutant("bridge-bilinear", "baselines/bridge.py",
           'out = [resize_uint8(im, (size, size), "bicubic") for im in imgs]',
           'out = [resize_uint8(im, (size, size), "bilinear") for im in imgs]',
           "the default bridge upsamples bilinearly instead of bicubically"),
    Mutant("bridge-down-bilinear", "baselines/bridge.py",
           "return F.avg_pool2d(y, k) if k > 1 else y",
           'return F.interpolate(y, scale_factor=1 / k, mode="bilinear") if k > 1 else y',
           "512 -> 64 by bilinear interpolation instead of the exact area average"),
    Mutant("lrgan-skip-rectified", "baselines/lrgan_arch.py",
           "return out + (self.skip(x) if self.skip is not None else x)\n\n\ndef _up",
           "return out + (self.skip(F.relu(x)) if self.skip is not None else x)\n\n\ndef _up",
           "LRGAN blocks' skip on relu(x) (SCGAN's in-place semantics) instead of x"),
    Mutant("lrgan-bgr", "baselines/lrgan.py", "        y = net(x)\n", "        y = net(x.flip(1)).flip(1)\n",
           "LRGAN fed BGR (like SCGAN's released model) instead of RGB"),
    Mutant("gfpgan-v1-slope", "baselines/gfpganv1_arch.py",
           "return F.leaky_relu(x + bias.view(shape), 0.2) * SQRT2",
           "return F.leaky_relu(x + bias.view(shape), 0.1) * SQRT2",
           "GFPGAN v1 fused leaky ReLU with the wrong slope"),
    Mutant("gfpgan-v1-sft-full", "baselines/gfpganv1_arch.py",
           "out = torch.cat([same, sft * conditions[i - 1] + conditions[i]], dim=1)",
           "out = torch.cat([same * conditions[i - 1] + conditions[i], sft], dim=1)",
           "GFPGAN v1 SFT applied to the wrong half of the channels"),
    Mutant("gfpgan-noise-by-position", "baselines/gfpgan.py",
           "[n.to(x) for n in seeded_noise(k, shapes)]", "[n.to(x) for n in seeded_noise(f'{i:015x}', shapes)]",
           "GFPGAN noise seeded by batch position instead of by the image"),
    Mutant("rfpp-self-attention", "baselines/restoreformer_arch.py",
           "y = h_ if y is None else self.norm2(y)", "y = h_",
           "RestoreFormer++ decoder attention ignores the encoder's queries"),
    Mutant("rfpp-one-scale", "baselines/restoreformer_arch.py",
           "decoder_attn: tuple[int, ...] = (16, 32)", "decoder_attn: tuple[int, ...] = (16,)",
           "RestoreFormer++ without its 32 px cross-attention"),
    Mutant("codeformer-w-name", "baselines/codeformer.py", "return net(x, weight=w, adain=True)[0]",
           "return net(x, w=w, adain=True)[0]", "CodeFormer's fidelity passed as w= (silently ignored by spandrel)"),
    Mutant("strict-unexpected-ignored", "baselines/loading.py",
           "unexpected = got - expected - set(allow_unexpected)", "unexpected = set()",
           "unexpected keys accepted silently"),
    Mutant("family-check-off", "baselines/loading.py",
           "    families = (family,) if isinstance(family, str) else family\n",
           "    return\n", "a file of another method is not recognised"),
    Mutant("rrdb-key-check-off", "baselines/realesrgan.py",
           "    check_keys(rrdb_keys(blocks), sd, path, what)\n", "",
           "Real-ESRGAN keys not checked (spandrel drops unknown keys)"),
    Mutant("hifacegan-spade-one-plus-gamma", "baselines/hifacegan_arch.py",
           "return self.param_free_norm(x) * self.mlp_gamma(actv) + self.mlp_beta(actv)",
           "return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)",
           "HiFaceGAN SPADE as NVIDIA's 1 + gamma instead of the released gamma"),
    Mutant("hifacegan-batch-statistics", "baselines/hifacegan_arch.py",
           "return F.instance_norm(x, eps=1e-5)", "return F.batch_norm(x, None, None, training=True, eps=1e-5)",
           "HiFaceGAN normalised with batch statistics (outputs depend on batch neighbours)"),
    Mutant("pulse-geocross-half-angle", "baselines/pulse_arch.py", "dist = 2 * torch.atan2(a, b)",
           "dist = torch.atan2(a, b)", "PULSE's geodesic distance without its factor 2"),
    Mutant("pulse-one-seed", "baselines/pulse.py", "manual_seed(int(k[:15], 16) ^ SEED_SALT)",
           "manual_seed(SEED_SALT)", "PULSE: every image starts from the same latent draw"),
    Mutant("pulse-converged-inverted", "baselines/pulse.py", '"pulse_converged": bool(m <= s.eps)',
           '"pulse_converged": bool(m > s.eps)', "PULSE's convergence flag inverted"),
    Mutant("dfdnet-box-offset", "baselines/dfdnet.py", "box = np.hstack((mean - half + 1, mean + half)).astype(int)",
           "box = np.hstack((mean - half, mean + half)).astype(int)", "DFDNet part boxes without the official +1"),
    Mutant("dfdnet-input-0-1", "baselines/dfdnet.py", "y = self.net((x[i:i + 1] * 2 - 1).to(self.device), boxes)",
           "y = self.net(x[i:i + 1].to(self.device), boxes)", "DFDNet fed [0, 1] instead of [-1, 1]"),
    Mutant("method-notes-dropped", "scgan_bench/superres.py", "            if note:\n                rec[\"notes\"] = note",
           "            if False:\n                rec[\"notes\"] = note", "per-image method notes not stored"),
    Mutant("git-blob-unchecked", "scgan_bench/weights.py",
           'if kind == "first-use" and asset.git_blob:', 'if False and asset.git_blob:',
           "LRGAN's model.pkl not checked against its published git blob id"),
    Mutant("hinge-real-sign", "scgan_bench/scgan/model.py",
           "F.relu(1.0 - d(real)).mean()", "F.relu(1.0 + d(real)).mean()",
           "discriminator hinge on real images with the wrong sign"),
    Mutant("rls-pix-weight", "scgan_bench/scgan/dataflow.py",
           'TermSpec("rls_pix", "hr_gen_r", r.gamma * r.l1_weight)',
           'TermSpec("rls_pix", "hr_gen_r", r.theta * r.l1_weight)',
           "R_LS's backward pixel term weighted by theta instead of gamma"),
    Mutant("sn-skip-wrong-tensor", "scgan_bench/scgan/networks.py",
           "        return out + (self.skip(x) if self.skip is not None else x)\n\n\ndef degradation_layers",
           "        return out + (self.skip(F.relu(x)) if self.skip is not None else x)\n\n\ndef degradation_layers",
           "discriminator block skip on relu(x) instead of x"),
    Mutant("table4-rows-swapped", "scgan_bench/scgan/variants.py",
           '(3, 1): ("H2",), (3, 2): ("H1",)', '(3, 1): ("H1",), (3, 2): ("H2",)',
           "two Table 4 rows swapped"),
    Mutant("keymap-rule-deleted", "scgan_bench/scgan/networks.py",
           '        (r"^main\\.2\\.", "tail.2."),\n', "",
           "a released R_LS key-map rule deleted"),
    Mutant("pixel-target-bilinear", "scgan_bench/scgan/model.py",
           '"dhl_pix": lambda: F.avg_pool2d(hr, 4)',
           '"dhl_pix": lambda: F.interpolate(hr, scale_factor=0.25, mode="bilinear")',
           "D_HL's pixel target bilinear instead of average-pooled"),
    Mutant("identity-skip-removed", "scgan_bench/scgan/networks.py",
           "x = self.up1(x + self.group1(x))", "x = self.up1(self.group1(x))",
           "R_LS's identity skip around the 12-block group removed"),
    Mutant("align-corners-flipped", "scgan_bench/scgan/networks.py",
           'F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)',
           'F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)',
           "R_LS's bilinear up-sampling with align_corners=False"),
    Mutant("bicubic-align-corners", "scgan_bench/scgan/model.py",
           'mode="bicubic", align_corners=True)', 'mode="bicubic", align_corners=False)',
           "R_LS's pixel target with align_corners=False"),
    Mutant("crossing-scale-ignored", "scgan_bench/scgan/model.py",
           "return grad * ctx.scale, None", "return grad, None",
           "a uniform crossing passes the full gradient"),
    Mutant("crossing-route-ignored", "scgan_bench/scgan/model.py",
           "routed = [spec.route(self.recipe) * terms[n]", "routed = [terms[n]",
           "per-term crossing weights ignored"),
    Mutant("dsl-reads-wrong-image", "scgan_bench/scgan/dataflow.py",
           'ImageSpec("lr_real_2", "dsl", "hr_gen_r")', 'ImageSpec("lr_real_2", "dsl", "hr_gen")',
           "D_SL degrades I_sS instead of I_rS"),
    Mutant("zero-residual-missing", "scgan_bench/scgan/networks.py",
           "            nn.init.zeros_(last.weight)", "            pass",
           "paper init without zero-initialised residual branches"),
    Mutant("sn-not-refreshed", "scgan_bench/scgan/networks.py",
           "            for _ in range(iterations):", "            for _ in range(0):",
           "spectral-norm power iterations not re-run after re-initialisation"),
    Mutant("analysis-ignores-crossings", "scgan_bench/scgan/dataflow.py",
           "mult *= term.route(r) if img.name == term.image else 1.0", "mult *= 0.0",
           "the equivalence analysis treats every crossing as detached"),
    Mutant("analysis-ignores-sharing", "scgan_bench/scgan/dataflow.py",
           "shared = {p for s in v.share for p in SHARED_PARTS[s]} if v.has_dhl else set()", "shared = set()",
           "the equivalence analysis ignores D_SL's shared parts"),
    Mutant("every-rank-on-cuda0", "scgan_bench/training/engine.py",
           'return torch.device("cuda", local)', 'return torch.device("cuda", 0)',
           "every torchrun rank on cuda:0"),
    Mutant("resume-ignores-seed", "scgan_bench/training/engine.py",
           '"seed": c.seed, "batch_size": c.batch_size,', '"batch_size": c.batch_size,',
           "resume does not compare the seed"),
    Mutant("restarts-period", "scgan_bench/scgan/train.py",
           "CosineAnnealingWarmRestarts(opt, T_0=cfg.lr_period",
           "CosineAnnealingWarmRestarts(opt, T_0=2 * cfg.lr_period",
           "warm restarts every 20 epochs"),
    # reliability (tests/test_reliability.py)
    Mutant("no-run-lock", "scgan_bench/runlock.py",
           "fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))", "pass",
           "a second run may use a folder in use"),
    Mutant("cached-png-trusted", "scgan_bench/store.py",
           "if sha256_file(base / rel) != want:", "if False:",
           "a damaged cached PNG is trusted"),
    Mutant("links-followed", "datasets/_common.py",
           "    if follow_links():", "    if True:",
           "sources outside the dataset root are read"),
    Mutant("metric-batch-not-isolated", "scgan_bench/scoring.py",
           "        if len(ids) == 1:", "        if True:",
           "one image's metric error fails its whole batch"),
    Mutant("colliding-ids", "datasets/_common.py",
           'ids = [b if count[b.lower()] == 1 else f"{b}-{hashlib.sha256(r.encode()).hexdigest()[:8]}"',
           'ids = [b if True else f"{b}-{hashlib.sha256(r.encode()).hexdigest()[:8]}"',
           "files whose ids collide are not told apart"),
    # metrics against their references (tests/test_metric_references.py, test_metric_suite.py)
    Mutant("kid-doubled", "scgan_bench/metrics/distribution.py",
           'return None, {"": mean, "std": std, "subset_size": float(size)}',
           'return None, {"": 2 * mean, "std": std, "subset_size": float(size)}',
           "KID reported twice too large"),
    Mutant("retina-variances-swapped", "scgan_bench/networks/retinaface.py",
           "VARIANCES = (0.1, 0.2)", "VARIANCES = (0.2, 0.1)", "RetinaFace decoding variances swapped"),
    Mutant("retina-mean-rgb", "scgan_bench/networks/retinaface.py",
           "BGR_MEAN = (104.0, 117.0, 123.0)", "BGR_MEAN = (123.0, 117.0, 104.0)",
           "RetinaFace input mean in RGB order"),
    Mutant("retina-anchor-sizes", "scgan_bench/networks/retinaface.py",
           "MIN_SIZES = ((16, 32), (64, 128), (256, 512))", "MIN_SIZES = ((16, 32), (32, 64), (64, 128))",
           "RetinaFace anchor sizes"),
    Mutant("eye-indices", "scgan_bench/metrics/landmarks.py",
           "return points[36:42].mean(axis=0), points[42:48].mean(axis=0)", "return points[36], points[45]",
           "dlib68 inter-ocular distance from the outer eye corners"),
    Mutant("facenet-preprocessing", "scgan_bench/metrics/identity.py",
           "(x - 127.5) / 128.0", "x / 255.0", "FaceNet input not standardised like facenet-pytorch"),
    Mutant("dlib-threshold", "scgan_bench/metrics/identity.py",
           "DLIB_THRESHOLD = 0.6 ", "DLIB_THRESHOLD = 0.65 ", "another dlib threshold"),
    Mutant("facenet-threshold", "scgan_bench/metrics/identity.py",
           "FACENET_THRESHOLD = 1.1 ", "FACENET_THRESHOLD = 1.2 ", "another FaceNet threshold"),
    Mutant("table7-balanced", "scgan_bench/metrics/identity.py",
           '("facenet-verif", lambda f: Verification(f, FACENET_THRESHOLD, "squared-l2-unit", "genuine"),',
           '("facenet-verif", lambda f: Verification(f, FACENET_THRESHOLD, "squared-l2-unit", "balanced"),',
           "Table 7's facenet-verif as balanced accuracy"),
    Mutant("landmarks-whole-image", "scgan_bench/metrics/landmarks.py",
           "            if not len(dets):", "            if False:",
           "dlib68 landmarks without a detected face"),
    Mutant("metric-cache-ignores-weights", "scgan_bench/scoring.py",
           'values = data["values"] if data.get("fingerprint") == json.loads(json.dumps(fingerprint)) else {}',
           'values = data["values"]', "per-image metric values kept after the weights changed"),
    Mutant("feature-cache-ignores-weights", "scgan_bench/features.py",
           "loaded = {**(req.fingerprint() if req is not None else {}), **precision.tag()}",
           "loaded = {**precision.tag()}",
           "cached features kept after the extractor's weights changed"),
    # LRGAN / CycleGAN through the training engine (tests/test_training.py)
    Mutant("lrgan-l1-as-mse", "scgan_bench/training/lrgan.py",
           'PIXEL_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}', 'PIXEL_LOSSES = {"mse": F.l1_loss, "l1": F.l1_loss}',
           "LRGAN's default pixel loss is l1 instead of yoon's MSE"),
    Mutant("lrgan-h2l-target-bilinear", "scgan_bench/training/lrgan.py",
           't["h2l_pix"] = a * pix(lr_gen, F.avg_pool2d(hr, 4))',
           't["h2l_pix"] = a * pix(lr_gen, F.interpolate(hr, scale_factor=0.25, mode="bilinear"))',
           "High-to-Low pixel target by bilinear down-sampling instead of the 4x4 average"),
    Mutant("lrgan-l2h-not-detached", "scgan_bench/training/lrgan.py",
           "return lr_gen, (self.net.l2h(lr_gen.detach()) if l2h else None)",
           "return lr_gen, (self.net.l2h(lr_gen) if l2h else None)",
           "the Low-to-High losses train the High-to-Low generator too"),
    Mutant("lrgan-disc-max-pool", "scgan_bench/training/lrgan.py",
           'self.d16 = seeded(seed, "disc.16", lambda: Discriminator(16, width, pool="avg"))',
           'self.d16 = seeded(seed, "disc.16", lambda: Discriminator(16, width))',
           "LRGAN's 16 px discriminator max-pools (SCGAN's) instead of yoon's average pooling"),
    Mutant("lrgan-stage2-trains-h2l", "scgan_bench/training/lrgan.py",
           "return (True, False) if epoch <= self.stage1 else (False, True)",
           "return (True, False) if epoch <= self.stage1 else (True, True)",
           "two-stage schedule keeps training the High-to-Low GAN in stage 2"),
    Mutant("cyclegan-lsgan-fake-target", "scgan_bench/training/cyclegan.py",
           "torch.full_like(pred, 1.0 if real else 0.0)", "torch.full_like(pred, 1.0 if real else -1.0)",
           "LSGAN's fake target -1 instead of 0"),
    Mutant("cyclegan-identity-unscaled", "scgan_bench/training/cyclegan.py",
           't["idt_A"] = lc * li * F.l1_loss(f["idt_a"], real_b)', 't["idt_A"] = li * F.l1_loss(f["idt_a"], real_b)',
           "identity weight not multiplied by the cycle weight (upstream: lambda_idt x lambda_A)"),
    Mutant("cyclegan-d-not-halved", "scgan_bench/training/cyclegan.py",
           'return {"D_A": 0.5 * (lsgan(d_a(real_b), True)', 'return {"D_A": 1.0 * (lsgan(d_a(real_b), True)',
           "discriminator loss not halved"),
    Mutant("cyclegan-pool-never-swaps", "scgan_bench/training/cyclegan.py",
           "elif torch.rand((), generator=gen).item() > 0.5:", "elif torch.rand((), generator=gen).item() > 1.0:",
           "the image pool never returns an older fake"),
    Mutant("cyclegan-decay-off-by-one", "scgan_bench/training/cyclegan.py",
           "return 1.0 - max(0, epoch + 1 - self.constant) / float(self.decay + 1)",
           "return 1.0 - max(0, epoch - self.constant) / float(self.decay + 1)",
           "linear decay starts one epoch late"),
    Mutant("cyclegan-pool-not-checkpointed", "scgan_bench/training/cyclegan.py",
           'return {k: v for k, v in (("pool_a", self.pool_a.state()), ("pool_b", self.pool_b.state())) if v is not None}',
           "return {}", "the image pools are not saved: a resumed run restarts them empty"),
    Mutant("cyclegan-init-default", "scgan_bench/training/cyclegan.py",
           "return seeded(seed, name, lambda: init_normal_(make()))", "return seeded(seed, name, make)",
           "PyTorch's default initialisation instead of upstream's N(0, 0.02)"),
    Mutant("engine-extra-state-ignored", "scgan_bench/training/engine.py",
           'self.impl.load_extra_state(st.get("extra", {}))', 'self.impl.load_extra_state({})',
           "resume ignores a model's extra state"),
    # precomputed outputs (tests/test_own_method.py)
    Mutant("folder-size-unchecked", "scgan_bench/methods/folder.py",
           "            if img.shape[:2] != (h, w):", "            if False:",
           "a wrong-size output is scored (resized by nobody) instead of reported"),
    Mutant("folder-digest-names-only", "scgan_bench/methods/folder.py",
           "sha256_file(p) if p.is_file() else 'unreadable'", "'-'",
           "the fingerprint covers file names, not contents: changed outputs keep stale scores"),
    Mutant("folder-extras-silent", "scgan_bench/methods/folder.py",
           "return [p for stem, paths in self.outputs(dataset).items() if stem not in known for p in paths]",
           "return []", "files matching no image id are not reported"),
    Mutant("export-lr-unverified", "scgan_bench/export.py",
           'if sha256_bytes(data) != rec["lr_sha256"]:', "if not data:",
           "export-lr copies an LR file without checking it against its record"),
    Mutant("entry-points-ignored", "scgan_bench/registries.py",
           "for ep in entry_points(group=ENTRY_POINT_GROUP):", "for ep in []:",
           "installed packages' plugins are never loaded"),
    Mutant("ids-never-passed", "scgan_bench/superres.py",
           "        elif isinstance(method, IdAwareMethod):", "        elif False:",
           "id-aware methods are called without their image ids"),
    Mutant("extra-methods-dropped", "scgan_bench/tables/specs.py",
           "return replace(spec, columns=spec.columns + tuple((m, m) for m in extras))", "return spec",
           "table --extra-methods adds no column to Table 5"),
    Mutant("runs-replace-results", "scgan_bench/pipeline.py",
           "earlier = {} if not shard.main else previous(out)", "earlier = {}",
           "a rerun with another method drops the earlier methods' results"),
    Mutant("kept-despite-new-fingerprint", "scgan_bench/accumulate.py",
           'if m in meta["methods"] and meta["methods"][m].get("fingerprint") != pm.get("methods", {}).get(m, {}).get(',
           'if False and meta["methods"][m].get("fingerprint") != pm.get("methods", {}).get(m, {}).get(',
           "earlier cells of a method whose outputs changed are kept"),
    Mutant("kept-despite-new-preparation", "scgan_bench/accumulate.py",
           'if d in meta["datasets"] and meta["datasets"][d].get("key") != pm.get("datasets", {}).get(d, {}).get("key"):',
           'if False:', "earlier cells of a dataset prepared differently are kept"),
    Mutant("datasets-stop-at-first", "scgan_bench/pipeline.py",
           'problems.append(f"{name}: {exc}")', "raise", "only the first unreadable dataset is reported"),
    Mutant("failed-run-forgets-folder", "scgan_bench/accumulate.py",
           'meta = meta.get("last_complete") or {}', "meta = {}",
           "a run that failed early makes the next run drop the folder's earlier results"),
    Mutant("empty-dataset-completes", "scgan_bench/pipeline.py",
           "empty = [_empty_reason(p) for p in prepared if not p.records]", "empty = []",
           "a dataset with no scored image leaves the run complete with exit 0"),
    # LaTeX and substitution labels (tests/test_latex.py, tests/test_tables.py)
    Mutant("tex-underscore-raw", "scgan_bench/tables/latex.py", '"_": "\\\\_", ', "",
           "underscores reach LaTeX unescaped (a method named my_method breaks the document)"),
    Mutant("tex-double-hyphen", "scgan_bench/tables/latex.py",
           'out.append("-{}" if c == "-" and s[i + 1:i + 2] == "-" else _char(c))', "out.append(_char(c))",
           "`--table` prints as an en dash"),
    Mutant("delta-across-datasets", "scgan_bench/tables/render.py",
           'txt += (f" (paper {fmt(cell, p)}; no Δ: {no_delta[cell]})" if cell in no_delta',
           'txt += (f" (paper {fmt(cell, p)}; no Δ: {no_delta[cell]})" if False',
           "*_vs_paper prints differences between another dataset's numbers and the paper's"),
    Mutant("labels-hide-backend", "scgan_bench/tables/specs.py",
           'ms = {METRIC_FORMATS[m].label: f"{METRIC_FORMATS[m].label} ({by})"',
           'ms = {METRIC_FORMATS[m].label: f"{METRIC_FORMATS[m].label}"',
           "FID read from dlib features is labelled plain FID"),
    Mutant("rank-a-lone-value", "scgan_bench/ranking.py",
           "    if len(shown) < 2:", "    if len(shown) < 1:",
           "a table colours the only value of a line as best"),
    Mutant("rank-pseudo-methods", "scgan_bench/tables/render.py",
           "and not is_pseudo(c.method) and math.isfinite(values[c].value)}", "and math.isfinite(values[c].value)}",
           "ground-truth takes the best rank from the methods"),
    Mutant("report-pseudo-first", "scgan_bench/report.py",
           'methods = ordered_methods(list(dict.fromkeys(r["method"] for r in sub)))',
           'methods = list(dict.fromkeys(r["method"] for r in sub))',
           "the report lists ground-truth among (before) the methods"),
    Mutant("report-kid-std-unscaled", "scgan_bench/report.py",
           'txt += f" ± {std * scale:.4f}"', 'txt += f" ± {std:.4f}"',
           "the report prints KID x100 with its std in raw units"),
    # speed work must not change results (tests/test_pipeline.py, tests/test_scgan_train.py)
    Mutant("parallel-parts-reordered", "scgan_bench/parallel.py", "    for f in futures:", "    for f in reversed(futures):",
           "the workers' parts are joined out of order (values land on other images)"),
    Mutant("log-last-block-dropped", "scgan_bench/training/engine.py",
           "                    break\n            flush()\n", "                    break\n",
           "the last steps' losses, short of a full --log-every block, never reach log.csv"),
    Mutant("encoder-pools-odd-blocks", "scgan_bench/scgan/networks.py",
           "enc.append(block(cin, b[i], downsample=i % 2 == 0))",
           "enc.append(block(cin, b[i], downsample=i % 2 == 1))",
           "D_HL's encoder pools in the other blocks"),
    # sharded evaluation and the reproduction plan (tests/test_sharded.py, tests/test_reproduce.py)
    Mutant("shard-every-batch", "scgan_bench/shard.py", "if k % self.world == self.rank:", "if True:",
           "every rank takes every batch (work done twice, files written by two ranks)"),
    Mutant("shard-parts-not-merged", "scgan_bench/features.py", "    shard.from_main(absorb_parts)\n",
           "    shard.barrier()\n", "rank 0 never merges the ranks' feature parts"),
    Mutant("shard-error-only-on-rank-0", "scgan_bench/shard.py", "raise original if self.main else value",
           "raise original if self.main else RankStopped(str(value))",
           "the other ranks get another exception type than rank 0 (they would leave its code path)"),
    Mutant("plan-done-ignores-rerun-deps", "scgan_bench/reproduce.py",
           'read_state(plan.out, dep).get("finished_ts", 0) > st.get("started_ts", 0)', "False",
           "a job stays done after a job it needs ran again"),
    Mutant("plan-reference-copy-wins", "scgan_bench/reproduce.py", "if d == src.name or d not in owner:",
           "if d not in owner:", "a test set gathered from another set's reference copy"),
    Mutant("plan-slurm-no-dependency", "scgan_bench/executors.py",
           "deps = sorted({ids[d] for d in j.deps if d in ids})", "deps = []",
           "evaluation submitted without afterok on its training"),
    Mutant("plan-eval-without-deps", "scgan_bench/reproduce.py",
           'deps = sorted({f"train-{shared.get(m, m)}" for m in methods if f"train-{shared.get(m, m)}" in train_ids})',
           "deps = []",
           "evaluation jobs that do not wait for their training"),
    # FID against published statistics and presets (tests/test_fid_stats.py, tests/test_presets.py)
    Mutant("fid-stats-biased-cov", "scgan_bench/metrics/fid_stats.py",
           "return (self.ss - self.n * np.outer(mu, mu)) / (self.n - 1)",
           "return (self.ss - self.n * np.outer(mu, mu)) / self.n", "the reference covariance divided by n"),
    Mutant("preset-missing-silent", "scgan_bench/metrics/presets.py", "        if missing and say is not None:",
           "        if False:", "a preset's missing metrics left out without a word"),
    # ArcFace identity (tests/test_arcface.py)
    Mutant("arcface-stride-on-conv1", "scgan_bench/networks/iresnet.py",
           "self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)", "self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)",
           "the stage's stride on the block's first conv (torchvision's layout, not arcface_torch's)"),
    Mutant("arcface-not-normalised", "scgan_bench/metrics/arcface.py",
           "return torch.nn.functional.normalize(e, dim=1).cpu().numpy()", "return e.cpu().numpy()",
           "embeddings compared without unit length"),
    Mutant("arcface-angle-unclipped", "scgan_bench/metrics/arcface.py",
           "return {i: float(np.clip(np.dot(sr[i], hr[i]), -1.0, 1.0)) for i in sorted(sr) if i in hr}",
           "return {i: float(np.dot(sr[i], hr[i])) for i in sorted(sr) if i in hr}",
           "an identical pair's cosine rounding above 1 makes its angle NaN"),
    Mutant("arcface-template-swapped-eyes", "scgan_bench/metrics/arcface.py",
           "FFHQ_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936],",
           "FFHQ_512 = np.array([[318.90277, 240.1936], [192.98138, 239.94708],",
           "the FFHQ template's eyes swapped (a mirrored warp)"),
    # DISTS (tests/test_dists.py)
    Mutant("dists-maxpool-kept", "scgan_bench/networks/dists.py",
           "L2Pooling(CHANNELS[k - 1]) if i in (4, 9, 16, 23) else features[i]", "features[i]",
           "VGG's max-pools kept instead of DISTS' L2 pooling"),
    Mutant("dists-imagenet-std-skipped", "scgan_bench/networks/dists.py",
           "h = (x - self.mean) / self.std", "h = x - self.mean", "inputs not divided by ImageNet's std"),
    # AdaFace's LQ identity (tests/test_adaface.py)
    Mutant("adaface-fed-rgb", "scgan_bench/metrics/adaface.py", "x = align_112(images).flip(1)",
           "x = align_112(images)", "AdaFace fed RGB (it was trained on BGR)"),
    Mutant("id-lq-against-hr", "scgan_bench/scoring.py",
           'ref_imgs, ref_name = _images(data, sr.records, "lr"), data.name',
           'ref_imgs, ref_name = _images(data, sr.records, "hr"), data.name', "the LR identity check reads HR images"),
    # LMD (tests/test_lmd.py)
    Mutant("lmd-no-quarter-pixel", "scgan_bench/metrics/lmd.py",
           "pts[j] += 0.25 * np.sign(", "pts[j] += 0.0 * np.sign(", "heatmap peaks without the quarter-pixel refinement"),
    Mutant("lmd-box-shifted-down", "scgan_bench/metrics/lmd.py",
           "size / 2.0 - 0.12 * size", "size / 2.0 + 0.12 * size", "face-alignment's box centre moved the wrong way"),
    # GPU arithmetic and the batched RetinaFace pass (tests/test_precision.py, tests/test_metric_references.py)
    Mutant("tf32-always-on", "scgan_bench/precision.py",
           "torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(tf32)",
           "torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True",
           "a CUDA run in TF32 although strict float32 was asked for"),
    Mutant("tf32-untagged-features", "scgan_bench/features.py",
           "**precision.tag()}\n", "}\n",
           "features made under TF32 share the strict cache"),
    Mutant("run-outside-precision", "scgan_bench/pipeline.py",
           "fp32_precision(device, cfg.tf32):", "fp32_precision(device, True):",
           "--tf32 ignored: every CUDA run in TF32"),
    Mutant("retinaface-batch-first-image", "scgan_bench/networks/retinaface.py",
           "d = ldm[torch.arange(n, device=dev), best].view(n, 5, 2)", "d = ldm[0, best].view(n, 5, 2)",
           "every image of a batch decoded with the first image's landmark offsets"),
    # MUSIQ (tests/test_musiq.py)
    Mutant("musiq-no-weight-standardisation", "scgan_bench/networks/musiq.py",
           "w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)", "w = w",
           "the stem's convolutions without weight standardisation"),
    Mutant("musiq-scale-ids-swapped", "scgan_bench/networks/musiq.py",
           "for sid, side in enumerate(sorted(sides)):", "for sid, side in enumerate(sorted(sides, reverse=True)):",
           "the 224 and 384 scales given each other's scale embedding"),
    Mutant("musiq-inputs-0-1", "scgan_bench/networks/musiq.py",
           "multiscale_tokens(x * 2 - 1, self.patch, self.grid)", "multiscale_tokens(x, self.patch, self.grid)",
           "inputs in [0, 1] instead of [-1, 1]"),
    Mutant("musiq-padding-attended", "scgan_bench/networks/musiq.py",
           "att = logits.masked_fill(~pair, -1e3).softmax(-1)", "att = logits.softmax(-1)",
           "masked padding tokens attended to"),
    # NTIRE's identity gate (tests/test_adaface.py)
    Mutant("id-gate-strict-inequality", "scgan_bench/metrics/adaface.py",
           "failed = sum(v < threshold for v in per.values())", "failed = sum(v <= threshold for v in per.values())",
           "an image exactly at the threshold counted as failing"),
    Mutant("per-dataset-setting-not-in-key", "scgan_bench/scoring.py",
           '**({"params": params} if params else {})}', "}", "a changed threshold reuses the stored value"),
    # MANIQA (tests/test_maniqa.py)
    Mutant("maniqa-tab-no-regroup", "scgan_bench/networks/maniqa.py",
           "return (att @ self.c_v(x)).transpose(1, 2).reshape(b, c, n) + x", "return (att @ self.c_v(x)) + x",
           "the transposed-attention output without the released code's regrouping of its axes"),
    Mutant("maniqa-shift-reversed", "scgan_bench/networks/maniqa.py",
           "y = torch.roll(y, (-self.shift, -self.shift), (1, 2))", "y = torch.roll(y, (self.shift, self.shift), (1, 2))",
           "windows shifted the wrong way (the checkpoint's masks then cut the wrong tokens)"),
    Mutant("maniqa-weights-unused", "scgan_bench/networks/maniqa.py",
           "return (wt * s).sum((1, 2)) / (wt.sum((1, 2)) + 1e-8)", "return s.mean((1, 2))",
           "positions' scores averaged without their predicted weights"),
    Mutant("maniqa-imagenet-normalisation", "scgan_bench/networks/maniqa.py",
           "x = (x - 0.5) / 0.5", "x = (x - 0.45) / 0.225", "ImageNet-like normalisation instead of the checkpoint's 0.5 / 0.5"),
    # CLIP-IQA (tests/test_clipiqa.py)
    Mutant("clip-exact-gelu", "scgan_bench/networks/clip.py",
           "return x * torch.sigmoid(1.702 * x)", "return x * torch.sigmoid(1.0 * x)",
           "the text tower's QuickGELU with another constant"),
    Mutant("clip-pool-scale", "scgan_bench/networks/clip.py",
           "att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)",
           "att = torch.softmax(q @ k.transpose(-1, -2) / d, dim=-1)", "the attention pool's scale 1/d, not 1/sqrt(d)"),
    Mutant("clip-text-not-causal", "scgan_bench/networks/clip.py",
           'causal = torch.full((n, n), float("-inf"), device=tokens.device).triu(1)',
           "causal = torch.zeros((n, n), device=tokens.device)", "text tokens see the tokens after them"),
    Mutant("clip-text-first-token", "scgan_bench/networks/clip.py",
           "return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection",
           "return x[:, 0] @ self.text_projection", "the start token's state taken, not the end token's"),
    Mutant("clipiqa-negative-prompt", "scgan_bench/metrics/clipiqa.py",
           "return probs[..., 0].mean(1)", "return probs[..., 1].mean(1)", "the negative prompt's probability"),
    Mutant("clipiqa-no-normalisation", "scgan_bench/metrics/clipiqa.py",
           "feats = self.net.encode_image((x - self.mean) / self.std, positional=False)",
           "feats = self.net.encode_image(x, positional=False)", "images fed in [0, 1], not OpenAI-normalised"),
    Mutant("clip-tokens-not-lowercased", "scgan_bench/networks/clip_tokenizer.py",
           'text = re.sub(r"\\s+", " ", html.unescape(html.unescape(text))).strip().lower()',
           'text = re.sub(r"\\s+", " ", html.unescape(html.unescape(text))).strip()', "prompts tokenized with their capitals"),
    Mutant("clip-merges-reversed", "scgan_bench/networks/clip_tokenizer.py",
           "self.ranks = {m: i for i, m in enumerate(merges)}", "self.ranks = {m: -i for i, m in enumerate(merges)}",
           "the last merges applied first"),
    Mutant("torchscript-flat-names", "scgan_bench/torchscript.py",
           '_flatten(value, f"{prefix}{name}.", out)', '_flatten(value, f"{name}.", out)',
           "nested module names lose their parents"),
    Mutant("clip-settings-unchecked", "scgan_bench/metrics/clipiqa.py",
           "if k in want and int(v) != want[k]:", "if False:", "a file whose context length contradicts its tensors loads"),
    # composite metrics, NTIRE's score (tests/test_composite.py)
    Mutant("composite-parts-not-added", "scgan_bench/metrics/composite.py",
           "out += [p for p in spec.parts if p in METRICS]", "out += []",
           "a composite asked for alone runs without its parts"),
    Mutant("composite-part-status-ignored", "scgan_bench/pipeline.py",
           'if c is None or c.status != "ok" or not math.isfinite(c.mean):', "if c is None:",
           "a failed part's NaN mean enters the composite"),
    Mutant("ntire-musiq-scale", "scgan_bench/metrics/composite.py",
           'v["musiq"] / 100', 'v["musiq"] / 10', "MUSIQ divided by 10, not 100"),
    Mutant("ntire-niqe-unclipped", "scgan_bench/metrics/composite.py",
           'max(0.0, (10 - v["niqe"]) / 10)', '(10 - v["niqe"]) / 10', "a NIQE above 10 subtracts from the score"),
    # issue 26: comparability, ranks on printed values, honest outputs, shared trainings, Slurm checks
    Mutant("ranks-on-raw-values", "scgan_bench/ranking.py",
           "shown = {k: as_printed(v, decimals) for k, v in values.items() if math.isfinite(v)}",
           "shown = {k: v for k, v in values.items() if math.isfinite(v)}",
           "values that print alike get different ranks (a difference below the printed precision decides)"),
    Mutant("unofficial-sha-accepted", "scgan_bench/weights.py",
           "        if a.sha256 and digest != a.sha256:", "        if False:",
           "a pinned file other than the official release is not said to be non-official"),
    Mutant("partial-set-unsaid", "scgan_bench/comparable.py",
           "    if full is None or got is None or got >= full:", "    if True:",
           "a run over part of a test set (--limit, unreadable images) is not said to be partial"),
    Mutant("cell-n-partial-unsaid", "scgan_bench/comparable.py",
           "    elif n is not None and full is not None and 0 < n < full:", "    elif False:",
           "a cell scored on fewer images than its set keeps its difference against the paper"),
    Mutant("delta-despite-caveat", "scgan_bench/tables/render.py",
           '            no_delta[cell] = "; ".join(([no_delta[cell]] if cell in no_delta else []) + whys)',
           "            del whys",
           "a value that is not comparable still prints a difference against the paper"),
    Mutant("sr-range-unchecked", "scgan_bench/superres.py",
           "        elif a < -RANGE_SLACK or b > 1 + RANGE_SLACK:", "        elif False:",
           "an SR output in 0-255 is silently clamped into a white picture"),
    Mutant("fingerprint-unchecked", "scgan_bench/pipeline.py",
           "    if not isinstance(fp, Mapping):", "    if False:",
           "a plug-in whose fingerprint is not a dict is not refused with its name"),
    Mutant("equal-variants-trained-twice", "scgan_bench/reproduce.py",
           "    shared = _shared_checkpoints(trained) if share_equal else {}", "    shared = {}",
           "reproduce trains every variant of a group that trains one network"),
    Mutant("gpus-on-cpu-partition", "scgan_bench/executors.py", "    if want > gpus:", "    if False:",
           "GPUs asked of a GPU-less partition are submitted (sbatch's raw 'Invalid generic resource')"),
    Mutant("cancelled-shown-pending", "scgan_bench/reproduce.py",
           '            elif status in ("pending", "running") and queue in ENDED:', "            elif False:",
           "--status says pending for a job cancelled in Slurm"),
    Mutant("bars-grey-for-4th", "scgan_bench/figures.py",
           "RANK_COLOURS.get(rank_of.get(n, 0), OTHER_COLOUR)", "RANK_COLOURS.get(rank_of.get(n, 0), PSEUDO_COLOUR)",
           "a real method ranked 4th is drawn in the pseudo-methods' grey"),
    Mutant("weights-one-folder-not-searched", "scgan_bench/weights.py",
           'for cache in dict.fromkeys(("scgan-bench",) + self.caches + ("pyiqa",)):', "for cache in self.caches:",
           "a file copied into $SCGAN_BENCH_HOME/weights (or pyiqa's cache) is not found"),
    Mutant("table7-facenet-rule-for-dlib", "scgan_bench/tables/render.py",
           '            src = self.sources.get("facenet-verif", "facenet-verif")', '            src = "facenet-verif"',
           "Table 7 read from dlib quotes FaceNet's threshold"),
]


def check_applies(m: Mutant, root: Path = REPO) -> None:
    text = (root / m.path).read_text()
    n = text.count(m.old)
    if n != 1:
        raise ValueError(f"mutant {m.name}: its text occurs {n} times in {m.path} (must be once)")


def make_copy(dst: Path) -> None:
    shutil.copytree(REPO / "scgan_bench", dst / "scgan_bench", ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("datasets", "baselines"):
        shutil.copytree(REPO / sub, dst / "scgan_bench" / sub, ignore=shutil.ignore_patterns("__pycache__"))


# the tests most likely to catch a mutation of a file run first (-x stops at the first failure)
FIRST = (("scgan_bench/precision.py", ("tests/test_precision.py",)),
         ("scgan_bench/ranking.py", ("tests/test_comparability.py",)),
         ("scgan_bench/comparable.py", ("tests/test_comparability.py", "tests/test_tables.py")),
         ("scgan_bench/figures.py", ("tests/test_comparability.py",)),
         ("scgan_bench/tables/render.py", ("tests/test_comparability.py",)),
         ("scgan_bench/weights.py", ("tests/test_weights.py",)),
         ("scgan_bench/networks/musiq.py", ("tests/test_musiq.py",)),
         ("scgan_bench/metrics/musiq.py", ("tests/test_musiq.py",)),
         ("scgan_bench/networks/maniqa.py", ("tests/test_maniqa.py",)),
         ("scgan_bench/metrics/maniqa.py", ("tests/test_maniqa.py",)),
         ("scgan_bench/networks/clip", ("tests/test_clipiqa.py",)),
         ("scgan_bench/metrics/clipiqa.py", ("tests/test_clipiqa.py",)),
         ("scgan_bench/torchscript.py", ("tests/test_clipiqa.py",)),
         ("scgan_bench/metrics/composite.py", ("tests/test_composite.py",)),
         ("scgan_bench/metrics/fid_stats.py", ("tests/test_fid_stats.py",)),
         ("scgan_bench/metrics/arcface.py", ("tests/test_arcface.py",)),
         ("scgan_bench/networks/iresnet.py", ("tests/test_arcface.py",)),
         ("scgan_bench/networks/dists.py", ("tests/test_dists.py",)),
         ("scgan_bench/metrics/dists.py", ("tests/test_dists.py",)),
         ("scgan_bench/metrics/adaface.py", ("tests/test_adaface.py",)),
         ("scgan_bench/metrics/lmd.py", ("tests/test_lmd.py",)),
         ("scgan_bench/networks/fan.py", ("tests/test_lmd.py",)),
         ("scgan_bench/metrics/presets.py", ("tests/test_presets.py",)),
         ("scgan_bench/metrics/", ("tests/test_metric_references.py", "tests/test_metric_suite.py")),
         ("scgan_bench/features.py", ("tests/test_precision.py", "tests/test_sharded.py", "tests/test_metric_references.py")),
         ("scgan_bench/shard.py", ("tests/test_sharded.py",)),
         ("scgan_bench/reproduce.py", ("tests/test_reproduce.py",)),
         ("scgan_bench/executors.py", ("tests/test_reproduce.py",)),
         ("scgan_bench/networks/", ("tests/test_metric_references.py",)),
         ("scgan_bench/scoring.py", ("tests/test_adaface.py", "tests/test_metric_references.py",
                                     "tests/test_reliability.py")),
         ("scgan_bench/runlock.py", ("tests/test_reliability.py",)),
         ("scgan_bench/store.py", ("tests/test_reliability.py",)),
         ("datasets/", ("tests/test_reliability.py",)),
         ("baselines/", ("tests/test_baselines.py",)),
         ("scgan_bench/weights.py", ("tests/test_baselines.py", "tests/test_weights.py")),
         ("scgan_bench/superres.py", ("tests/test_own_method.py", "tests/test_baselines.py")),
         ("scgan_bench/training/", ("tests/test_training.py",)),
         ("scgan_bench/methods/folder.py", ("tests/test_own_method.py",)),
         ("scgan_bench/export.py", ("tests/test_own_method.py",)),
         ("scgan_bench/registries.py", ("tests/test_own_method.py",)),
         ("scgan_bench/tables/specs.py", ("tests/test_tables.py", "tests/test_latex.py", "tests/test_own_method.py")),
         ("scgan_bench/tables/", ("tests/test_latex.py", "tests/test_tables.py")),
         ("scgan_bench/report.py", ("tests/test_tables.py",)),
         ("scgan_bench/parallel.py", ("tests/test_pipeline.py::test_dlib_metrics_over_worker_processes_equal_one_process",)),
         ("scgan_bench/accumulate.py", ("tests/test_run_status.py", "tests/test_own_method.py")),
         ("scgan_bench/pipeline.py", ("tests/test_composite.py", "tests/test_run_status.py", "tests/test_own_method.py", "tests/test_precision.py")))


def ordered_tests(path: str | None) -> list[str]:
    first = [t for prefix, tests in FIRST if path and path.startswith(prefix) for t in tests]
    return list(dict.fromkeys([*first, *TESTS]))


def run_tests(copy: Path, path: str | None = None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    # run from the copy: `python -m` puts the working directory first on sys.path
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider",
           "-c", str(REPO / "setup.cfg"), "--rootdir", str(REPO), *[str(REPO / t) for t in ordered_tests(path)]]
    p = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("FAILED") or ln.startswith("ERROR")]
    return p.returncode, (lines[0] if lines else p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "")


def run_mutant(m: Mutant) -> tuple[Mutant, bool, str, float]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{m.name}-") as tmp:
        copy = Path(tmp)
        make_copy(copy)
        # scgan_bench/... is laid out the same in the copy; datasets/ and baselines/ sit inside it
        target = copy / ("scgan_bench/" + m.path if m.path.startswith(("datasets/", "baselines/")) else m.path)
        target.write_text(target.read_text().replace(m.old, m.new, 1))
        probe = subprocess.run([sys.executable, "-c", "import scgan_bench; print(scgan_bench.__file__)"],
                               env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True,
                               cwd=copy)
        if not probe.stdout.strip().startswith(str(copy)):
            raise RuntimeError(f"the mutated copy is not the one imported: {probe.stdout} {probe.stderr}")
        rc, detail = run_tests(copy, m.path)
    return m, rc != 0, detail, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", nargs="*", default=None, help="run only these mutants")
    ap.add_argument("--jobs", type=int, default=2, help="mutants tested in parallel")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    for m in chosen:
        check_applies(m)
    if args.list:
        for m in chosen:
            print(f"{m.name:28} {m.path}: {m.why}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutant-none-") as tmp:
        make_copy(Path(tmp))
        rc, detail = run_tests(Path(tmp))
        if rc != 0:
            print(f"the unmutated copy fails the fast tests ({detail}): fix that first")
            return 2
    survivors = 0
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for m, killed, detail, secs in pool.map(run_mutant, chosen):
            survivors += not killed
            print(f"{'killed ' if killed else 'SURVIVED'} {m.name:28} {secs:5.0f} s  {m.why}"
                  + (f"\n         by {detail}" if killed else ""), flush=True)
    print(f"{len(chosen) - survivors} of {len(chosen)} mutants killed by the fast tests")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
