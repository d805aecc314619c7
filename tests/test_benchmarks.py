"benchmarks/paper_size_run.py: its schedule arithmetic by hand, and a --quick run end to end on the `test` preset."
import importlib.util, json, os, subprocess, sys
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "paper_size_run.py"


@pytest.fixture(scope="module")
def psr():
    spec = importlib.util.spec_from_file_location("paper_size_run", SCRIPT)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_merge_schedule_by_hand(psr):
    # the official stage 2: every 2 epochs of 160,000 images at 32 x 2 = 64 -> every 5,000 iterations, from 25k to 80k
    s2 = NS(merge_every_epochs=2, merge_every=123, batch=32, accum=2)
    assert psr.merge_interval_iters(s2, 160_000) == 5000
    assert psr.merge_interval_iters(NS(merge_every_epochs=None, merge_every=7, batch=4), 10) == 7
    assert psr.merge_interval_iters(NS(merge_every=7, batch=4), 10) == 7          # a config without the field
    steps = psr.merge_iters(80_000, 25_000, 5000)
    assert steps[0] == 25_000 and steps[-1] == 75_000 and len(steps) == 11
    assert psr.merge_iters(6, 0, 2) == [2, 4]                                     # never before iteration 0


def test_cut_overrides_by_hand(psr):
    full = NS(stage1=NS(warmup_iters=20_000, round_iters=10_000, rounds=30, lr_step=2000),
              stage2=NS(iters=80_000, merge_warmup=25_000, merge_every=5000, merge_every_epochs=2, batch=32, accum=2,
                        lr_milestones=(50_000, 65_000)))
    ov, missing = psr.cut_overrides(full, warmup=200, rounds=2, round_iters=100, iters2=300, n_full=160_000)
    assert ov["stage1"] == {"warmup_iters": 200, "round_iters": 100, "rounds": 3, "lr_step": 20}
    # 300/80000 of: 25,000 -> 93.75; 5,000 -> 18.75; 50,000 -> 187.5; 65,000 -> 243.75
    assert ov["stage2"] == {"iters": 300, "merge_warmup": 94, "merge_every": 19, "merge_every_epochs": None,
                            "lr_milestones": (188, 244)}
    assert missing == []
    old = NS(stage1=NS(warmup_iters=900, round_iters=400, rounds=4),               # fields not (yet) in a preset
             stage2=NS(iters=1600, merge_warmup=800, merge_every=400, batch=12))
    ov, missing = psr.cut_overrides(old, warmup=10, rounds=1, round_iters=5, iters2=16, n_full=100)
    assert ov["stage2"] == {"iters": 16, "merge_warmup": 8, "merge_every": 4}
    assert set(missing) == {"stage1.lr_step", "stage2.merge_every_epochs", "stage2.lr_milestones", "stage2.accum"}


def test_quick_run_test_preset(tmp_path, data_tmp):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--preset", "test", "--initializer", "superpoint",
                        "--out", str(out), "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "RANDOM weights" in r.stdout and "PROJECTION" in r.stdout
    res = json.loads((out / "paper_size.json").read_text())
    cut = res["schedule"]["cut"]
    assert (cut["stage1_warmup_iters"], cut["stage1_round_iters"], cut["stage1_rounds"], cut["stage2_iters"]) == (2, 1, 2, 2)
    names = [p["phase"] for p in res["phases"]]
    for n in ("data (render + crop)", "stage 0 (keypoints + k-means)", "stage 1", "warm-up training", "round 2 training",
              "relabel 1", "relabel 2", "stage 2", "evaluation"):
        assert n in names, n
    assert all(p["seconds"] >= 0 for p in res["phases"])
    fl = res["flops"]
    assert fl["stage1_step"] > 2 * fl["stage1_forward_per_image"] > 0          # 4 images, forward + backward
    assert fl["stage2_step"] > fl["stage2_forward_per_image"] > 0 and fl["superpoint_per_image"] > 0
    m = res["measured"]
    assert m["stage1_iters"] == 3 and m["stage1_steps_timed"] == 2 and m["stage2_steps_timed"] == 1
    assert m["stage1_s_per_iter"] > 0 and m["stage2_s_per_iter"] > 0
    pr = res["projection"]
    assert pr["gpu_from_flops"]["total_s"] > 0 and pr["from_measured_times"]["total_s"] > 0
    assert res["max_rss_mib"] > 0 and res["default_run_estimate"]["total_s"] > 0


def test_help_and_defaults(psr, capsys):
    with pytest.raises(SystemExit) as e: psr.parse_args(["--help"])       # help strings format (a bare % breaks them)
    assert e.value.code == 0 and "--gpu-tflops" in capsys.readouterr().out
    a = psr.parse_args(["--device", "cpu"])
    assert (a.n_train, a.n_test, a.warmup, a.rounds, a.round_iters, a.stage2_iters) == (1000, 200, 200, 2, 100, 300)
    q = psr.parse_args(["--quick", "--device", "cpu", "--n-train", "20"])
    assert (q.n_train, q.warmup, q.stage2_iters) == (20, 2, 2)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_clustering_scale_small_run(capsys):
    "benchmarks/clustering_scale.py end to end on 8,000 descriptors, the approximate outlier search switched on."
    cs = _load("clustering_scale")
    s = cs.main(["--images", "400", "--per-image", "20", "--M", "10", "--max-sample", "2000", "--approx-above", "1000",
                 "--ref-iters", "30"])
    out = capsys.readouterr().out
    for key in ("outliers_s", "outliers_exact_s", "jaccard", "ref_kept", "kmeans_s", "inertia", "inertia_ref",
                "sklearn_s", "inertia_sklearn"):
        assert key in s, key
    assert s["jaccard"] > 0.95 and s["ref_kept"] > 0.95
    assert 0.9 < s["inertia"] / s["inertia_ref"] < 1.1 and 0.9 < s["inertia"] / s["inertia_sklearn"] < 1.1
    for text in ("outlier removal", "kept set vs exact", "Jaccard", "ratio", "target", "ours / sklearn"):
        assert text in out, text


def test_svt_speed_prints_ratio_and_same_answer(capsys):
    sv = _load("svt_speed")
    sv.main(["--images", "60", "--K", "4", "--missing", "0.2", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "svt_complete" in out and "svt_official" in out
    if sv.load_svt_solve() is not None:                       # matrix-completion is a dev requirement
        assert "speed-up over svt_solve" in out and "gives svt_solve's answer: True" in out


def test_hourglass_speed_against_matmul_peak(capsys):
    hs = _load("hourglass_speed")
    rows = hs.main(["--presets", "test", "--batch", "1", "--steps", "1"])
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "of the matmul peak" in out and "at the matmul peak" in out
    (r,) = rows
    assert r["preset"] == "test" and r["s_per_step"] > 0 and r["peak_gflops"] > 0
    assert 0 < r["fraction_of_peak"] == r["gflops"] / r["peak_gflops"]
