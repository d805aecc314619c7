"""Paper-size run: the `paper` preset end to end (data, stage 0, stage 1, stage 2, evaluation) on SynthHeads at the
preset's input size (256 px), with ONLY the iteration counts cut. It measures speed and memory, not accuracy.

    python benchmarks/paper_size_run.py                       # 1,000 train / 200 test images, 200 + 2 x 100 + 300 iterations
    python benchmarks/paper_size_run.py --device cuda         # the same on a GPU
    python benchmarks/paper_size_run.py --quick               # smoke run: a few iterations of each, a dozen images

Mind the size: one paper training step is ~1.7 TFLOP in stage 1 (16 pairs = 32 images at 256 px) and ~3.2 TFLOP in
stage 2 (32 x 2 images). On this project's 2-core CPU (one other job sharing it) a step took 32 s and 50 s, SuperPoint
1.3 s per image and a relabelling pass 0.35 s per image, so the default run takes about 9 hours there; it is meant for
a GPU. The run in the findings page (--n-train 300 --n-test 60 --warmup 4 --rounds 2 --round-iters 2
--stage2-iters 4) took 27 minutes and 5.1 GB; --quick ~15 minutes; seconds with `--preset test` (the check in
tests/test_benchmarks.py).

What is cut (read from the preset, scaled, never hard-coded): stage 1 `warmup_iters`, `round_iters`, `rounds` (and the
cosine lr's `lr_step`, by round_iters' ratio); stage 2 `iters`, `merge_warmup`, the merge interval (`merge_every`, or
`merge_every_epochs` turned into iterations of the full schedule on --n-full images) and `lr_milestones`, all by
stage-2 iterations' ratio. Everything else is whatever the preset holds: input size, network, batch sizes, gradient
accumulation, initializer and its arguments, clusters, losses, evaluation protocol.

SuperPoint's pretrained weights cannot be downloaded here: the script writes RANDOMLY initialised weights in the public
superpoint_v1.pth format to a temporary file, with the detector's last layer scaled (--sp-logit-scale) so that a random
network fires at all (unscaled, every cell sits near 1/65 and a 0.1 threshold keeps nothing). Keypoint positions are
then meaningless, so every NME / NMI the run reports is meaningless too; the keypoint COUNT, which sets the cost of
stage 1's losses and of clustering, is reported.

Reported: wall time and peak memory (RSS high-water mark per phase, `resource.getrusage` maxrss overall,
`torch.cuda.max_memory_allocated` on a GPU) for data, stage 0, each stage-1 phase's training and relabelling (network
pass and k-means apart), stage 2's training and merge passes, evaluation; FLOPs of one real training step of stage 1
and stage 2 (`torch.utils.flop_counter.FlopCounterMode`, forward + backward, counted on the first step of each) and of
one inference forward per image (relabelling, merge passes, SuperPoint); measured step and iteration times; and the
PROJECTED time of the full paper schedule (the uncut preset on --n-full training images) two ways: from FLOPs at an
assumed sustained GPU rate (--gpu-tflops), and from the iteration / per-image times measured in this run on this
device. Figures go to <out>/paper_size.json (default benchmarks/out/paper_size/, git-ignored) and a table to stdout.
"""
from __future__ import annotations

import argparse, copy, math, os, platform, re, resource, shutil, statistics, sys, tempfile, time, warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unsupervised_landmarks import pipeline, stage1, stage2            # noqa: E402
from unsupervised_landmarks.pipeline import experiment_config          # noqa: E402

# H100 SXM5 (NVIDIA datasheet): dense TF32 tensor-core peak 494.7 TFLOPS (989.4 with sparsity), plain FP32 66.9.
# PyTorch runs cuDNN convolutions in TF32 by default (torch.backends.cudnn.allow_tf32 = True), and these networks are
# almost all convolutions; GroupNorm, ReLU, the losses and the augmentation are memory-bound and small batches leave
# the tensor cores underfed, so we assume ~20% of the dense TF32 peak is sustained. An ASSUMPTION, not a measurement:
# run with --device cuda on the GPU to get the measured-time projection instead.
H100_TF32_DENSE_TFLOPS = 494.7
DEFAULT_GPU_TFLOPS = 100.0
GPU_TFLOPS_BASIS = (f"assumed sustained rate: ~20% of an H100 SXM's dense TF32 tensor-core peak ({H100_TF32_DENSE_TFLOPS} "
                    "TFLOPS; PyTorch runs cuDNN convolutions in TF32 by default), ~1.5x its plain-FP32 peak (66.9 TFLOPS)")
