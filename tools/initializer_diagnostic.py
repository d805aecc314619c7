"""How good a start does each keypoint initializer give stage 0? A screening diagnostic on SynthHeads (issue 28).

    python tools/initializer_diagnostic.py [--init NAME[:JSON] ...] [--n 600] [--M 30 60] [--frontal 30]
                                           [--preset cpu] [--seed 0] [--no-stage0] [--json OUT]

For each initializer (default: sift, orb, xfeat, aliked, disk; `NAME:JSON` adds constructor arguments, e.g.
`xfeat:{"upsample": 2}`), on the first `--n` training heads of the preset's SynthHeads crops:

1. **at the true landmarks**: the initializer's descriptors at every visible ground-truth landmark, clustered by
   k-means into M clusters, NMI against the landmark id, over all heads and, clustered on their own, over the
   near-frontal ones (|yaw| <= --frontal degrees) (`keypoints.landmark_descriptor_nmi`): what the descriptor alone can
   tell apart, with detection out of the way;
2. **stage 0 as the method runs it**: the initializer's keypoints on the crops (`pipeline.stage0_points`), outlier
   removal, k-means into M clusters and assignment (`clustering.stage0`, the preset's outlier_drop and seed), and the
   NMI that stage 0 reports (each label against the nearest visible landmark within gt_radius), with the keypoints per
   image and their F-measure against the landmarks.

`sift` and `orb` take the preset's arguments when the preset's initializer is theirs (the cpu preset's shading-free
SIFT). The learned initializers read their weights from `keypoints.weights_dir()` (`make weights`); one whose weights
are missing is reported and skipped. The annotations only score; nothing here feeds the method.
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np

DEFAULT_INITS = ("sift", "orb", "xfeat", "aliked", "disk")


def parse_init(text: str):
    "'xfeat:{\"upsample\": 2}' -> ('xfeat', {'upsample': 2}); 'sift' -> ('sift', None)."
    name, _, args = text.partition(":")
    try: args = json.loads(args) if args else None
    except json.JSONDecodeError as e: raise SystemExit(f"--init {text!r}: the arguments after ':' must be JSON ({e})")
    if args is not None and not isinstance(args, dict): raise SystemExit(f"--init {text!r}: JSON arguments must be an object")
    return name.lower(), args


def build(name: str, args, cfg):
    "The initializer `name`: a learned one from keypoints.LEARNED_INITIALIZERS, else the pipeline's (preset arguments)."
    from unsupervised_landmarks import keypoints as kp
    if name in kp.LEARNED_INITIALIZERS: return kp.LEARNED_INITIALIZERS[name](**(args or {}))
    from unsupervised_landmarks.pipeline import experiment_config, make_initializer
    c = experiment_config(cfg.dataset, cfg.preset, {"initializer": name, **({"initializer_args": args} if args is not None else {})},
                          seed=cfg.seed)
    return make_initializer(c)


def stage0_nmi(cfg, train, init, Ms, progress=False) -> dict:
    "Stage 0 as the pipeline runs it, once per M: keypoints, outlier removal, k-means, assignment; its NMI and counts."
    from unsupervised_landmarks.clustering import stage0
    from unsupervised_landmarks.core import detection_prf
    from unsupervised_landmarks.pipeline import stage0_points
    r = cfg.gt_radius * cfg.in_size
    kps = stage0_points(cfg, train, init=init, progress=progress)
    out = {"keypoints_per_image": float(kps.counts.mean()),
           "keypoints_f": detection_prf(kps, train.landmarks, train.visible, r)["f_measure"]}
    for M in Ms:
        _, _, info = stage0(kps, M=M, drop=cfg.outlier_drop, seed=cfg.seed, gt=train.landmarks, vis=train.visible, r=r)
        out[M] = info["nmi"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/initializer_diagnostic.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", action="append", default=[], help="NAME[:JSON] (repeatable; default: %s)" % ", ".join(DEFAULT_INITS))
    ap.add_argument("--n", type=int, default=600, help="training heads (default 600)")
    ap.add_argument("--M", type=int, nargs="+", default=[30, 60], help="k-means cluster counts (default 30 60)")
    ap.add_argument("--frontal", type=float, default=30.0, help="near-frontal: |yaw| <= this many degrees (default 30)")
    ap.add_argument("--preset", default="cpu"); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-stage0", action="store_true", help="only the descriptors at the true landmarks")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from unsupervised_landmarks.keypoints import landmark_descriptor_nmi
    from unsupervised_landmarks.pipeline import experiment_config, prepare_data
    inits = [parse_init(t) for t in (a.init or DEFAULT_INITS)]
    cfg = experiment_config("synthheads", a.preset, {"n_train": a.n, "n_test": 8}, seed=a.seed)
    train, _ = prepare_data(cfg, progress=False)
    print(f"SynthHeads, preset {a.preset}, seed {a.seed}: {len(train)} training heads of {cfg.in_size} px, "
          f"{int((np.abs(train.meta['yaw']) <= a.frontal).sum())} near-frontal (|yaw| <= {a.frontal:g}); M = {a.M}", flush=True)
    rows = []
    for name, args in inits:
        label = name + (json.dumps(args, separators=(",", ":")) if args else "")
        try:
            init = build(name, args, cfg)
        except (FileNotFoundError, ImportError) as e:
            print(f"{label}: skipped ({e})", flush=True); rows.append({"initializer": label, "skipped": str(e)}); continue
        t0 = time.time()
        at = landmark_descriptor_nmi(init, train, Ms=a.M, frontal=a.frontal, seed=a.seed)
        row = {"initializer": label, "dim": init.dim, "at_landmarks": at["all"], "at_landmarks_frontal": at.get("frontal")}
        if not a.no_stage0: row["stage0"] = stage0_nmi(cfg, train, init, a.M)
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        print(f"{label}: done in {row['seconds']:.0f} s", flush=True)
    ms = "/".join(str(m) for m in a.M)
    print(f"\nNMI against the landmark id at M = {ms}")
    print(f"{'initializer':28s} {'dim':>4s} {'true pts, all':>14s} {'near-frontal':>14s} {'stage 0':>14s} {'kp/img':>7s} {'kp F':>6s} {'s':>5s}")
    f = lambda d: "/".join(f"{d[m]:.3f}" for m in a.M) if d else "-"
    for r in rows:
        if "skipped" in r: print(f"{r['initializer']:28s} skipped: no weights"); continue
        s0 = r.get("stage0") or {}
        print(f"{r['initializer']:28s} {r['dim']:4d} {f(r['at_landmarks']):>14s} {f(r['at_landmarks_frontal']):>14s} "
              f"{f(s0) if s0 else '-':>14s} {s0.get('keypoints_per_image', float('nan')):7.1f} "
              f"{s0.get('keypoints_f', float('nan')):6.3f} {r['seconds']:5.0f}")
    if a.json: Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
