"Stage 1 run mechanics: resume after a kill reproduces the uninterrupted run; NaN stops the run; config checks."
import warnings

import numpy as np
import pytest
import torch

import unsupervised_landmarks.stage1 as S1
from unsupervised_landmarks.core import PointTable, ConfigError


def _data(n=16, size=64, seed=0):
    rng = np.random.default_rng(seed)
    # images with a few bright blobs at fixed "landmark" positions plus noise, so detections have something to find
    imgs = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    pts = np.array([[16, 16], [48, 16], [32, 40], [20, 52], [44, 52]], np.float32)
    for i in range(n):
        for j, (x, y) in enumerate(pts + rng.normal(0, 1.5, pts.shape)):
            imgs[i, int(y) - 2:int(y) + 2, int(x) - 2:int(x) + 2] = 200 + 10 * j
    lab = PointTable.from_lists([{"x": pts[:, 0] + 0.5, "y": pts[:, 1] + 0.5, "cluster": np.arange(5)} for _ in range(n)])
    cent = rng.normal(size=(8, 16)).astype(np.float32)
    return imgs, lab, cent


class Killed(Exception):
    pass


def _kill_after(monkeypatch, n_calls):
    real, count = S1.train_step, [0]
    def step(*a, **k):
        count[0] += 1
        if count[0] > n_calls: raise Killed()
        return real(*a, **k)
    monkeypatch.setattr(S1, "train_step", step)


@pytest.mark.parametrize("kill_at", [5, 6])   # mid phase 2 (after a mid-phase checkpoint), and right after a relabel
def test_resume_matches_uninterrupted(tmp_path, monkeypatch, kill_at):
    imgs, lab, cent = _data()
    cfg = S1.stage1_config("test", rounds=3, ckpt_every=2)
    ref = S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "ref", progress=False)
    _kill_after(monkeypatch, kill_at)
    with pytest.raises(Killed):
        S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "run", progress=False)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="resume=True"):
        S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "run", progress=False)
    res = S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "run", resume=True, progress=False)
    for r in range(cfg.rounds + 1):
        a, b = S1.load_round(tmp_path / "ref", r)[0], S1.load_round(tmp_path / "run", r)[0]
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a["cluster"], b["cluster"])
        np.testing.assert_allclose(a.xy, b.xy)
    for k, v in ref.net.state_dict().items():
        torch.testing.assert_close(v, res.net.state_dict()[k])
    # the log holds each step and each round once, as the uninterrupted run's (the steps after the checkpoint are
    # done again by the resumed run, and logged again)
    assert S1.read_jsonl(tmp_path / "run" / "metrics.jsonl") == S1.read_jsonl(tmp_path / "ref" / "metrics.jsonl")
    assert res.history == ref.history