DEFAULT_N_FULL = 160_000     # ~ CelebA's training split (162,770 images), the paper's largest face training set
SCHEDULE_FIELDS = {"stage1": ("warmup_iters", "round_iters", "rounds", "lr_step"),
                   "stage2": ("iters", "merge_warmup", "merge_every", "merge_every_epochs", "lr_milestones")}


# ---------------------------------------------------------------------------------------------------------- schedule
def merge_interval_iters(s2, n_images: int) -> int:
    "Iterations between stage-2 merge steps: `merge_every`, or `merge_every_epochs` passes over n_images at batch*accum."
    epochs = getattr(s2, "merge_every_epochs", None)
    if epochs is None: return int(s2.merge_every)
    return max(1, round(epochs * n_images / (s2.batch * getattr(s2, "accum", 1))))

def merge_iters(iters: int, warmup: int, every: int) -> list:
    "The iterations before which a merge step runs (as stage2.merge_due: warmup <= i < iters, every `every`, i > 0)."
    return [i for i in range(warmup, iters, every) if i > 0] if every > 0 else []

def schedule(cfg, n_images: int) -> dict:
    "The iteration counts of an experiment config, with the stage-2 merge steps resolved on `n_images` training images."
    s1, s2 = cfg.stage1, cfg.stage2
    every = merge_interval_iters(s2, n_images)
    return {"stage1_warmup_iters": s1.warmup_iters, "stage1_round_iters": s1.round_iters, "stage1_rounds": s1.rounds,
            "stage1_iters": s1.warmup_iters + (s1.rounds - 1) * s1.round_iters, "relabel_passes": s1.rounds,
            "stage1_pairs_per_step": s1.batch, "stage1_lr_step": getattr(s1, "lr_step", None),
            "stage2_iters": s2.iters, "stage2_batch": s2.batch, "stage2_accum": getattr(s2, "accum", 1),
            "stage2_effective_batch": s2.batch * getattr(s2, "accum", 1),
            "stage2_lr_milestones": list(getattr(s2, "lr_milestones", ()) or ()),
            "stage2_merge_warmup": s2.merge_warmup, "stage2_merge_every_iters": every,
            "stage2_merge_every_epochs": getattr(s2, "merge_every_epochs", None),
            "stage2_merge_passes": len(merge_iters(s2.iters, s2.merge_warmup, every)), "n_train": n_images}

def cut_overrides(full, warmup: int, rounds: int, round_iters: int, iters2: int, n_full: int) -> tuple[dict, list]:
    """`experiment_config` overrides that cut the full preset `full` to `warmup` + `rounds` x `round_iters` stage-1
    iterations and `iters2` stage-2 iterations, scaling the other iteration-count fields; and the fields not found."""
    s1, s2, missing = full.stage1, full.stage2, []
    o1 = {"warmup_iters": warmup, "round_iters": round_iters, "rounds": rounds + 1}
    if getattr(s1, "lr_step", None): o1["lr_step"] = max(1, round(s1.lr_step * round_iters / s1.round_iters))
    elif not hasattr(s1, "lr_step"): missing.append("stage1.lr_step")
    f = iters2 / s2.iters
    o2 = {"iters": iters2, "merge_warmup": round(s2.merge_warmup * f),
          "merge_every": max(1, round(merge_interval_iters(s2, n_full) * f))}
    if hasattr(s2, "merge_every_epochs"): o2["merge_every_epochs"] = None     # the interval is now in iterations
    else: missing.append("stage2.merge_every_epochs")
    if hasattr(s2, "lr_milestones"): o2["lr_milestones"] = tuple(round(m * f) for m in s2.lr_milestones)
    else: missing.append("stage2.lr_milestones")
    if not hasattr(s2, "accum"): missing.append("stage2.accum")
    return {"stage1": o1, "stage2": o2}, missing


