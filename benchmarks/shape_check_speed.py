"""Speed of the rigid-shape check (`06b_shape`): fitting one shape to N training images' detections
(`fit_rigid_shape`) and checking test images (`RigidShape.check`, one robust camera per image), on a synthetic rigid
object seen over yaw +-85 degrees with missing detections and a share of them moved to another channel's place.

    python benchmarks/shape_check_speed.py [--images 2000 20000] [--K 30] [--check 5000] [--missing 0.5] [--wrong 0.1]

Prints, per training-set size, the fit's wall time and peak Python/numpy allocation (tracemalloc), the check's
images/s, and how well the check separates the moved detections from the others (a sanity figure, not a test).
"""
import argparse, time, tracemalloc

import numpy as np

from unsupervised_landmarks.shape import fit_rigid_shape


def scene(N, K, missing, wrong, seed=0, noise=1.0):
    "Detections (N,K,2), visible (N,K) and moved (N,K) of K random 3D points under N scaled orthographic views."
    X = np.random.default_rng(0).normal(size=(K, 3)) * [1, 1.2, 0.8]     # one object; `seed` draws the views
    rng = np.random.default_rng(seed + 1)
    a, b = rng.uniform(-1.5, 1.5, N), rng.uniform(-0.3, 0.3, N)
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    R2 = np.stack([np.stack([ca, sa * sb, sa * cb], -1), np.stack([0 * a, cb, -sb], -1)], 1)
    xy = np.einsum("nij,kj->nki", R2, X) * 30 + 64 + rng.normal(size=(N, K, 2)) * noise
    vis = rng.random((N, K)) > missing
    moved = vis & (rng.random((N, K)) < wrong)
    src = (np.arange(K)[None] + rng.integers(1, K, (N, K))) % K
    xy[moved] = xy[np.nonzero(moved)[0], src[moved]]
    return xy.astype(np.float32), vis, moved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--K", type=int, default=30)
    ap.add_argument("--check", type=int, default=5000, help="test images to check")
    ap.add_argument("--missing", type=float, default=0.5)
    ap.add_argument("--wrong", type=float, default=0.1)
    ap.add_argument("--tol", type=float, default=0.1)
    a = ap.parse_args(argv)
    xt, vt, mt = scene(a.check, a.K, a.missing, a.wrong, seed=1)
    print(f"K={a.K} channels, {a.missing:.0%} missing, {a.wrong:.0%} of the detections moved to another channel's place")
    for n in a.images:
        xy, vis, _ = scene(n, a.K, a.missing, a.wrong)
        tracemalloc.start(); t = time.perf_counter()
        shape = fit_rigid_shape(xy, vis, a.tol)
        fit_s = time.perf_counter() - t; peak = tracemalloc.get_traced_memory()[1] / 2**20; tracemalloc.stop()
        t = time.perf_counter(); keep = shape.check(xt, vt); check_s = time.perf_counter() - t
        print(f"fit on {n:>7} images: {fit_s:7.2f} s, peak alloc {peak:7.1f} MiB | check: {a.check / check_s:8.0f} img/s; "
              f"kept {keep[mt].mean():.3f} of the moved detections, {keep[vt & ~mt].mean():.3f} of the others")


if __name__ == "__main__":
    main()
