"""Choose the rigid-shape check's `tol` and `view` on a validation split, not on the test split (SynthHeads only).

    python tools/shape_grid.py RUN_DIR [RUN_DIR ...] [--n-val 500] [--tol 0.07 0.1 0.15] [--view none 0 0.4 0.6]
                               [--split val] [--json OUT]

For each finished run: loads its config and stage-2 detector, predicts the run's training images (the detector's
own visibility thresholds, no check), fits one rigid shape per `tol` to those detections (`shape.fit_rigid_shape`,
as `Stage2Config.shape_tol` does at the end of training), and for each (tol, view) checks the detector's detections
on `n_val` heads of the SynthHeads 'val' split: identities and views that neither the training nor the test split
contain. It prints, per setting, the channels that hold across yaw in 3D, the 3D spread and the visible rate
(`diagnostics.surface_evaluation` on the val split), first without any check. The annotations only score; the shape is
fitted to the detector's detections. `--split test` scores the test split instead (500 heads, as the run's own
evaluation): for reporting a setting chosen on 'val', never for choosing it.
"""
import argparse, json, sys
from pathlib import Path


def _view(v: str):
    return None if v.lower() == "none" else float(v)


def evaluate_run(run_dir, n_val: int, tols, views, split: str = "val", progress: bool = False) -> list:
    "Rows {tol, view, holding3d, spread3d, visible_rate, K} for one run (tol=None: no check) on `split`."
    from unsupervised_landmarks.core import load_json
    from unsupervised_landmarks.data import materialize
    from unsupervised_landmarks.diagnostics import attach_surface, surface_evaluation
    from unsupervised_landmarks.pipeline import ExperimentConfig, _synthetic, prepare_data
    from unsupervised_landmarks.stage2 import LandmarkDetector, detector_shape
    run_dir = Path(run_dir)
    cfg = ExperimentConfig.from_dict(load_json(run_dir / "config.json"))
    if cfg.dataset != "synthheads":
        raise SystemExit(f"{run_dir}: a SynthHeads run expected (the val split is rendered), got dataset {cfg.dataset!r}")
    det = LandmarkDetector.load(run_dir)
    det.shape = det.shape_channels = None                      # the detector's own detections, unchecked
    train, _ = prepare_data(cfg, progress=progress)
    raw = _synthetic(cfg, split, n_val)
    val = attach_surface(materialize(raw, size=cfg.in_size, enlarge=det.enlarge, progress=progress), raw)   # 3D points
    xt, vt, _ = det.predict_crops(train.images)
    xv, vv, _ = det.predict_crops(val.images)

    def score(vis):
        sc = surface_evaluation(val, {"m": (xv, vis)})["methods"]["m"]
        return {"holding3d": sc["holding"], "spread3d": sc["mean"], "visible_rate": float(vis.mean()), "K": det.K}

    rows = [{"tol": None, "view": None, **score(vv)}]
    for tol in tols:
        shape = detector_shape(xt, vt, tol)                     # as stage 2 fits it (`Stage2Config.shape_tol`)
        if shape is None:                                       # too few channels fire on the training images
            print(f"{run_dir}: no rigid shape can be fitted; only the unchecked detector is scored", file=sys.stderr)
            return rows
        checked = LandmarkDetector(det.net, det.channel_clusters, det.visibility_threshold, det.enlarge, shape=shape)
        for view in views:
            checked.shape.view = view
            rows.append({"tol": tol, "view": view, **score(checked.shape_check(xv, vv))})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finished SynthHeads run directories")
    ap.add_argument("--n-val", type=int, default=500)
    ap.add_argument("--tol", type=float, nargs="+", default=[0.07, 0.1, 0.15])
    ap.add_argument("--view", type=_view, nargs="+", default=[None, 0.0, 0.4, 0.6])
    ap.add_argument("--split", default="val", choices=["val", "test"], help="score on this SynthHeads split")
    ap.add_argument("--json", help="write {run: rows} here")
    a = ap.parse_args(argv)
    out = {}
    for run in a.runs:
        rows = out[str(run)] = evaluate_run(run, a.n_val, a.tol, a.view, a.split)
        print(f"{run} ({a.split} split, {a.n_val} heads, K={rows[0]['K']})")
        print(f"{'tol':>6} {'view':>6} {'holding3d':>10} {'spread3d':>9} {'visible':>8}")
        for r in rows:
            t = "-" if r["tol"] is None else f"{r['tol']:g}"
            v = "-" if r["view"] is None else f"{r['view']:g}"
            print(f"{t:>6} {v:>6} {r['holding3d']:>10} {r['spread3d']:>9.3f} {r['visible_rate']:>8.3f}")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