# ------------------------------------------------------------------------------------------------------------- probes
def _hwm_kib() -> int | None:
    try: return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except (OSError, AttributeError): return None

def _reset_hwm() -> bool:
    try: Path("/proc/self/clear_refs").write_text("5"); return True      # Linux >= 4.0: resets VmHWM to the current RSS
    except OSError: return False

class Probe:
    """Times the library's stage functions by wrapping them (restored on exit); each phase's peak RSS (VmHWM, reset on
    entry) and peak CUDA allocation; FLOPs of the first call of each step function."""
    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.phases, self.steps, self.flops, self.missing, self._patches, self._stack = [], {}, {}, [], [], []
        self.per_phase_rss = _reset_hwm()

    def sync(self):
        if self.cuda: torch.cuda.synchronize()

    def _peaks(self):
        rss = _hwm_kib() if self.per_phase_rss else None
        return (rss / 1024 if rss else None), (torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None)

    def _reset(self):
        if self.per_phase_rss: _reset_hwm()
        if self.cuda: torch.cuda.reset_peak_memory_stats()

    def _fold(self, frame, peaks):
        for k, v in zip(("peak_rss_mib", "peak_cuda_mib"), peaks):
            if v is not None: frame[k] = max(frame[k] or 0, v)

    def patch(self, module, name: str, make):
        orig = getattr(module, name, None)
        if orig is None: self.missing.append(f"{module.__name__.split('.')[-1]}.{name}"); return
        setattr(module, name, make(orig)); self._patches.append((module, name, orig))

    def restore(self):
        for module, name, orig in reversed(self._patches): setattr(module, name, orig)
        self._patches.clear()

    def phase(self, label, info=None):
        "Wrapper factory: time each call as a phase named label(*args) (a str or a function of the call's arguments)."
        def make(fn):
            def wrapped(*a, **kw):
                name = label(*a, **kw) if callable(label) else label
                extra = info(*a, **kw) if info else {}
                self.sync()
                if self._stack: self._fold(self._stack[-1], self._peaks())
                self._reset()
                frame = {"phase": name, "depth": len(self._stack), "peak_rss_mib": None, "peak_cuda_mib": None, **extra}
                self._stack.append(frame); self.phases.append(frame)
                t0 = time.perf_counter()
                try: return fn(*a, **kw)
                finally:
                    self.sync()
                    frame["seconds"] = time.perf_counter() - t0
                    self._fold(frame, self._peaks()); self._stack.pop()
                    if self._stack: self._fold(self._stack[-1], (frame["peak_rss_mib"], frame["peak_cuda_mib"]))
            return wrapped
        return make

    def step(self, key: str):
        "Wrapper factory: time every call (synchronised); count the FLOPs of the first one (not timed: counting is slow)."
        def make(fn):
            def wrapped(*a, **kw):
                times = self.steps.setdefault(key, [])
                self.sync()
                if key not in self.flops:
                    with FlopCounterMode(display=False) as fc:
                        out = fn(*a, **kw)
                    self.sync(); self.flops[key] = int(fc.get_total_flops())
                    return out
                t0 = time.perf_counter()
                out = fn(*a, **kw)
                self.sync(); times.append(time.perf_counter() - t0)
                return out
            return wrapped
        return make


