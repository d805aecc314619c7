"Stage 1 run mechanics: resume after a kill reproduces the uninterrupted run; NaN stops the run; config checks."
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
    with pytest.raises(ConfigError, match="unknown pairing"):
        S1.training_labels(lab, S1.stage1_config("test", pairing="nope"))


def test_det_ignore_needs_keypoints_and_masks_the_detector_loss(tmp_path):
    imgs, lab, cent = _data()
    cfg = S1.stage1_config("test", rounds=1, det_ignore=1.5)
    with pytest.raises(ConfigError, match="needs the stage-0 keypoints"):
        S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "a", progress=False)
    rng = np.random.default_rng(1)
    kps = PointTable.from_lists([{"x": rng.uniform(4, 60, 12), "y": rng.uniform(4, 60, 12)} for _ in range(len(imgs))])
    res = S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "b", progress=False, keypoints=kps)
    kps.save(tmp_path / "c" / "stage0" / "keypoints.npz")     # where the pipeline's stage 0 leaves them
    S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "c", progress=False)
    losses = lambda d: [r["loss"] for r in S1.read_jsonl(d / "metrics.jsonl") if "phase" in r]
    assert losses(tmp_path / "c") == losses(tmp_path / "b") and losses(tmp_path / "b")
    assert np.isfinite([r["loss_det"] for r in S1.read_jsonl(tmp_path / "b" / "metrics.jsonl") if "phase" in r]).all()
    assert res.labels.n_images == len(imgs)
    # the masked loss is the plain MSE when nothing is ignored, and drops the ignored cells otherwise
    net = S1.build_net(cfg.net); opt = torch.optim.SGD(net.parameters(), lr=0.0)
    class NoAug:                                   # identity augmentation with the affine the real one returns
        def __call__(self, x, p, v): return x, p, v, torch.eye(3).repeat(len(x), 1, 1)
    def step(ignore, seed=0):
        torch.manual_seed(0)
        return S1.train_step(net, opt, NoAug(), imgs, lab, np.arange(len(imgs)), cfg, np.random.default_rng(seed), "cpu",
                             ignore=ignore)["loss_det"]
    empty = PointTable(np.zeros(len(imgs) + 1, np.int64), {"x": np.zeros(0, np.float32), "y": np.zeros(0, np.float32),
                                                            "cluster": np.zeros(0, np.int64)})
    plain = step(None)
    assert abs(step(empty) - plain) < 1e-6
    assert abs(step(S1.unlabelled_points(kps, lab, 1.5 * cfg.net.stride)) - plain) > 1e-6


def test_relabel_pool_keypoints_and_label_gate(tmp_path):
    "relabel_pool='keypoints' adds the stage-0 keypoints to the relabelling candidates; label_gate drops weak ones."
    imgs, lab, cent = _data()
    rng = np.random.default_rng(2)
    kps = PointTable.from_lists([{"x": rng.uniform(4, 60, 12), "y": rng.uniform(4, 60, 12)} for _ in range(len(imgs))])
    cfg = S1.stage1_config("test", rounds=1, relabel_pool="keypoints", label_gate=0.0)
    with pytest.raises(ConfigError, match="relabel_pool='keypoints' needs the stage-0 keypoints"):
        S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "a", progress=False)
    res = S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "b", progress=False, keypoints=kps)
    info = [r for r in S1.read_jsonl(tmp_path / "b" / "metrics.jsonl") if r.get("round") == 1][0]
    assert len(info["labels_by_source"]) == 3 and info["n_points"] > len(lab) + len(kps) // 2   # the keypoints were clustered
    # the candidates directly: keypoints fill free cells only, the response column is the detector's, the gate filters it
    net = res.net
    dets, plain = S1.detect_merge_describe(net, imgs, lab, 0.2, progress=False)
    _, pooled = S1.detect_merge_describe(net, imgs, lab, 0.2, progress=False, extra=kps)
    extra = pooled.filter(pooled["source"] == 2)
    assert len(pooled) == len(plain) + len(extra) and 0 < len(extra) <= len(kps)
    np.testing.assert_array_equal(pooled.filter(pooled["source"] < 2).xy, plain.xy)
    cells = lambda t: set(zip(t.image.tolist(), *S1.cell_index(t.xy, 4).T.tolist()))
    assert not cells(extra) & cells(plain)                     # never in a cell that already holds a candidate
    with torch.no_grad():
        det = net.eval()(S1.images_to_tensor(imgs))["det"]
    np.testing.assert_allclose(pooled["response"], S1.detector_response(det, pooled, 4), atol=1e-5)
    gate = float(np.median(pooled["response"]))
    _, gated = S1.detect_merge_describe(net, imgs, lab, 0.2, progress=False, extra=kps, gate=gate)
    assert len(gated) == int((pooled["response"] >= gate).sum()) and (gated["response"] >= gate).all()
    np.testing.assert_allclose(gated["desc"], pooled.filter(pooled["response"] >= gate)["desc"], atol=1e-5)
    with pytest.raises(ConfigError, match="relabel_pool"):
        S1.check_choices(S1.stage1_config("test", relabel_pool="all"))
    with pytest.raises(RuntimeError, match="no candidate point is left"):     # a gate nothing passes: a clear stop
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", rounds=1, label_gate=1e9), tmp_path / "c", progress=False)


def test_exchange_neighbours_resume(tmp_path, monkeypatch):
    "exchange_aux='neighbours': one saved neighbour table per phase, the exchange loss logged, resume replays the run."
    imgs, lab, cent = _data()
    cfg = S1.stage1_config("test", rounds=2, ckpt_every=2, exchange=0.05, exchange_aux="neighbours", exchange_k=3,
                            warmup_pairing="equivariance")
    ref = S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "ref", progress=False)
    for p in (1, 2):
        nn = np.load(tmp_path / "ref" / "stage1" / f"neighbours_{p:02d}.npy")
        assert nn.shape == (len(imgs), 3) and not (nn == np.arange(len(imgs))[:, None]).any()
    steps = [r for r in S1.read_jsonl(tmp_path / "ref" / "metrics.jsonl") if "loss" in r]
    assert steps and all("loss_exchange" in r for r in steps)
    assert all(r["n_exchange"] > 0 for r in steps if r["phase"] == 1)   # equivariance warm-up: all pairs from one image
    _kill_after(monkeypatch, 5)
    with pytest.raises(Killed):
        S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "run", progress=False)
    monkeypatch.undo()
    res = S1.run_stage1(imgs, lab, cent, cfg, tmp_path / "run", resume=True, progress=False)
    for p in (1, 2):
        np.testing.assert_array_equal(np.load(tmp_path / "ref" / "stage1" / f"neighbours_{p:02d}.npy"),
                                      np.load(tmp_path / "run" / "stage1" / f"neighbours_{p:02d}.npy"))
    for k, v in ref.net.state_dict().items():
        torch.testing.assert_close(v, res.net.state_dict()[k])
    with pytest.raises(ConfigError, match="exchange_aux"):
        S1.run_stage1(imgs, lab, cent, S1.stage1_config("test", exchange=0.05, exchange_aux="near"), tmp_path / "bad",
                      progress=False)
