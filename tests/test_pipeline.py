"End-to-end runs of the experiment notebook through papermill (test preset), and dataset selection by parameter."
import json, time
from pathlib import Path

import numpy as np
import papermill as pm
import pytest

from unsupervised_landmarks.data import FIXTURES, load_dataset

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "nbs" / "10_train.ipynb"


def _run(tmp_path, **params):
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NB), str(out), parameters=params, cwd=str(ROOT / "nbs"), progress_bar=False, kernel_name="python3")
    return out


def _check_run_dir(run: Path, dataset: str):
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["dataset"] == dataset and cfg["preset"] == "test"
    for f in ["metrics.jsonl", "stage0/labels.npz", "stage1/round_00/labels.npz", "stage1/round_02/done.json",
              "checkpoints/stage1_final.pt", "checkpoints/stage2_final.pt", "eval/results.json", "figures/landmarks.png"]:
        assert (run / f).is_file(), f
    res = json.loads((run / "eval" / "results.json").read_text())
    methods = [r["method"] for r in res["rows"]]
    assert methods == ["mean shape", "stage 0 labels", "stage 1 labels", "stage 2 detector"]
    assert all(np.isfinite(r["forward_nme"]) for r in res["rows"])
    return cfg, res


def _last_output(nb: Path) -> str:
    "The text the notebook's last cell printed."
    text = lambda t: "".join(t) if isinstance(t, list) else t
    return "".join(text(o.get("text", "")) for o in json.loads(nb.read_text())["cells"][-1]["outputs"])


def _check_timing(run: Path, n_attempts: int) -> list:
    """run/timing.json: `n_attempts` attempts; in each, positive times, sub-phases within their phase, and the top-level
    phases adding up to the attempt's total (the time outside them is small)."""
    att = json.loads((run / "timing.json").read_text())["attempts"]
    assert [a["attempt"] for a in att] == list(range(1, n_attempts + 1))
    for a in att:
        assert a["finished"] is not None and a["total_seconds"] > 0 and a["started"][:2] == "20"
        ph = {e["phase"]: e for e in a["phases"]}
        assert len(ph) == len(a["phases"]) and all(e["seconds"] > 0 for e in a["phases"]), a["phases"]
        for p, e in ph.items():                                   # sub-phases: within their phase
            kids = [k["seconds"] for k in a["phases"] if k["depth"] == e["depth"] + 1 and k["phase"].startswith(p + " / ")]
            assert sum(kids) <= e["seconds"] + 1e-6, (p, kids, e)
            if " / " in p: assert p.rsplit(" / ", 1)[0] in ph, p
        top = sum(e["seconds"] for e in a["phases"] if e["depth"] == 0)
        assert 0.85 * a["total_seconds"] <= top <= a["total_seconds"] + 1e-6, (top, a["total_seconds"])
    return att


# the phases of the test preset: stage 1 has a warm-up and one round (2 relabels), stage 2 merges twice
_STAGE_PHASES = ["data", "data / train split", "data / test split", "stage 0", "stage 0 / keypoints", "stage 0 / clustering",
                 "stage 1", "stage 1 / phase 1 training (warm-up)", "stage 1 / relabel 1", "stage 1 / relabel 1 / network pass",
                 "stage 1 / relabel 1 / clustering", "stage 1 / relabel 1 / metrics", "stage 1 / phase 2 training",
                 "stage 1 / relabel 2", "stage 2", "stage 2 / training", "stage 2 / merge pass 1", "stage 2 / merge pass 2",
                 "stage 2 / visibility and shape", "evaluation", "evaluation / stage-0 labels of the test images",
                 "evaluation / stage-1 labels of the test images", "evaluation / detector on the training and test images"]


