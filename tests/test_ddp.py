"Stages 1 and 2 under torchrun: 2 CPU processes with the gloo backend, test preset."
import json, os, subprocess, sys
from pathlib import Path

import torch

from unsupervised_landmarks.data import FIXTURES

BIN = Path(sys.executable).parent


def _torchrun(tmp_path, *extra):
    root = tmp_path / "aflw"
    FIXTURES["aflw"](root)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UL_DATA_DIR": str(tmp_path / "data")}
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "ul-train"), "--dataset", "aflw",
           "--data-root", str(root), "--preset", "test", "--run-dir", str(run), "--no-progress", *extra]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return run, r


def test_torchrun_two_processes_gloo(tmp_path):
    run, r = _torchrun(tmp_path)
    for f in ["config.json", "stage1/round_02/done.json", "checkpoints/stage1_final.pt", "checkpoints/stage2_final.pt",
              "eval/results.json"]:
        assert (run / f).is_file(), f
    # both ranks' random states are in the checkpoints: the run really had two processes
    for name in ("stage1_last.pt", "stage2_last.pt"):
        ck = torch.load(run / "checkpoints" / name, weights_only=True)
        assert len(json.loads(ck["rng"])) == 2
    assert "stage 2 detector" in r.stdout

