"""Positive control for the 3D correspondence measures: a run folder whose stage 0 is the true correspondence.

    python tools/oracle_stage0.py RUN_DIR [--dataset synthheads] [--preset cpu] [--seed 0] [--overrides JSON]
    papermill nbs/10_train.ipynb out.ipynb --cwd nbs -p run_dir RUN_DIR -p resume True -y '{"overrides": JSON}'

The first command runs stage 0 as usual (so the evaluation's stage-0 row still scores the generic keypoints), then
replaces the training labels in RUN_DIR/stage0/labels.npz by every visible annotated landmark, with the landmark's
index as its cluster (`diagnostics.oracle_labels`), and records `"oracle": true` in stage0/done.json. The second command
trains stages 1 and 2 from those labels and evaluates. It answers one question: given a perfect start, do the
self-training rounds and stage 2 keep landmarks that hold across yaw? This is a diagnostic, never the method: it
reads the annotations. The warm-up trains on these labels, as on stage 0's.
"""
import argparse, json, sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/oracle_stage0.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir"); ap.add_argument("--dataset", default="synthheads"); ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seed", type=int, default=0); ap.add_argument("--overrides", default="{}")
    a = ap.parse_args(argv)
    from unsupervised_landmarks.core import load_json, save_json
    from unsupervised_landmarks.pipeline import experiment_config, prepare_data, run_stage0
    from unsupervised_landmarks.diagnostics import oracle_labels
    cfg = experiment_config(a.dataset, a.preset, json.loads(a.overrides), seed=a.seed)
    train, _ = prepare_data(cfg, progress=False)
    if not train.landmarks.shape[1]:
        print(f"{a.dataset}: no annotated landmarks, no oracle", file=sys.stderr); return 2
    run = Path(a.run_dir)
    if (run / "stage1").exists():
        print(f"{run}: stage 1 has already started; use a new run folder", file=sys.stderr); return 2
    ids = np.arange(train.landmarks.shape[1])
    labels, _, _, info = oracle_labels(train, ids, cfg.stage1.M)             # (fails at once when M < landmarks)
    run_stage0(cfg, train, run, resume=True, progress=False)              # the generic keypoints and their clusters
    labels.save(run / "stage0" / "labels.npz")
    done = load_json(run / "stage0" / "done.json")
    save_json({**done, "oracle": True, "oracle_labels_per_image": info["keypoints_per_image"]}, run / "stage0" / "done.json")
    print(f"{run}/stage0: {len(labels)} true labels ({info['keypoints_per_image']:.1f} per image, {len(ids)} landmarks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