def test_train_notebook_synthheads(tmp_path, data_tmp, monkeypatch):
    run = tmp_path / "run"
    now = time.time()                                  # as under `make train`, whose install ran just before
    (tmp_path / "install").write_text(f"{now - 3}\n{now - 1}\n")
    monkeypatch.setenv("UL_TRAIN_START", str(now - 0.5)); monkeypatch.setenv("UL_INSTALL_TIME", str(tmp_path / "install"))
    out = _run(tmp_path, preset="test", run_dir=str(run), resume=False)
    cfg, res = _check_run_dir(run, "synthheads")
    att = _check_timing(run, 1)[0]                     # the phases, their times, and the table printed at the end
    names = [e["phase"] for e in att["phases"]]
    assert names[:2] == ["environment (make install)", "start-up (papermill, imports, checks)"] and "figures" in names
    assert set(_STAGE_PHASES) <= set(names), set(_STAGE_PHASES) - set(names)
    assert abs(att["phases"][0]["seconds"] - 2) < 1e-3 and att["environment"]["in_this_attempt"] and att["preset"] == "test"
    assert att["phases"][1]["seconds"] > 0.5 and att["total_seconds"] > att["phases"][1]["start"] + att["phases"][1]["seconds"]
    last = _last_output(out)
    assert "attempt 1" in last and "  relabel 1" in last and "    network pass" in last and "merge pass 2" in last, last
    assert res["per_yaw"]["stage 2 detector"] is not None         # SynthHeads has yaw: NME per yaw bin is reported
    cc = res["methods"]["stage 2 detector"]["consistency"]         # and correspondence per channel and yaw bin
    K = res["K"]
    assert len(cc["landmark"]) == K and np.array(cc["per_bin"]["share"]).shape == (K, 6)
    row = res["rows"][-1]
    assert 0 <= row["holding"] <= K and (np.isnan(row["consistency"]) or 0 <= row["consistency"] <= 1)
    assert (run / "figures" / "consistency.png").is_file()
    # SynthHeads: correspondence checked in 3D; ground-truth landmarks sit still on the head (identity variation only)
    ref = res["surface_reference"]["ground truth landmarks"]
    assert ref["mean"] < 0.15 and res["surface_reference"]["unit"] > 0
    assert all("spread3d" in r for r in res["rows"][1:]) and 0 <= row["holding3d"] <= K
    assert all(0 <= r["holding3d"] + r["sliding3d"] <= r.get("K", 10 ** 6) for r in res["rows"][1:])   # disjoint counts
    assert np.array(res["methods"]["stage 2 detector"]["surface"]["per_bin"]["spread"]).shape == (K, 6)
    # the head's mirror twin: ground-truth landmarks never sit on it; every method reports the twin columns
    assert ref["mirror"]["holding"] >= ref["holding"] and np.nanmax(ref["mirror"]["share"]) < 0.05
    assert all(0 <= r["holding3d"] <= r["holding3d_mirror"] <= r["K"] for r in res["rows"][1:] if "K" in r)
    assert all(np.isnan(r["twin_share"]) or 0 <= r["twin_share"] <= 1 for r in res["rows"][1:])
    # the yaw interval each channel holds over, and the failures only where the channel's part is hidden
    assert all(np.isnan(r["span3d"]) or 0 <= r["span3d"] <= 180 for r in res["rows"][1:])
    assert all(0 <= r["holding3d"] + r["would_hold3d"] <= r["K"] for r in res["rows"][1:] if "K" in r)
    hid = res["methods"]["stage 2 detector"]["surface"]["hidden"]
    assert len(hid["landmark"]) == K and np.array(hid["fails_hidden"]).shape == (K, 6)
    # the stage-1 descriptor alone: prototype matches across yaw, a share within tolerance per bin
    dm = res["descriptor_matching"]
    assert 0 <= dm["share"] <= 1 and dm["n"] > 0 and len(dm["per_bin"]["share"]) == 6
    assert all(np.isnan(x) or 0 <= x <= 1 for x in dm["per_bin"]["share"])
    # a second call with resume=True finds every stage finished and reproduces the results
    monkeypatch.delenv("UL_TRAIN_START"); monkeypatch.delenv("UL_INSTALL_TIME")
    out = _run(tmp_path, preset="test", run_dir=str(run), resume=True)
    res2 = json.loads((run / "eval" / "results.json").read_text())
    assert [r["forward_nme"] for r in res2["rows"]] == [r["forward_nme"] for r in res["rows"]]
    a2 = _check_timing(run, 2)[1]                      # the second attempt: nothing left to train
    ph = {e["phase"]: e for e in a2["phases"]}
    assert "environment (make install)" not in ph and "stage 1 / phase 1 training (warm-up)" not in ph and "evaluation" in ph
    assert ph["stage 0"]["notes"] == {"loaded": "from the run folder"} and ph["stage 1"]["notes"] == {"resumed": "after its last phase"}
    last = _last_output(out)
    assert "attempt 1" in last and "attempt 2" in last


