"The results registry on a test-preset run: its entry, README table, and a reproducing command that reproduces it."
import os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from unsupervised_landmarks.core import load_json, ConfigError
from unsupervised_landmarks.ablations import register_run, registry_table, registry_entries, config_overrides, REGISTRY_START

ROOT = Path(__file__).resolve().parents[1]


def test_registry_on_test_run(tmp_path, monkeypatch):
    "Register a test-preset training run; its command, run with papermill, reproduces the results."
    from unsupervised_landmarks.data import FIXTURES
    from unsupervised_landmarks.pipeline import experiment_config, run_experiment, ExperimentConfig
    import torch
    monkeypatch.setenv("OMP_NUM_THREADS", "1")            # the papermill kernel below; tiny nets run faster on one thread
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    request_cleanup = lambda: torch.set_num_threads(threads)
    root = tmp_path / "aflw"; FIXTURES["aflw"](root)
    cfg = experiment_config("aflw", "test", data_root=str(root), seed=3,
                            overrides={"stage0_M": 6, "stage1": {"margin": 0.6}, "stage2": {"iters": 4}})
    run = tmp_path / "run"
    try: res = run_experiment(cfg, run, progress=False).results
    finally: request_cleanup()
    reg = tmp_path / "results"
    e = register_run(run, "aflw-test-s3", registry=reg, notes="from the test suite")
    entry = load_json(e / "entry.json")
    assert entry["kind"] == "run" and entry["dataset"] == "aflw" and entry["seed"] == 3 and entry["notes"]
    assert {"config.json", "results.json", "results.md", "metrics.jsonl", "command.sh", "entry.json"} <= {p.name for p in e.iterdir()}
    assert entry["summary"]["forward_nme"] == res["rows"][-1]["forward_nme"]
    # the overrides rebuild the same config
    c = load_json(run / "config.json")
    ov = config_overrides(c)
    assert ov == {"stage0_M": 6, "stage1": {"margin": 0.6}, "stage2": {"iters": 4}}
    again = experiment_config("aflw", "test", overrides=ov, seed=3, data_root=str(root))
    assert again.result_digest() == cfg.result_digest()
    # README: explanation + one table between the markers; the table for the project README links under results/
    readme = (reg / "README.md").read_text()
    assert readme.startswith("# Results registry") and readme.count(REGISTRY_START) == 1 and "[aflw-test-s3](aflw-test-s3/)" in readme
    assert "[aflw-test-s3](results/aflw-test-s3/)" in registry_table(reg, link_prefix="results/")
    # run the recorded command (from a scratch copy of the layout: runs/ is relative to the repository root)
    cmd = entry["command"]
    assert (e / "command.sh").read_text().strip().endswith(cmd)
    assert cmd.startswith("mkdir -p runs/aflw-test-s3 && papermill nbs/10_train.ipynb runs/aflw-test-s3/10_train.ipynb --cwd nbs")
    cmd = cmd.replace("runs/aflw-test-s3", str(tmp_path / "rerun")).replace("../" + str(tmp_path), str(tmp_path))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-c", cmd + " --no-progress-bar"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    res2 = load_json(tmp_path / "rerun" / "eval" / "results.json")
    assert [x["method"] for x in res2["rows"]] == [x["method"] for x in res["rows"]]
    np.testing.assert_allclose([x["forward_nme"] for x in res2["rows"]], [x["forward_nme"] for x in res["rows"]], rtol=1e-4)
    assert ExperimentConfig.from_dict(load_json(tmp_path / "rerun" / "config.json")).result_digest() == cfg.result_digest()
    # registering twice needs overwrite
    with pytest.raises(ConfigError, match="already registered"):
        register_run(run, "aflw-test-s3", registry=reg)
    register_run(run, "aflw-test-s3", registry=reg, overwrite=True)
    assert [x["name"] for x in registry_entries(reg)] == ["aflw-test-s3"]


def test_registry_copies_timing(tmp_path):
    "A run's timing.json (wall time per phase and attempt) is copied next to results.json; a run without one still registers."
    import json
    from unsupervised_landmarks.pipeline import experiment_config
    src = tmp_path / "run"; (src / "eval").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps(experiment_config("synthheads", "test").to_dict()))
    (src / "eval" / "results.json").write_text(json.dumps({"K": 3, "rows": [{"method": "stage 2 detector", "forward_nme": 0.1}]}))
    timing = {"attempts": [{"attempt": 1, "started": "2026-01-01T00:00:00", "total_seconds": 12.5,
                            "phases": [{"phase": "data", "start": 0.0, "seconds": 2.0}]}]}
    (src / "timing.json").write_text(json.dumps(timing))
    e = register_run(src, "timed", registry=tmp_path / "reg")
    assert load_json(e / "timing.json") == timing and "timing.json" in load_json(e / "entry.json")["files"]
    (src / "timing.json").unlink()
    e = register_run(src, "untimed", registry=tmp_path / "reg")
    assert not (e / "timing.json").exists() and "timing.json" not in load_json(e / "entry.json")["files"]
