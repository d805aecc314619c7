"Sweep runner (papermill grid, resume, collected table, CLI) and the results registry on a test-preset run."
import json, os, shlex, subprocess, sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from unsupervised_landmarks.core import load_json, save_json, ConfigError
from unsupervised_landmarks.sweep import (run_sweep, collect_sweep, grid_points, run_names, register_run, registry_table,
                                          registry_entries, config_overrides, reproduce_command, REGISTRY_START)

ROOT = Path(__file__).resolve().parents[1]

BODY = """
import json, os, pathlib
out = pathlib.Path(out_dir)
with open(log, "a") as f: f.write(f"{a},{b}\\n")                     # one line per execution
if os.path.exists(fail_flag) and a == 2: raise RuntimeError("flag says fail")
rows = [{"method": "m1", "score": a * 10 + len(b)}, {"method": "m2", "score": -a}]
(out / "results.json").write_text(json.dumps({"rows": rows, "note": "ok"}))
"""


def make_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    p = nbformat.v4.new_code_cell('a = 1\nb = "x"\nout_dir = None\nlog = None\nfail_flag = ""\nresume = False')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(BODY)]
    nbformat.write(nb, str(path))
    return path


def executions(log: Path) -> list:
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def toy(tmp_path):
    return make_notebook(tmp_path / "toy.ipynb"), tmp_path / "log.txt", tmp_path / "fail.flag"


def test_sweep_resume_and_table(tmp_path, toy):
    nb, log, flag = toy
    out = tmp_path / "sweep"
    grid = {"a": [1, 2, 3], "b": ["x", "yy"]}
    base = {"log": str(log), "fail_flag": str(flag)}
    names = run_names(grid_points(grid))
    # a sweep killed after one finished run and in the middle of another: 'a-1_b-x' has its results, 'a-1_b-yy' only
    # its folder and a 'running' record
    save_json({"rows": [{"method": "m1", "score": 999}]}, out / "a-1_b-x" / "results.json")
    save_json({"status": "running", "params": {}}, out / "a-1_b-yy" / "sweep_run.json")
    flag.write_text("x")                                   # and the a=2 runs fail this time
    t = run_sweep(nb, grid, out, base_params=base, log=lambda s: None)
    ran = executions(log)
    assert "1,x" not in ran and sorted(ran) == sorted(["1,yy", "2,x", "2,yy", "3,x", "3,yy"])
    assert t.failed == ["a-2_b-x", "a-2_b-yy"]
    assert "RuntimeError: flag says fail" in [r for r in t if r["run"] == "a-2_b-x"][0]["error"]
    # the collected table: 2 rows per finished run, 1 per finished-by-hand run, 1 per failed run; grid values in front
    assert len(t) == 1 + 2 * 3 + 2
    assert t[0] == {"run": "a-1_b-x", "a": 1, "b": "x", "status": "cached", "method": "m1", "score": 999, "seconds": None}
    r = [r for r in t if r["run"] == "a-3_b-yy"]
    assert [(x["method"], x["score"], x["status"]) for x in r] == [("m1", 32, "done"), ("m2", -3, "done")]
    assert (out / "a-3_b-yy" / "toy.ipynb").is_file() and not (out / "a-1_b-x" / "toy.ipynb").exists()
    assert load_json(out / "a-3_b-yy" / "sweep_run.json")["params"]["resume"] is True   # the notebook has a 'resume' parameter
    saved = load_json(out / "sweep.json")
    assert len(saved["rows"]) == len(t) and saved["columns"][:4] == ["run", "a", "b", "status"]
    md = (out / "sweep.md").read_text()
    assert md.count("| a-") == len(t) and "| note |" not in md.splitlines()[4]          # 'rows' wins over top-level fields
    # rerun after fixing the cause: only the failed runs execute
    flag.unlink(); log.unlink()
    t2 = run_sweep(nb, grid, out, base_params=base, log=lambda s: None)
    assert sorted(executions(log)) == ["2,x", "2,yy"] and not t2.failed
    assert {r["status"] for r in t2 if r["a"] != 2} == {"cached"} and {r["status"] for r in t2 if r["a"] == 2} == {"done"}
    assert len(collect_sweep(out)) == 2 * 6 - 1 and {r["status"] for r in collect_sweep(out)} == {"done"}


def test_sweep_errors(tmp_path, toy):
    nb, log, flag = toy
    with pytest.raises(ConfigError, match=r"no parameter\(s\) \['zz'\]"):
        run_sweep(nb, {"zz": [1]}, tmp_path / "s")
    with pytest.raises(ConfigError, match="set by the sweep"):
        run_sweep(nb, {"out_dir": ["x"]}, tmp_path / "s")
    nb2 = tmp_path / "noparams.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), str(nb2))
    with pytest.raises(ConfigError, match="no cell tagged 'parameters'"):
        run_sweep(nb2, {"x": [1]}, tmp_path / "s")
    with pytest.raises(FileNotFoundError):
        run_sweep(tmp_path / "missing.ipynb", {"a": [1]}, tmp_path / "s")
    assert not (tmp_path / "s").exists()                  # nothing was started


def test_cli(tmp_path, toy):
    nb, log, flag = toy
    flag.write_text("x")
    (tmp_path / "grid.json").write_text('{"a": [1, 2]}')
    cmd = [sys.executable, "-c", "import sys; from unsupervised_landmarks.sweep import sweep_cli; sys.exit(sweep_cli())",
           "--notebook", str(nb), "--grid", f"@{tmp_path / 'grid.json'}", "--out", str(tmp_path / "cli"),
           "--params", json.dumps({"log": str(log), "fail_flag": str(flag)})]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1, r.stderr                     # a=2 failed
    assert "| a-1 | 1 | done |" in r.stdout and "| a-2 | 2 | failed |" in r.stdout
    flag.unlink()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "| a-1 | 1 | cached |" in r.stdout, r.stdout + r.stderr


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