def test_dataset_parameter_reaches_loader(tmp_path):
    "-p dataset aflw -p data_root DIR trains on that loader's images (the fixture's 6 training images)."
    root = tmp_path / "aflw"
    info = FIXTURES["aflw"](root)
    run = tmp_path / "run"
    _run(tmp_path, dataset="aflw", data_root=str(root), preset="test", run_dir=str(run), resume=False)
    cfg, res = _check_run_dir(run, "aflw")
    n_train = info["sizes"][("aflw", "train")]
    from unsupervised_landmarks.core import PointTable
    assert PointTable.load(run / "stage0" / "labels.npz").n_images == n_train
    assert res["rows"][0]["n_test"] == info["sizes"][("aflw", "test")]
    assert "surface_reference" not in res and "spread3d" not in res["rows"][-1]     # no 3D surface points: no 3D measures


@pytest.mark.parametrize("dataset", ["celeba", "ls3d", "h36m", "bbcpose", "cats"])
def test_missing_data_root_fails_fast(tmp_path, dataset):
    t = time.time()
    with pytest.raises(pm.PapermillExecutionError) as e:
        _run(tmp_path, dataset=dataset, data_root=str(tmp_path / "nothing_here"), preset="test", run_dir=str(tmp_path / "r"))
    assert time.time() - t < 60
    assert "DatasetError" in str(e.value) and "nothing_here" in str(e.value)
    assert not (tmp_path / "r" / "stage0").exists()        # nothing ran