def test_resume_refuses_other_config(tmp_path):
    imgs, lab, cent = _data(8)
    S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", rounds=1), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="another config"):
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", rounds=1, margin=0.3), tmp_path, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path, monkeypatch):
    imgs, lab, cent = _data(8)
    cfg = S1.stage1_config("test", rounds=2, ckpt_every=2)
    real, count = S1.heatmap_targets, [0]
    def poisoned(*a, **k):
        count[0] += 1
        t = real(*a, **k)
        return t * float("nan") if count[0] == 6 else t
    monkeypatch.setattr(S1, "heatmap_targets", poisoned)
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        S1.run_stage1(imgs, lab, cent, cfg, tmp_path, progress=False)
    ck = torch.load(tmp_path / "checkpoints" / "stage1_last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert (ck["phase"], ck["iter"]) == (1, 4)      # end of the warm-up phase, before the poisoned step of phase 2


def test_labels_one_point_per_cluster_per_image(tmp_path):
    imgs, lab, cent = _data(12)
    res = S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", rounds=2), tmp_path, progress=False)
    key = res.labels.image * 1000 + res.labels["cluster"]
    assert len(np.unique(key)) == len(key)
    assert (res.labels["cluster"] >= 0).all()


def test_wrong_image_size(tmp_path):
    imgs, lab, cent = _data(4, size=32)
    with pytest.raises(ConfigError, match="expects 64px"):
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test"), tmp_path, progress=False)


def test_equivariance_pairing(tmp_path):
    "The equivariance ablation pairs an image only with itself and gives every point its own class."
    imgs, lab, cent = _data(8)
    cfg = S1.stage1_config("test", rounds=1, pairing="equivariance")
    t = S1.training_labels(lab, cfg)
    assert len(np.unique(t["cluster"])) == len(t)
    res = S1.run_stage1(imgs, lab, cent, cfg, tmp_path, progress=False)
    assert "cluster" in res.labels
    steps = [r for r in S1.read_jsonl(tmp_path / "metrics.jsonl") if "n_pos" in r]
    assert steps and all(r["n_pos"] > 0 for r in steps)
    with pytest.raises(ConfigError, match="pairing='nope' is unknown"):
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", pairing="nope"), tmp_path / "b", progress=False)


def test_one_progress_bar_for_the_stage(tmp_path, monkeypatch, capsys):
    "One bar over the warm-up and the rounds (total = all iterations), its description naming the phase."
    imgs, lab, cent = _data(8)
    cfg = S1.stage1_config("test", rounds=2)
    monkeypatch.setenv("UL_PROGRESS", "log"); monkeypatch.setenv("UL_PROGRESS_EVERY", "0")
    S1.run_stage1(imgs, lab, cent, cfg, tmp_path, progress=True)
    err = capsys.readouterr().err
    total = cfg.warmup_iters + (cfg.rounds - 1) * cfg.round_iters
    assert f"stage 1 phase 1/2" in err and f"stage 1 phase 2/2" in err and f"{total}/{total}" in err, err
    assert f"/{cfg.warmup_iters} " not in err            # no per-phase bar


def _paper_options(**kw):
    "The test preset with every option the `paper` preset sets (tiny sizes)."
    return S1.stage1_config("test", target_sigma=0.0, det_weight=2.0, negatives="shared", max_pairs=10, max_points=None,
                            min_labels=3, lr_min=5e-6, lr_step=2, merge_radius=1, net={"desc_norm": False}, **kw)


@pytest.mark.parametrize("kill_at", [7, 9])   # phase 2 resumed at its 2nd lr level; phase 3 after a relabel
def test_resume_matches_uninterrupted_with_paper_options(tmp_path, monkeypatch, kill_at):
    "The per-round lr staircase is a function of (phase, iteration): a resumed run sets the same rates and ends equal."
    imgs, lab, cent = _data()
    cfg = _paper_options(rounds=3, ckpt_every=2, round_iters=4)
    ref = S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "ref", progress=False)
    _kill_after(monkeypatch, kill_at)
    with pytest.raises(Killed):
        S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "run", progress=False)
    monkeypatch.undo()
    res = S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "run", resume=True, progress=False)
    for r in range(cfg.rounds + 1):
        a, b = S1.load_round(tmp_path / "ref", r)[0], S1.load_round(tmp_path / "run", r)[0]
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a["cluster"], b["cluster"])
    for k, v in ref.net.state_dict().items():
        torch.testing.assert_close(v, res.net.state_dict()[k])
    steps = [r for r in S1.read_jsonl(tmp_path / "ref" / "metrics.jsonl") if "lr" in r]
    assert [r["lr"] for r in steps] == [S1.phase_lr(cfg, r["phase"], r["iter"] - 1) for r in steps]
    assert [r["lr"] for r in steps if r["phase"] == 2] == [5e-4, 5e-4, 5e-6 + (5e-4 - 5e-6) * 0.5, 5e-6 + (5e-4 - 5e-6) * 0.5]
    assert all(r["n_pos"] + r["n_neg"] <= cfg.batch * cfg.max_pairs for r in steps)