def install_probes(p: Probe, state: dict) -> None:
    "Wrap the functions run_experiment calls (by module-global name), so whatever it does in between is timed too."
    p.patch(pipeline, "prepare_data", p.phase("data (render + crop)"))
    p.patch(pipeline, "run_stage0", p.phase("stage 0 (keypoints + k-means)"))
    p.patch(pipeline, "run_stage1", p.phase("stage 1"))
    p.patch(pipeline, "run_stage2", lambda fn: p.phase("stage 2")(stage2_min_images_guard(fn, state)))
    p.patch(pipeline, "evaluate_run", p.phase("evaluation"))

    def phase_name(st, *a, **kw):
        return "warm-up training" if st.phase == 1 else f"round {st.phase} training"
    def phase_info(st, data, cfg, *a, **kw):
        return {"iters": (cfg.warmup_iters if st.phase == 1 else cfg.round_iters) - st.it, "stage1_phase": st.phase}
    p.patch(stage1, "train_phase", p.phase(phase_name, phase_info))
    count = iter(range(1, 10**6))
    p.patch(stage1, "relabel", p.phase(lambda *a, **kw: f"relabel {next(count)}",
                                       lambda net, images, *a, **kw: {"images": len(images)}))
    p.patch(stage1, "detect_merge_describe", p.phase("network pass + merge",
                                                     lambda net, images, *a, **kw: {"images": len(images)}))
    p.patch(stage1, "recluster", p.phase("k-means + assignment"))
    p.patch(stage1, "train_step", p.step("stage1"))
    p.patch(stage2, "detector_step", p.step("stage2"))
    p.patch(stage2, "merge_step", p.phase("merge pass", lambda st, images, *a, **kw: {"images": len(images)}))
    p.patch(stage2, "finish_stage2", p.phase("finish (visibility, save)"))


def stage2_min_images_guard(run_stage2, state: dict):
    """Stage 2's `min_images` is an absolute image count (paper: more than 500 of CelebA's ~160k images). When no
    cluster reaches it on this run's few images, fall back to the library's default rule (0: 1% of the images) so
    that stage 2 and the evaluation run at all; recorded in the output."""
    def wrapped(images, labels, stage1_net, cfg, *a, **kw):
        mi = getattr(cfg, "min_images", None)
        if mi and len(stage2.active_clusters(labels, mi)) == 0:
            state["min_images_fallback"] = {"preset": mi, "used": 0,
                                            "why": f"no cluster is labelled in {mi} of these {len(images)} images"}
            cfg = copy.deepcopy(cfg); cfg.min_images = 0
        return run_stage2(images, labels, stage1_net, cfg, *a, **kw)
    return wrapped


# ----------------------------------------------------------------------------------------------------------- helpers
def random_superpoint_weights(path: Path, logit_scale: float, seed: int = 0) -> Path:
    "Random SuperPoint weights in the superpoint_v1.pth format; the detector's last layer x logit_scale, bias 0."
    from unsupervised_landmarks.keypoints import SuperPointNet
    torch.manual_seed(seed)
    net = SuperPointNet()
    with torch.no_grad():
        net.convPb.weight.mul_(logit_scale); net.convPb.bias.zero_()
    torch.save(net.state_dict(), path)
    return path

def forward_flops(net, images: np.ndarray, device) -> int:
    "FLOPs of one inference forward of `net` on one image (the relabelling / merge-pass network)."
    x = stage1.images_to_tensor(images[:1], device)
    was = net.training; net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc: net(x)
    net.train(was)
    return int(fc.get_total_flops())

def superpoint_flops(cfg, images: np.ndarray, boxes: np.ndarray) -> int:
    "FLOPs of the stage-0 initializer on one image (every scale's forward), measured on one training crop."
    init = pipeline.make_initializer(cfg)
    with FlopCounterMode(display=False) as fc: init.detect_batch([images[0]], [boxes[0]])
    return int(fc.get_total_flops())

def device_name(device: str) -> str:
    if device.startswith("cuda"): return torch.cuda.get_device_name(torch.device(device))
    try: cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError): cpu = platform.processor() or "cpu"
    return f"{cpu} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads)"

def fmt_s(s) -> str:
    if s is None or (isinstance(s, float) and not math.isfinite(s)): return "-"
    if s < 120: return f"{s:.1f} s"
    if s < 2 * 3600: return f"{s / 60:.1f} min"
    if s < 3 * 86400: return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"