def test_run_experiment_resumes_its_own_run(tmp_path):
    "run_experiment records the resolved crop without changing the config it compares on resume."
    from unsupervised_landmarks.pipeline import experiment_config, run_experiment
    from unsupervised_landmarks.core import ConfigError
    root = tmp_path / "aflw"; FIXTURES["aflw"](root)
    cfg = experiment_config("aflw", "test", data_root=str(root))
    a = run_experiment(cfg, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["crop_enlarge"] == a.train.enlarge
    b = run_experiment(cfg, tmp_path / "run", resume=True, progress=False)
    assert [r["forward_nme"] for r in a.results["rows"]] == [r["forward_nme"] for r in b.results["rows"]]
    att = _check_timing(tmp_path / "run", 2)           # run_experiment times its phases too, one attempt per call
    assert set(_STAGE_PHASES) <= {e["phase"] for e in att[0]["phases"]} and b.timing == att
    with pytest.raises(ConfigError, match="another config"):
        run_experiment(experiment_config("aflw", "test", data_root=str(root), seed=1), tmp_path / "run", resume=True, progress=False)


def test_oracle_stage0_tool(tmp_path, data_tmp, root):
    """tools/oracle_stage0.py (a positive control, never the method) swaps a run's stage-0 labels for the visible
    annotated landmarks, and the pipeline resumes from them: stage 1's round 0 has the perfect NMI."""
    import importlib.util
    from unsupervised_landmarks.core import PointTable
    from unsupervised_landmarks.pipeline import experiment_config, run_experiment
    spec = importlib.util.spec_from_file_location("oracle_stage0", root / "tools" / "oracle_stage0.py")
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    ov = {"stage1": {"M": 20}}                                       # one cluster per landmark at least
    run = tmp_path / "run"
    with pytest.raises(Exception, match="M >= 20"): tool.main([str(run), "--preset", "test"])   # the test preset's M=8
    assert not (run / "stage0").exists()
    assert tool.main([str(run), "--preset", "test", "--overrides", json.dumps(ov)]) == 0
    done = json.loads((run / "stage0" / "done.json").read_text())
    assert done["oracle"] is True and "thresholds" in done
    res = run_experiment(experiment_config("synthheads", "test", ov), run, resume=True, progress=False)
    lab = PointTable.load(run / "stage0" / "labels.npz")
    vis = res.train.visible
    assert len(lab) == vis.sum() and np.array_equal(np.sort(np.unique(lab["cluster"])), np.flatnonzero(vis.any(0)))
    assert np.allclose(lab.xy, res.train.landmarks[vis])           # image by image, landmark order
    r0 = json.loads((run / "stage1" / "round_00" / "done.json").read_text())
    assert r0["nmi"] > 0.999
    assert tool.main([str(run), "--preset", "test"]) == 2           # stage 1 has started: refuses


def test_stage0_slope_tool(tmp_path, data_tmp, root, capsys):
    """tools/stage0_slope.py scores the preset's stage-0 clusters and re-described variants in 3D on SynthHeads; the
    ground-truth landmarks, which are parts of the head, do not slide."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("stage0_slope", root / "tools" / "stage0_slope.py")
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    with pytest.raises(SystemExit, match="CHANNELS:SIZE:WEIGHTS"): tool.parse_variant("gray")
    with pytest.raises(SystemExit, match="one weight per channel set"): tool.parse_variant("gray+chroma:8:1")
    with pytest.raises(SystemExit, match="channels from"): tool.parse_variant("hue:8:1")
    assert tool.parse_variant("gray+chroma:8:1+0.5") == (["gray", "chroma"], 8.0, [1.0, 0.5])
    img = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    skin = np.array([200, 150, 120], np.float32)                        # one colour, bright and in shadow
    lit, dark = (tool.channels(np.full((4, 4, 3), skin * f, np.uint8), "chroma") for f in (1.0, 0.5))
    assert all(a.dtype == np.uint8 and np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(lit, dark))   # shading-free
    assert np.abs(tool.channels(np.full((4, 4, 3), skin, np.uint8), "gray")[0].astype(int)
                  - tool.channels(np.full((4, 4, 3), skin * 0.5, np.uint8), "gray")[0]).min() > 50       # intensity is not
    assert len(tool.channels(img, "opp")) == 2 and len(tool.channels(img, "gray")) == 1
    assert tool.parse_variant("hp1.5:6:1") == (["hp1.5"], 6.0, [1.0])
    with pytest.raises(SystemExit, match="channels from"): tool.parse_variant("hp0:8:1")
    ramp = np.repeat(np.tile(np.linspace(60, 200, 32), (32, 1))[..., None], 3, -1).astype(np.uint8)   # smooth shading
    assert np.abs(tool.channels(ramp, "hp2")[0][8:24, 8:24].astype(int) - 128).max() <= 2             # removed
    out = tmp_path / "s.json"
    assert tool.main(["--preset", "test", "--overrides", json.dumps({"n_test": 96}), "--variant", "gray+chroma:8:1+1",
                      "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 2 and "gray+chroma:8:1+1" in rows
    for r in rows.values():
        assert 0 <= r["nmi"] <= 1 and 0 <= r["f_measure"] <= 1 and r["spread3d"] > 0 and 0 <= r["holding3d"] <= 8
    gt = rows["gray+chroma:8:1+1"]["gt_x_slope"]
    assert gt is not None and gt < 0.1                                  # annotated parts stay put as the head turns
    assert "|x slope|" in capsys.readouterr().out


def test_shape_grid_tool(tmp_path, data_tmp, root, capsys):
    """tools/shape_grid.py scores the rigid-shape check of a finished SynthHeads run on the val split for a grid of
    (tol, view): the unchecked detector first, then one row per setting; a check only removes detections."""
    import importlib.util
    import torch
    from unsupervised_landmarks.pipeline import experiment_config, run_experiment
    spec = importlib.util.spec_from_file_location("shape_grid", root / "tools" / "shape_grid.py")
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    run = tmp_path / "run"
    run_experiment(experiment_config("synthheads", "test"), run, progress=False)
    ck_path = run / "checkpoints" / "stage2_final.pt"                 # the test preset's detector hardly fires:
    ck = torch.load(ck_path, weights_only=True); ck["visibility_threshold"] = -1.0   # let every channel fire
    torch.save(ck, ck_path)
    assert len(json.loads(ck["channel_clusters"])) >= 4
    out = tmp_path / "g.json"
    assert tool.main([str(run), "--n-val", "48", "--tol", "0.1", "--view", "none", "0.4", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())[str(run)]
    assert rows[0]["tol"] is None and len(rows) == 3
    assert all(0 <= r["holding3d"] <= r["K"] and 0 <= r["visible_rate"] <= rows[0]["visible_rate"] for r in rows)
    if len(rows) == 3: assert rows[2]["visible_rate"] <= rows[1]["visible_rate"]   # the facing test only removes
    assert "holding3d" in capsys.readouterr().out
    with pytest.raises(SystemExit): tool.main([str(run), "--split", "train"])


def test_paper_preset_stage0_settings():
    "The paper preset's stage 0 is the official one; cpu and test keep the crop (the defaults)."
    from unsupervised_landmarks.pipeline import experiment_config, ExperimentConfig, PAPER_SUPERPOINT_ARGS
    for ds in ("celeba", "aflw", "ls3d", "h36m"):
        c = experiment_config(ds, "paper")
        assert c.initializer == "superpoint" and c.initializer_args == PAPER_SUPERPOINT_ARGS
        assert c.stage0_image == "full" and c.background_clusters == ((250, 100) if ds == "h36m" else None)
        assert ExperimentConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert PAPER_SUPERPOINT_ARGS == {"conf_thresh": 0.1, "nms_box": 12, "top_k": None, "border": 0}
    for p in ("cpu", "test"):
        c = experiment_config("synthheads", p)
        assert (c.stage0_image, c.background_clusters) == ("crop", None)
    # a config written before the options existed loads with today's behaviour
    d = experiment_config("synthheads", "cpu").to_dict(); d.pop("stage0_image"); d.pop("background_clusters")
    assert ExperimentConfig.from_dict(d) == experiment_config("synthheads", "cpu")


def test_stage0_on_full_images_with_background(tmp_path, data_tmp):
    """stage0_image='full': keypoints on the original renders mapped into the crops; with background_clusters the
    outside points feed the background k-means and every label lies in its crop's box."""
    from unsupervised_landmarks.pipeline import experiment_config, prepare_data, run_stage0, stage0_points, source_dataset
    from unsupervised_landmarks.keypoints import inside_box
    from unsupervised_landmarks.data import apply_affine
    base = experiment_config("synthheads", "test")
    train, test = prepare_data(base, progress=False)
    cfg = experiment_config("synthheads", "test", stage0_image="full")
    src = source_dataset(cfg, "train")
    assert src.images.shape[1] == 128 and train.images.shape[1] == 64          # the native renders, not the crops
    pts = stage0_points(cfg, train, progress=False)
    assert "inside" not in pts and all(inside_box(pts.points(i), train.boxes[i]).all() for i in range(len(train)))
    # the same points as detecting on the source and mapping by hand
    from unsupervised_landmarks.pipeline import make_initializer
    init, i = make_initializer(cfg), 5
    h, w = src.images.shape[1:3]
    r = init(src.images[i], np.array([0, 0, w, h], np.float32))
    xy = apply_affine(train.meta["crop_affine"][i], r["xy"]).astype(np.float32)
    np.testing.assert_allclose(pts.points(i), xy[inside_box(xy, train.boxes[i])], atol=1e-4)
    cfg.background_clusters = (8, 8)
    allpts = stage0_points(cfg, train, progress=False)
    assert (~allpts["inside"]).sum() > 0 and allpts["inside"].sum() == len(pts)
    labels, C, thr, info = run_stage0(cfg, train, tmp_path / "run", progress=False)
    assert info["n_points"] == len(allpts) and 0 < info["n_foreground"] <= info["n_inside"] == len(pts)
    assert all(inside_box(labels.points(j), train.boxes[j]).all() for j in range(len(train)))


def test_presets_protocols():
    "The paper preset is scored the official way; cpu and test keep the protocol they always had (now named 'cpu')."
    from unsupervised_landmarks.pipeline import experiment_config
    assert experiment_config("synthheads", "cpu").protocol == "cpu" == experiment_config("synthheads", "test").protocol
    p = experiment_config("celeba", "paper")
    assert (p.protocol, p.norm, p.data_args, p.n_eval_train) == ("paper", None, {}, 1000)
    h = experiment_config("h36m", "paper")
    assert (h.protocol, h.norm, h.data_args) == ("paper_h36m", "shoulders_h36m", {"lr_reorder": True})


def test_data_args_reach_the_loader(tmp_path, data_tmp):
    "data_args are the loader's keyword arguments: h36m lr_reorder gives the reordered ground truth, in its own cache."
    from unsupervised_landmarks.pipeline import experiment_config, prepare_data
    from unsupervised_landmarks.data import h36m_lr_reorder
    root = tmp_path / "h36m"; FIXTURES["h36m"](root)
    plain, _ = prepare_data(experiment_config("h36m", "test", data_root=str(root)), progress=False)
    lr, _ = prepare_data(experiment_config("h36m", "test", data_root=str(root), data_args={"lr_reorder": True}), progress=False)
    want = h36m_lr_reorder(plain.landmarks)
    np.testing.assert_array_equal(lr.landmarks, want)
    assert len(list((data_tmp / "cache").glob("h36m-train-*.npz"))) == 2          # two cache files, not one reused


def test_timing_of_a_killed_and_resumed_run(tmp_path, monkeypatch):
    """A run killed in stage 1's second phase and resumed: timing.json shows which phases ran in which attempt (the
    first attempt unfinished, its interrupted phase marked), and the resumed attempt's stage 1 starts at phase 2."""
    from unsupervised_landmarks import stage1
    from unsupervised_landmarks.core import timing_table
    from unsupervised_landmarks.pipeline import experiment_config, run_experiment
    cfg, run, step, calls = experiment_config("synthheads", "test"), tmp_path / "run", stage1.train_step, []
    def killed(*a, **k):
        calls.append(1)
        if len(calls) == cfg.stage1.warmup_iters + 3: raise KeyboardInterrupt   # after a checkpoint
        return step(*a, **k)
    monkeypatch.setattr(stage1, "train_step", killed)
    with pytest.raises(KeyboardInterrupt): run_experiment(cfg, run, progress=False)
    monkeypatch.setattr(stage1, "train_step", step)
    res = run_experiment(cfg, run, resume=True, progress=False)
    a1, a2 = json.loads((run / "timing.json").read_text())["attempts"]
    p1, p2 = ({e["phase"]: e for e in a["phases"]} for a in (a1, a2))
    assert a1["finished"] is None and a1["total_seconds"] is None and a2["finished"] is not None
    assert p1["stage 1"]["failed"] == p1["stage 1 / phase 2 training"]["failed"] == "KeyboardInterrupt"
    assert "stage 1 / relabel 1" in p1 and "stage 1 / relabel 2" not in p1 and "stage 2" not in p1
    assert "stage 1 / relabel 1" not in p2 and {"stage 1 / phase 2 training", "stage 1 / relabel 2", "evaluation"} <= set(p2)
    assert p2["stage 1"]["notes"] == {"resumed": "at phase 2, iteration 2"}          # the test preset checkpoints every 2
    table = timing_table(res.timing)
    assert "failed: KeyboardInterrupt" in table and "resumed at phase 2, iteration 2" in table and "unfinished" in table
    print(table)