def test_min_labels_draws_only_rich_images():
    imgs, lab, cent = _data(6)
    keep = np.ones(len(lab), bool); keep[lab.offsets[2]:lab.offsets[2] + 3] = False     # image 2 keeps 2 of 5 labels
    data = S1.training_set(imgs, lab.filter(keep), S1.stage1_config("test", min_labels=3))
    assert 2 not in data.labelled and len(data.labelled) == 5
    a, b = S1.sample_pairs(6, data.labelled, 500, 0.5, np.random.default_rng(0))
    assert not np.isin(2, np.concatenate([a, b]))


def _diverged(ck_path):
    "The largest absolute weight of a checkpoint."
    ck = torch.load(ck_path, weights_only=True)
    return max(float(v.abs().max()) for v in ck["model"].values() if v.is_floating_point())


def test_nan_before_any_checkpoint_says_there_is_none(tmp_path):
    "lr=1e9: the first step explodes the weights, the second loss is NaN; no checkpoint exists, and the message says so."
    imgs, lab, cent = _data(8)
    with pytest.raises(FloatingPointError, match="no checkpoint has been written yet") as e:
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", lr=1e9), tmp_path, progress=False)
    assert "phase 1, iteration 1" in str(e.value) and "weight norm left its running range at phase 1, iteration 0" in str(e.value)
    assert not (tmp_path / "checkpoints" / "stage1_last.pt").exists()


def test_no_checkpoint_holds_exploded_weights(tmp_path):
    "With ckpt_every=1 the checkpoint after the exploding step used to hold weights of 1e12: now it is not written."
    imgs, lab, cent = _data(8)
    with pytest.raises(FloatingPointError, match="no checkpoint has been written yet"):
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", lr=1e9, ckpt_every=1), tmp_path, progress=False)
    ck = tmp_path / "checkpoints" / "stage1_last.pt"
    assert not ck.exists() or _diverged(ck) < 100


def test_diverged_end_of_phase_checkpoint_is_moved_aside(tmp_path, monkeypatch):
    """lr=1e3 explodes the weights in the warm-up without a NaN; the end-of-phase checkpoint must still be written (the
    relabel needs it) but a NaN in phase 2 must not leave it as the state to resume from."""
    imgs, lab, cent = _data(8)
    real, count = S1.heatmap_targets, [0]
    def poisoned(*a, **k):
        count[0] += 1
        t = real(*a, **k)
        return t * float("nan") if count[0] == 6 else t          # phase 2, iteration 1 (4 warm-up steps)
    monkeypatch.setattr(S1, "heatmap_targets", poisoned)
    with pytest.warns(RuntimeWarning, match="weight norm"), pytest.raises(FloatingPointError) as e:
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", lr=1e3, ckpt_every=1), tmp_path, progress=False)
    msg = str(e.value)
    assert "phase 2, iteration 1" in msg and "the last checkpoint (phase 1 after 4 iterations)" in msg and "moved to" in msg
    assert "lower lr (now 1000.0)" in msg
    d = tmp_path / "checkpoints"
    assert not (d / "stage1_last.pt").exists() and _diverged(d / "stage1_last.diverged.pt") > 100


def test_divergence_warns_but_does_not_stop(tmp_path):
    "lr=1e3 finishes with finite losses and exploded weights: one warning, the run completes, the norms are logged."
    imgs, lab, cent = _data(8)
    with pytest.warns(RuntimeWarning, match=r"stage 1: the weight norm is .* at phase 1, iteration 0, .* times its running level") as w:
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", lr=1e3), tmp_path, progress=False)
    assert len([x for x in w if "weight norm" in str(x.message)]) == 1     # once per excursion, not once per step
    steps = [r for r in S1.read_jsonl(tmp_path / "metrics.jsonl") if "phase" in r]
    assert steps[0]["weight_norm"] > 1e4


def test_ordinary_run_is_quiet(tmp_path):
    "The test preset's own rate never trips the monitor (and so never holds back a checkpoint)."
    imgs, lab, cent = _data(8)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="stage 1:")
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", rounds=3, ckpt_every=1), tmp_path, progress=False)