# -------------------------------------------------------------------------------------------------------- projection
def measured_figures(p: Probe, cut: dict, n_train: int) -> dict:
    "Per-iteration / per-image times of this run from the probes."
    ph = p.phases
    tr = [x for x in ph if x.get("stage1_phase")]
    it1, t1 = sum(x["iters"] for x in tr), sum(x["seconds"] for x in tr)
    relab = [x for x in ph if x["phase"].startswith("relabel ")]
    net_pass = [x for x in ph if x["phase"] == "network pass + merge"]
    kmeans = [x for x in ph if x["phase"] == "k-means + assignment"]
    merges = [x for x in ph if x["phase"] == "merge pass"]
    s2 = next((x for x in ph if x["phase"] == "stage 2"), None)
    fin = sum(x["seconds"] for x in ph if x["phase"].startswith("finish"))
    t2 = s2["seconds"] - sum(x["seconds"] for x in merges) - fin if s2 else None
    s0 = next((x for x in ph if x["phase"].startswith("stage 0")), None)
    med = lambda v: statistics.median(v) if v else None
    per = lambda xs: (sum(x["seconds"] for x in xs) / sum(x["images"] for x in xs)) if xs else None
    return {"stage0_s_per_image": s0["seconds"] / n_train if s0 else None,
            "stage1_iters": it1, "stage1_train_s": t1, "stage1_s_per_iter": t1 / it1 if it1 else None,
            "stage1_step_s_median": med(p.steps.get("stage1", [])), "stage1_steps_timed": len(p.steps.get("stage1", [])),
            "relabel_passes": len(relab), "relabel_s_per_image": per(relab),
            "relabel_network_s_per_image": per(net_pass),
            "relabel_kmeans_s_per_pass": (sum(x["seconds"] for x in kmeans) / len(kmeans)) if kmeans else None,
            "stage2_iters": cut["stage2_iters"], "stage2_train_s": t2,
            "stage2_s_per_iter": t2 / cut["stage2_iters"] if t2 is not None else None,
            "stage2_step_s_median": med(p.steps.get("stage2", [])), "stage2_steps_timed": len(p.steps.get("stage2", [])),
            "merge_passes": len(merges), "merge_s_per_image": per(merges)}

def project(full: dict, m: dict, fl: dict, gpu_tflops: float, n_full: int) -> dict:
    "Projected time of the full schedule: from FLOPs at `gpu_tflops`, and from this run's measured times."
    rate = gpu_tflops * 1e12
    g = lambda f, n: f * n / rate if f else None
    gpu = {"stage 0 (SuperPoint network only)": g(fl.get("superpoint_per_image"), n_full),
           "stage 1 training": g(fl.get("stage1_step"), full["stage1_iters"]),
           "stage 1 relabelling (network only)": g(fl.get("stage1_forward_per_image"), full["relabel_passes"] * n_full),
           "stage 2 training": g(fl.get("stage2_step"), full["stage2_iters"]),
           "stage 2 merge passes (network only)": g(fl.get("stage2_forward_per_image"), full["stage2_merge_passes"] * n_full)}
    h = lambda t, n: t * n if t is not None else None
    meas = {"stage 0": h(m["stage0_s_per_image"], n_full),
            "stage 1 training": h(m["stage1_s_per_iter"], full["stage1_iters"]),
            "stage 1 relabelling": h(m["relabel_s_per_image"], full["relabel_passes"] * n_full),
            "stage 2 training": h(m["stage2_s_per_iter"], full["stage2_iters"]),
            "stage 2 merge passes": h(m["merge_s_per_image"], full["stage2_merge_passes"] * n_full)}
    tot = lambda d: sum(v for v in d.values() if v is not None)
    return {"gpu_from_flops": {"seconds": gpu, "total_s": tot(gpu), "gpu_tflops": gpu_tflops,
                               "not_included": "network FLOPs only (not included: k-means, NMS, data loading and augmentation, "
                                               "evaluation)"},
            "from_measured_times": {"seconds": meas, "total_s": tot(meas),
                                    "how": "this run's seconds per iteration x full iterations; seconds per image x "
                                           "full passes x n_full images (k-means scaled linearly: it fits on at most "
                                           "kmeans_sample descriptors, so its share is overestimated); evaluation "
                                           "not included"}}


# ------------------------------------------------------------------------------------------------------------- report
def table(rows, headers) -> str:
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(headers), line(["-" * x for x in w]), *map(line, rows)])

