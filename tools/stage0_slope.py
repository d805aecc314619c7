"""Does a stage-0 descriptor name parts of the head, or places in the image? A screening diagnostic (SynthHeads only).

    python tools/stage0_slope.py [--preset cpu] [--seed 0] [--variant CHANNELS:SIZE:WEIGHTS ...] [--json OUT]

Detects the preset's generic keypoints (SIFT by default) on the training and test crops, and scores the stage-0
clustering of their descriptors, as the method runs it (outlier removal, k-means with the preset's M, one-to-one
assignment; the test keypoints assigned to the training clusters). Each `--variant` re-describes the same keypoints
with upright SIFT at a fixed support SIZE (px) on the named image channels, each part weighted, concatenated and
L2-normalised: `gray` (intensity), `chroma` (r and g chromaticity, R/(R+G+B) and G/(R+G+B): unchanged by shading),
`opp` (the two opponent-colour channels), `hpS`, e.g. `hp2` (intensity minus its Gaussian blur of sigma S px:
albedo detail with the smooth shading of the head removed). E.g. `gray+chroma:8:1+1`.

Per variant it prints the test labels' NMI and F-measure against the annotated landmarks, the 3D spread, the number
of clusters that hold across yaw and that slide, and the median |x slope|: how far a cluster's 3D centre moves
left-right over the head per 90 degrees of yaw, in outer-eye-corner distances (`diagnostics.surface_consistency`,
'slope'; ground-truth landmarks: ~0.01). The annotations are used only to score, never to cluster.
"""
import argparse, json, sys
from pathlib import Path

import numpy as np

CHANNELS = ("gray", "chroma", "opp", "hpS")


def _hp_sigma(kind: str):
    "The blur sigma of a high-pass channel set 'hp<S>' (e.g. 'hp2', 'hp1.5'), else None."
    try: return float(kind[2:]) if kind.startswith("hp") and float(kind[2:]) > 0 else None
    except ValueError: return None


def channels(img: np.ndarray, kind: str) -> list:
    "uint8 single-channel images of an (H,W,3) uint8 RGB crop, on a fixed scale (not per image)."
    import cv2
    sigma = _hp_sigma(kind)
    if kind == "gray" or sigma:  # hpS: intensity minus its Gaussian blur (sigma S px), detail without smooth shading
        from unsupervised_landmarks.keypoints import highpass_u8
        gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        return [highpass_u8(gray, sigma) if sigma else gray]
    f = img.astype(np.float32) + 1.0
    if kind == "chroma":
        s = f.sum(-1)
        return [np.clip(f[..., c] / s * 382.5, 0, 255).astype(np.uint8) for c in (0, 1)]   # 1/3 (grey) -> 127.5
    if kind == "opp":
        o1 = (f[..., 0] - f[..., 1]) / np.sqrt(2); o2 = (f[..., 0] + f[..., 1] - 2 * f[..., 2]) / np.sqrt(6)
        return [np.clip(o / 2 + 128, 0, 255).astype(np.uint8) for o in (o1, o2)]
    raise ValueError(f"unknown channel set {kind!r}; choose from {CHANNELS}")


def parse_variant(text: str):
    "'gray+chroma:8:1+1' -> (['gray', 'chroma'], 8.0, [1.0, 1.0])."
    try:
        kinds, size, weights = text.split(":")
        kinds, w = kinds.split("+"), [float(x) for x in weights.split("+")]
        size = float(size)
    except ValueError:
        raise SystemExit(f"--variant {text!r}: expected CHANNELS:SIZE:WEIGHTS, e.g. gray+chroma:8:1+1")
    bad = [k for k in kinds if k not in ("gray", "chroma", "opp") and not _hp_sigma(k)]
    if bad or len(w) != len(kinds) or size <= 0:
        raise SystemExit(f"--variant {text!r}: channels from {CHANNELS}, one weight per channel set, SIZE > 0")
    return kinds, size, w


