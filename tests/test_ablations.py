"The four ablation notebooks run end to end through papermill on the test preset (SynthHeads), and resume."
import json
from pathlib import Path

import numpy as np
import papermill as pm
import pytest

from unsupervised_landmarks.core import load_json
from unsupervised_landmarks.sweep import run_sweep, register_run

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"


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
    assert list(rows) == ["clustering", "equivariance", "equivariance+clustering"]
    for r in rows.values():
        assert [h["round"] for h in r["history"]] == [0, 1, 2] and all(0 <= h["nmi"] <= 1 for h in r["history"])
    assert len({r["history"][0]["nmi"] for r in rows.values()}) == 1                                # same stage 0
    cfgs = {p: load_json(env / "23" / "points" / p / "stage1" / "config.json") for p in rows}
    assert {p: (c["pairing"], c.get("warmup_pairing")) for p, c in cfgs.items()} == {
        "clustering": ("clustering", None), "equivariance": ("equivariance", None),
        "equivariance+clustering": ("clustering", "equivariance")}


def test_initializers(env):
    res = run_nb("24_initializers.ipynb", env / "24", initializers=["sift", "gt_noise"])
    assert [r["initializer"] for r in res["rows"]] == ["sift", "gt_noise"]
    for r in res["rows"]:
        assert np.isfinite(r["forward_nme"]) and np.isfinite(r["stage1_forward_nme"]) and r["K"] >= 0
        assert (env / "24" / "points" / r["initializer"] / "eval" / "results.json").is_file()
    # superpoint without weights is not added; asking for it explicitly fails with the explanation
    with pytest.raises(pm.PapermillExecutionError, match="superpoint_weights"):
        run_nb("24_initializers.ipynb", env / "24sp", initializers=["superpoint"])