def report(out: dict) -> str:
    s, m, fl, pr = out["settings"], out["measured"], out["flops"], out["projection"]
    mib = lambda v: f"{v:,.0f}" if v is not None else "-"
    L = [f"paper-size run: preset {s['preset']!r}, {s['dataset']} at {s['in_size']} px, {s['n_train']} train / "
         f"{s['n_test']} test images, device {s['device']} ({s['device_name']}), torch {s['torch']}",
         "NOTE: " + out["note"], ""]
    sc, fu = out["schedule"]["cut"], out["schedule"]["full"]
    L.append(table([[k, sc[k], fu[k]] for k in sc if k != "n_train"] + [["n_train", sc["n_train"], fu["n_train"]]],
                   ["schedule", "this run", "full paper schedule"]))
    if out["schedule"]["missing_fields"]: L.append("fields not in this preset (left as they are): "
                                                   + ", ".join(out["schedule"]["missing_fields"]))
    for k, v in out["adjustments"].items(): L.append(f"adjusted: {k}: {v}")
    rows, ph = [], out["phases"]
    for i, x in enumerate(ph):
        rows.append(["  " * x["depth"] + x["phase"], f"{x['seconds']:.1f}", x.get("iters", x.get("images", "")),
                     mib(x["peak_rss_mib"]), mib(x["peak_cuda_mib"])])
        kids = []
        for y in ph[i + 1:]:
            if y["depth"] <= x["depth"]: break
            if y["depth"] == x["depth"] + 1: kids.append(y["seconds"])
        if x["depth"] == 0 and kids:
            s2 = x["phase"] == "stage 2"
            rows.append(["  " + ("training loop (+ set-up, checkpoints)" if s2 else "rest (not timed separately)"),
                         f"{x['seconds'] - sum(kids):.1f}", out["schedule"]["cut"]["stage2_iters"] if s2 else "", "", ""])
    L += ["", table(rows, ["phase", "seconds", "iters/images", "peak RSS MiB", "peak CUDA MiB"])]
    L.append(f"total wall time {out['total_s']:.1f} s; peak RSS {out['max_rss_mib']:,.0f} MiB (getrusage maxrss and the phases' VmHWM)"
             + (f"; torch.cuda.max_memory_allocated {out['cuda_max_allocated_mib']:,.0f} MiB"
                if out["cuda_max_allocated_mib"] is not None else ""))
    if not out["per_phase_rss"]: L.append("(per-phase RSS unavailable: /proc/self/clear_refs not writable)")
    L.append("")
    G = lambda f: f"{f / 1e9:,.1f}" if f else "-"
    st = lambda v: f"{v:.3f}" if v is not None else "-"
    rows = []
    for k, n_img in (("stage1", 2 * sc["stage1_pairs_per_step"]), ("stage2", sc["stage2_effective_batch"])):
        f, t, it = fl.get(f"{k}_step"), m[f"{k}_step_s_median"], m[f"{k}_s_per_iter"]
        rows.append([f"{k.replace('stage', 'stage ')} training step ({n_img} images)", G(f), st(t), st(it),
                     f"{f / t / 1e12:.2f}" if f and t else "-"])
    rows.append(["stage 1 inference forward, per image", G(fl.get("stage1_forward_per_image")), "", "", ""])
    rows.append(["stage 2 inference forward, per image", G(fl.get("stage2_forward_per_image")), "", "", ""])
    rows.append(["SuperPoint (all scales), per image", G(fl.get("superpoint_per_image")), "", "", ""])
    L.append(table(rows, ["FLOPs (FlopCounterMode)", "GFLOP", "step s (median)", "s/iteration", "TFLOP/s achieved"]))
    L.append("(step: the library's train_step / detector_step alone, first call excluded (it was FLOP-counted); "
             "s/iteration: phase wall time / iterations, with sampling, augmentation, logging, checkpoints)")
    g, h = pr["gpu_from_flops"], pr["from_measured_times"]
    L += ["", f"PROJECTION of the full paper schedule on {fu['n_train']:,} training images (a projection, not a run):",
          table([[k, fmt_s(a), fmt_s(b)] for k, a, b in zip(h["seconds"], g["seconds"].values(), h["seconds"].values())]
                + [["total", fmt_s(g["total_s"]), fmt_s(h["total_s"])]],
                ["part", f"GPU at {g['gpu_tflops']:g} TFLOP/s (FLOPs)", f"measured here ({s['device']})"]),
          f"GPU rate: {s['gpu_tflops_basis']}.",
          f"FLOP-based column: {g['not_included']}. Measured column: {h['how']}."]
    if "default_run_estimate" in out:
        e = out["default_run_estimate"]; d = e["schedule"]
        L.append(f"The default run of this script ({d['stage1_warmup_iters']} + {d['stage1_rounds'] - 1} x "
                 f"{d['stage1_round_iters']} stage-1 and {d['stage2_iters']} stage-2 iterations, {d['n_train']:,} train "
                 f"images) would take ~{fmt_s(e['total_s'])} here without evaluation (from this run's times).")
    return "\n".join(L)