def describe(images, kps, kinds, size, weights):
    "The keypoints `kps` (PointTable) re-described with upright SIFT on the channel sets; a new PointTable."
    from unsupervised_landmarks.core import PointTable
    from unsupervised_landmarks.keypoints import SIFT, l2_normalize
    sift = SIFT(describe_size=size)
    dim = sum(128 * len(channels(images[0], k)) for k in kinds)
    out = []
    for i in range(len(images)):
        s, e = kps.offsets[i], kps.offsets[i + 1]
        xy = np.stack([kps["x"][s:e], kps["y"][s:e]], 1)
        if not len(xy): out.append(np.zeros((0, dim), np.float32)); continue
        out.append(np.concatenate([w * sift.describe(ch, xy)[0] for k, w in zip(kinds, weights)
                                   for ch in channels(images[i], k)], 1))
    d = l2_normalize(np.concatenate(out, 0).astype(np.float32))
    return PointTable(kps.offsets, {"x": kps["x"], "y": kps["y"], "score": kps["score"], "desc": d})


def score(cfg, test, dtr, dte, seed: int) -> dict:
    "Stage-0 clustering of `dtr`, the test descriptors `dte` assigned to it, scored on the test split."
    from unsupervised_landmarks import evaluation as E
    from unsupervised_landmarks.clustering import stage0, assign_labels
    from unsupervised_landmarks.diagnostics import surface_evaluation, median_slope
    lab, cent, info = stage0(dtr, M=cfg.stage0_M, drop=cfg.outlier_drop, seed=seed)
    lte = assign_labels(dte, cent, info["thresholds"])
    _, _, ids = E.points_from_table(lab)
    pte, mte, _ = E.points_from_table(lte, ids=ids)
    pm = E.point_metrics(lte, test.landmarks, test.visible, cfg.gt_radius * cfg.in_size)
    sv = surface_evaluation(test, {"stage 0": (pte, mte)})
    if sv is None: raise SystemExit("no 3D measure: stage0_slope.py needs SynthHeads test crops with both eye corners")
    s = sv["methods"]["stage 0"]
    return {"nmi": pm["nmi"], "f_measure": pm["f_measure"], "spread3d": s["mean"], "holding3d": s["holding"],
            "sliding3d": s["sliding"], "x_slope": median_slope(s), "clusters": int(np.isfinite(np.array(s["slope"], float)[:, 0]).sum()),
            "gt_x_slope": median_slope(sv["ground truth"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/stage0_slope.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu"); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overrides", default="{}", help="ExperimentConfig overrides (JSON), e.g. sizes")
    ap.add_argument("--variant", action="append", default=[], help="CHANNELS:SIZE:WEIGHTS (repeatable)")
    ap.add_argument("--json", help="also write the table here")
    a = ap.parse_args(argv)
    variants = {v: parse_variant(v) for v in a.variant}
    from unsupervised_landmarks.pipeline import experiment_config, prepare_data, make_initializer, _detect
    cfg = experiment_config("synthheads", a.preset, json.loads(a.overrides), seed=a.seed)
    train, test = prepare_data(cfg, progress=False)
    init = make_initializer(cfg)
    ktr, kte = _detect(init, train, False), _detect(init, test, False)
    rows = {f"{cfg.initializer} (the preset's stage 0)": score(cfg, test, ktr, kte, a.seed)}
    for name, (kinds, size, w) in variants.items():
        rows[name] = score(cfg, test, describe(train.images, ktr, kinds, size, w), describe(test.images, kte, kinds, size, w), a.seed)
    print(f"{'descriptor':34s} {'NMI':>6s} {'F':>6s} {'3D spread':>9s} {'hold':>4s} {'slide':>5s} {'|x slope|':>9s}")
    for name, r in rows.items():
        print(f"{name:34s} {r['nmi']:6.3f} {r['f_measure']:6.3f} {r['spread3d']:9.3f} {r['holding3d']:4d} {r['sliding3d']:5d} "
              f"{r['x_slope'] if r['x_slope'] is not None else float('nan'):9.2f}")
    gt = next(iter(rows.values()))["gt_x_slope"]
    print(f"ground-truth landmarks: |x slope| {gt if gt is not None else float('nan'):.3f} (eye distances per 90 degrees of yaw)")
    if a.json: Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
