"""Matrix completion of the evaluation protocols, side by side: our fast SVT (`svt_complete`, protocol `paper_fast`,
and `cpu`), our implementation of the official code's SVT (`svt_official`, protocol `paper`) and the official code's
own call, `svt_solve` of matrix-completion 0.0.2 (a dev requirement, loaded from its file because the package's
`__init__` imports cvxpy), on training matrices like the evaluation's: n images x 2K coordinates in pixels (a mean
shape plus rank-r variation), with a share of the entries missing at random.

    python benchmarks/svt_speed.py [--images 1000] [--K 10 30 50] [--missing 0.1 0.2] [--rank 3] [--repeats 3]

Prints per case the wall time of each (best of `repeats`), its iterations and time per iteration, its RMS error on the
missing entries (px, against the true matrix), and the largest difference (px) of each to svt_solve's completion; per
case the speed-up of ours over svt_solve and whether svt_official gives svt_solve's answer (within SAME_PX).
Times are of one run on this machine's CPU: compare them only within one run.
"""
import argparse, importlib.util, logging, os, time

import numpy as np

from unsupervised_landmarks.evaluation import get_protocol, svt_complete, svt_official


SAME_PX = 1e-6      # largest difference (px) still read as the same completion (the pytest tolerance)


def load_svt_solve():
    "matrix_completion.svt_solver.svt_solve, or None when the package is not installed."
    spec = importlib.util.find_spec("matrix_completion")
    if spec is None or not spec.submodule_search_locations: return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "svt_solver.py")
    sp = importlib.util.spec_from_file_location("_mc_svt_solver", path)
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    return mod.svt_solve


class _Count(logging.Handler):
    "Counts svt_solve's per-iteration log records (its only report of the iterations it ran)."
    def __init__(self): super().__init__(logging.INFO); self.n = 0
    def emit(self, record): self.n += 1


def case(n, K, rank, missing, seed=0):
    "(true matrix (n, 2K) in px, observed mask)."
    rng = np.random.default_rng(seed)
    A = rng.uniform(60, 200, (1, 2 * K)) + rng.normal(size=(n, rank)) @ rng.normal(size=(rank, 2 * K)) * 10
    return A, rng.random(A.shape) > missing


def timed(f, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter(); out = f(); best = min(best, time.perf_counter() - t)
    return best, out


def methods(svt_solve):
    "name -> f(A, obs) -> (completed matrix in px with the observed entries put back, iterations)."
    fast, paper = get_protocol("paper_fast"), get_protocol("paper")
    def ours_fast(A, obs):
        X, info = svt_complete(A, obs, fast.svt_tau, fast.svt_step, fast.svt_tol, fast.svt_max_iter, fast.svt_center,
                               return_info=True)
        return X, info["iterations"]
    def ours_official(A, obs):
        Z, info = svt_official(np.where(obs, A, 0.0) / paper.svt_scale, obs, paper.svt_tau, paper.svt_step,
                               paper.svt_tol, paper.svt_max_iter, return_info=True)
        return np.where(obs, A, Z * paper.svt_scale), info["iterations"]
    log = logging.getLogger("_mc_svt_solver")
    def package(A, obs):                     # the official Forward_matrix: column means, / 256, svt_solve, x 256
        mean = np.nanmean(np.where(obs, A, np.nan), 0)
        np.random.seed(0)                    # ARPACK's start vectors come from numpy's global generator
        count = _Count(); log.addHandler(count); log.setLevel(logging.INFO)
        try: Z = svt_solve(np.where(obs, A, mean) / 256.0, np.round(obs.astype(float)))
        finally: log.removeHandler(count)
        return np.where(obs, A, 256.0 * Z), count.n
    out = {"svt_complete (paper_fast, cpu)": ours_fast, "svt_official (paper)": ours_official}
    if svt_solve is not None: out["svt_solve 0.0.2 (official code)"] = package
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000, help="rows: the official code completes its 1,000 regression images")
    ap.add_argument("--K", type=int, nargs="+", default=[10, 30, 50])
    ap.add_argument("--missing", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--rank", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    svt_solve = load_svt_solve()
    if svt_solve is None: print("matrix-completion is not installed: svt_solve is left out (pip install -e '.[dev]')")
    ms = methods(svt_solve)
    ref_name = "svt_solve 0.0.2 (official code)"
    print(f"{'n x 2K':>10} {'missing':>7}  {'method':<32} {'time s':>8} {'iters':>6} {'ms/iter':>8} {'RMS missing px':>15} "
          f"{'max diff to svt_solve px':>25}")
    for K in a.K:
        for miss in a.missing:
            A, obs = case(a.images, K, a.rank, miss, seed=K)
            res = {name: timed(lambda f=f: f(A, obs), a.repeats) for name, f in ms.items()}
            ref = res[ref_name][1][0] if ref_name in res else None
            for name, (t, (X, it)) in res.items():
                rms = np.sqrt(np.mean((X - A)[~obs] ** 2))
                diff = "" if ref is None else f"{np.abs(X - ref).max():.3g}"
                print(f"{f'{a.images}x{2 * K}':>10} {miss:>7.2f}  {name:<32} {t:>8.3f} {it:>6} {1e3 * t / max(it, 1):>8.2f} "
                      f"{rms:>15.3f} {diff:>25}")
            if ref is not None:
                t_pkg, t_off, t_fast = (res[n][0] for n in (ref_name, "svt_official (paper)", "svt_complete (paper_fast, cpu)"))
                d_off = np.abs(res["svt_official (paper)"][1][0] - ref).max()
                print(f"{'':>20}speed-up over svt_solve: svt_official x{t_pkg / t_off:.1f}, svt_complete x{t_pkg / t_fast:.1f}; "
                      f"svt_official gives svt_solve's answer: {d_off <= SAME_PX} (max diff {d_off:.2g} px, tolerance {SAME_PX:g})")


if __name__ == "__main__":
    main()