# --------------------------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="paper", help="experiment preset (default paper; `test` for a fast check of this script)")
    ap.add_argument("--dataset", default="synthheads")
    ap.add_argument("--n-train", type=int, default=None, help="training images (default 1000; --quick 12)")
    ap.add_argument("--n-test", type=int, default=None, help="test images (default 200; --quick 8)")
    ap.add_argument("--warmup", type=int, default=None, help="stage-1 warm-up iterations (default 200; --quick 2)")
    ap.add_argument("--rounds", type=int, default=None, help="stage-1 rounds after the warm-up (default 2; --quick 1)")
    ap.add_argument("--round-iters", type=int, default=None, help="iterations per stage-1 round (default 100; --quick 1)")
    ap.add_argument("--stage2-iters", type=int, default=None, help="stage-2 iterations (default 300; --quick 2)")
    ap.add_argument("--quick", action="store_true", help="smoke run: a few iterations of each, a dozen images")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    ap.add_argument("--initializer", default=None, help="stage-0 initializer (default: the preset's)")
    ap.add_argument("--gpu-tflops", type=float, default=DEFAULT_GPU_TFLOPS,
                    help=f"sustained GPU rate for the FLOP-based projection (default {DEFAULT_GPU_TFLOPS:g}: "
                         + GPU_TFLOPS_BASIS.replace("%", "%%") + ")")
    ap.add_argument("--n-full", type=int, default=DEFAULT_N_FULL,
                    help=f"training images of the full schedule: relabelling, stage-0 and merge passes, and the stage-2 "
                         f"merge interval in epochs (default {DEFAULT_N_FULL:,}, ~CelebA's training split)")
    ap.add_argument("--sp-logit-scale", type=float, default=300.0,
                    help="factor on the random SuperPoint detector layer, so that it fires (default 300: ~50-80 "
                         "keypoints per 256-px SynthHeads image at conf 0.1 and a 12-px box NMS)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "paper_size"), help="output folder")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    d = dict(n_train=(12, 1000), n_test=(8, 200), warmup=(2, 200), rounds=(1, 2), round_iters=(1, 100), stage2_iters=(2, 300))
    for k, (q, full) in d.items():
        if getattr(a, k) is None: setattr(a, k, q if a.quick else full)
    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return a

def build_config(a, sp_path: Path | None):
    full = experiment_config(a.dataset, a.preset, seed=a.seed)
    ov, missing = cut_overrides(full, a.warmup, a.rounds, a.round_iters, a.stage2_iters, a.n_full)
    kw = dict(n_train=a.n_train, n_test=a.n_test, seed=a.seed, device=a.device)
    if a.dataset in pipeline.SYNTHETIC: kw["synth"] = {**full.synth, "image_size": full.in_size}   # render at input size
    if a.initializer: kw["initializer"] = a.initializer
    cfg = experiment_config(a.dataset, a.preset, overrides=ov, **kw)
    if cfg.initializer == "superpoint":
        cfg.superpoint_weights = str(sp_path)
        cfg.initializer_args = {**cfg.initializer_args, "device": a.device}     # stage 0 on the device asked for
    return full, cfg, missing

def main(argv=None) -> dict:
    a = parse_args(argv)
    out_dir = Path(a.out); out_dir.mkdir(parents=True, exist_ok=True)
    run_dir = out_dir / "run"
    if run_dir.exists(): shutil.rmtree(run_dir)          # a fresh run each time (write_config refuses a used folder)
    tmp = Path(tempfile.mkdtemp(prefix="paper_size_sp_"))
    sp_path = random_superpoint_weights(tmp / "superpoint_v1.pth", a.sp_logit_scale, a.seed)
    full_cfg, cfg, missing = build_config(a, sp_path)
    uses_sp = cfg.initializer == "superpoint"
    note = ("speed and memory only, not accuracy: " + (
        f"SuperPoint has RANDOM weights (written to {sp_path} in the superpoint_v1.pth format, detector layer x"
        f"{a.sp_logit_scale:g}); its keypoints, and so every NME/NMI below, are meaningless" if uses_sp else
        f"initializer {cfg.initializer!r} (not SuperPoint)") + "; only iteration counts are cut from the preset")
    print("NOTE:", note, flush=True)
    p, state = Probe(a.device), {}
    install_probes(p, state)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = pipeline.run_experiment(cfg, run_dir, progress=not a.no_progress)
    finally:
        p.restore()
    total = time.perf_counter() - t0
    dev = torch.device(a.device)
    fl = {"stage1_step": p.flops.get("stage1"), "stage2_step": p.flops.get("stage2"),
          "stage1_forward_per_image": forward_flops(res.stage1.net, res.train.images, dev),
          "stage2_forward_per_image": forward_flops(res.stage2.net, res.train.images, dev),
          "superpoint_per_image": superpoint_flops(cfg, res.train.images, res.train.boxes) if uses_sp else None}
    cut, full = schedule(cfg, a.n_train), schedule(full_cfg, a.n_full)
    m = measured_figures(p, cut, a.n_train)
    s0info = res.stage0[3]
    out = {"note": note,
           "settings": {"preset": a.preset, "dataset": a.dataset, "in_size": cfg.in_size, "n_train": a.n_train,
                        "n_test": a.n_test, "device": a.device, "device_name": device_name(a.device),
                        "torch": torch.__version__, "threads": torch.get_num_threads(), "quick": a.quick,
                        "initializer": cfg.initializer, "initializer_args": cfg.initializer_args,
                        "sp_logit_scale": a.sp_logit_scale if uses_sp else None, "gpu_tflops": a.gpu_tflops,
                        "gpu_tflops_basis": GPU_TFLOPS_BASIS, "n_full": a.n_full, "argv": sys.argv[1:] if argv is None else argv},
           "schedule": {"cut": cut, "full": full, "missing_fields": missing + p.missing},
           "adjustments": state, "phases": p.phases,
           "total_s": total, "per_phase_rss": p.per_phase_rss,
           # Linux's ru_maxrss is the same high-water mark the per-phase resets clear: take the max with the phases'
           "max_rss_mib": max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]
                              + [ph["peak_rss_mib"] for ph in p.phases if ph["peak_rss_mib"]]),
           "cuda_max_allocated_mib": max([torch.cuda.max_memory_allocated() / 2**20]          # reset per phase, as RSS
                                         + [ph["peak_cuda_mib"] for ph in p.phases if ph["peak_cuda_mib"]])
                                     if a.device.startswith("cuda") else None,
           "measured": m, "flops": fl,
           "stage0": {"keypoints_per_image": s0info.get("keypoints_per_image"),
                      "labels_per_image": float(res.stage0[0].counts.mean())},
           "stage2_channels": int(res.stage2.net.n_channels),
           "projection": project(full, m, fl, a.gpu_tflops, a.n_full),
           "results_meaningless": res.results.get("rows", [])}
    if a.quick:     # how long the default (non-quick) cut run would take here, from this run's measured times
        d = parse_args(["--preset", a.preset, "--dataset", a.dataset, "--n-full", str(a.n_full)])
        dcut = schedule(build_config(d, sp_path)[1], d.n_train)
        est = project(dcut, m, fl, a.gpu_tflops, d.n_train)["from_measured_times"]
        out["default_run_estimate"] = {"schedule": dcut, "seconds": est["seconds"], "total_s": est["total_s"]}
    from unsupervised_landmarks.core import save_json
    save_json(out, out_dir / "paper_size.json")
    text = report(out)
    (out_dir / "paper_size.txt").write_text(text + "\n")
    print(text)
    print(f"\nwritten: {out_dir / 'paper_size.json'}, {out_dir / 'paper_size.txt'}; run folder {run_dir}")
    shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
