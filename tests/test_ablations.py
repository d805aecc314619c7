"""The ablations module: the sweep runner (papermill grid, resume, collected table, CLI) on a toy notebook, and the four
ablation notebooks end to end through papermill on the test preset (SynthHeads), with resume."""
import json, subprocess, sys
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest

from unsupervised_landmarks.core import load_json, save_json, ConfigError
from unsupervised_landmarks.ablations import run_sweep, collect_sweep, grid_points, run_names, register_run

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"

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
    cmd = [sys.executable, "-c", "import sys; from unsupervised_landmarks.ablations import sweep_cli; sys.exit(sweep_cli())",
           "--notebook", str(nb), "--grid", f"@{tmp_path / 'grid.json'}", "--out", str(tmp_path / "cli"),
           "--params", json.dumps({"log": str(log), "fail_flag": str(flag)})]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1, r.stderr                     # a=2 failed
    assert "| a-1 | 1 | done |" in r.stdout and "| a-2 | 2 | failed |" in r.stdout
    flag.unlink()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "| a-1 | 1 | cached |" in r.stdout, r.stdout + r.stderr



@pytest.fixture(scope="module")
def env(tmp_path_factory):
    "One generated SynthHeads cache for the module; one torch thread in the kernels (tiny nets, loaded machine)."
    mp = pytest.MonkeyPatch()
    mp.setenv("UL_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    mp.setenv("OMP_NUM_THREADS", "1")
    mp.delenv("IN_TEST", raising=False)
    yield tmp_path_factory.mktemp("ablations")
    mp.undo()


def run_nb(name: str, out: Path, **params) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NBS / name), str(out / name), parameters={"preset": "test", "out_dir": str(out), **params},
                        cwd=str(NBS), progress_bar=False, kernel_name="python3")
    res = load_json(out / "results.json")
    assert res["notebook"] == name and res["preset"] == "test" and res["dataset"] == "synthheads"
    assert (out / res["figure"]).stat().st_size > 1000
    return res


def test_nmi_vs_clusters_via_sweep(env):
    "21 runs as one point of a sweep (the sweep passes out_dir); a second sweep call reads it back without running."
    t = run_sweep(NBS / "21_nmi_vs_clusters.ipynb", {"Ms": [[3, 6]]}, env / "sweep21", base_params={"preset": "test"},
                  log=lambda s: None)
    assert [r["status"] for r in t] == ["done", "done"] and [r["M"] for r in t] == [3, 6]
    res = load_json(env / "sweep21" / "Ms-3-6" / "results.json")
    assert res["ablation"] == "nmi_vs_clusters" and res["n_landmarks"] > 0 and "best NMI" in res["summary"]
    for r in res["rows"]:
        assert len(r["history"]) == 3 and all(0 <= r[k] <= 1 for k in ("nmi", "det_f", "test_nmi", "test_det_f", "stage0_nmi"))
        assert (env / "sweep21" / "Ms-3-6" / "points" / f"M-{r['M']}" / "stage1" / "round_02" / "done.json").is_file()
    t2 = run_sweep(NBS / "21_nmi_vs_clusters.ipynb", {"Ms": [[3, 6]]}, env / "sweep21", base_params={"preset": "test"},
                   log=lambda s: None)
    assert [r["status"] for r in t2] == ["cached", "cached"] and [r["nmi"] for r in t2] == [r["nmi"] for r in t]


def test_noise_robustness(env):
    out = env / "22"
    res = run_nb("22_noise_robustness.ipynb", out)
    rows = res["rows"]
    assert [(r["fraction"], r["n_noise"]) for r in rows] == [(0.5, 0), (1.0, 0)]       # the test grid
    L = res["n_landmarks"]
    assert [r["n_landmarks_used"] for r in rows] == [round(0.5 * L), L]
    assert all(0 <= r["nmi"] <= 1 and 0 <= r["det_f"] <= 1 for r in rows)
    assert "NMI" in res["summary"]
    cfg = load_json(out / "points" / "M-8_noise-0_fraction-1" / "config.json")
    assert cfg["initializer"] == "gt_noise" and cfg["initializer_args"]["desc"] == "sift"
    # resume: the same call finds every point finished and reproduces the numbers
    res2 = run_nb("22_noise_robustness.ipynb", out)
    assert [r["nmi"] for r in res2["rows"]] == [r["nmi"] for r in rows]
    # the ablation registers with a command that names the notebook and its parameters
    e = register_run(out, "noise-test", registry=env / "registry")
    cmd = load_json(e / "entry.json")["command"]
    assert "papermill nbs/22_noise_robustness.ipynb" in cmd and '"desc": "sift"' in cmd and '"preset": "test"' in cmd


def test_equivariance(env):
    res = run_nb("23_equivariance.ipynb", env / "23")
    rows = {r["pairing"]: r for r in res["rows"]}
    assert list(rows) == ["clustering", "equivariance"]
    for r in rows.values():
        assert [h["round"] for h in r["history"]] == [0, 1, 2] and all(0 <= h["nmi"] <= 1 for h in r["history"])
    assert len({r["history"][0]["nmi"] for r in rows.values()}) == 1                                # same stage 0
    cfgs = {p: load_json(env / "23" / "points" / p / "stage1" / "config.json") for p in rows}
    assert {p: c["pairing"] for p, c in cfgs.items()} == {"clustering": "clustering", "equivariance": "equivariance"}


def test_initializers(env):
    res = run_nb("24_initializers.ipynb", env / "24", initializers=["sift", "gt_noise"])
    assert [r["initializer"] for r in res["rows"]] == ["sift", "gt_noise"]
    for r in res["rows"]:
        assert np.isfinite(r["forward_nme"]) and np.isfinite(r["stage1_forward_nme"]) and r["K"] >= 0
        assert (env / "24" / "points" / r["initializer"] / "eval" / "results.json").is_file()
    # superpoint without weights is not added; asking for it explicitly fails with the explanation
    with pytest.raises(pm.PapermillExecutionError, match="superpoint_weights"):
        run_nb("24_initializers.ipynb", env / "24sp", initializers=["superpoint"])
