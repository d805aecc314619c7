"""Known-answer tests of the evaluation toolkit (unsupervised_landmarks.evaluation) on larger data than the notebook."""
import json

import numpy as np
import pytest

from unsupervised_landmarks.core import PointTable, load_json
from unsupervised_landmarks.evaluation import (
    LandmarkSet, make_sets, svt_complete, Protocol, get_protocol, PROTOCOLS, Norm, get_norm, normalizer,
    ridge_fit, forward_error, backward_error, mean_shape_error, evaluate, ced, auc, nme_per_bin,
    sorted_landmark_curve, points_from_table, point_metrics, results_table, random_shapes, plot_ced,
    plot_per_bin, plot_sorted_curves)


def _lowrank(n1, n2, r, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n1, r)) @ rng.normal(size=(r, n2)), rng


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_svt_recovers_low_rank_with_30pc_missing(center, offset):
    A, rng = _lowrank(200, 40, 3)
    A = A + offset
    obs = rng.random(A.shape) > 0.3
    X, info = svt_complete(A, obs, center=center, return_info=True)
    rel = np.linalg.norm((X - A)[~obs]) / np.linalg.norm((A - A.mean(0))[~obs])   # error relative to the variation
    if center or offset == 0:
        assert rel < 1e-2, (rel, info)
    np.testing.assert_array_equal(X[obs], A[obs])
    assert np.isfinite(X).all()


def test_svt_scale_equivariant():
    A, rng = _lowrank(120, 30, 2, seed=1)
    obs = rng.random(A.shape) > 0.3
    X1 = svt_complete(A, obs)
    X2 = svt_complete(A * 256.0, obs)
    np.testing.assert_allclose(X2 / 256.0, X1, rtol=1e-6, atol=1e-8)


def _affine_sets(n_train=400, n_test=200, seed=0):
    gt = random_shapes(n_train + n_test, L=8, seed=seed)
    A = np.array([[0.9, 0.2], [-0.1, 1.1]])
    pred = np.concatenate([gt @ A.T + [5., -3.], gt[:, :3] @ A + 7], 1)         # K = 11
    return gt, pred, np.arange(n_train), np.arange(n_train, n_train + n_test)


def test_forward_affine_is_exact():
    gt, pred, tr, te = _affine_sets()
    sets = make_sets(pred, None, gt, None, tr, te)
    assert forward_error(*sets, "ols").nme < 1e-8
    assert forward_error(*sets, "paper").nme < 0.01            # the ridge term shrinks a little
    assert forward_error(*sets, "paper_all").nme < 0.01
    lin = np.concatenate([gt @ np.eye(2) * 1.3, gt[:, :3] * 0.7], 1)
    assert forward_error(*make_sets(lin, None, gt, None, tr, te), "lstsq").nme < 1e-8


def test_backward_affine_is_exact():
    gt, pred, tr, te = _affine_sets()
    bw = backward_error(*make_sets(pred, None, gt, None, tr, te), "ols")
    assert bw.nme < 1e-8 and len(bw.per_landmark) == 11


@pytest.mark.parametrize("norm", ["none", "box"])
def test_forward_gaussian_noise_matches_rayleigh_mean(norm):
    sigma = 2.0
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 200, (7000, 10, 2))
    pred = gt + rng.normal(0, sigma, gt.shape)
    train, test = make_sets(pred, None, gt, None, np.arange(5000), np.arange(5000, 7000))
    fw = forward_error(train, test, "lstsq", norm)
    expected = sigma * np.sqrt(np.pi / 2) * np.mean(1.0 / normalizer(test.gt, test.gt_vis, norm))
    assert abs(fw.nme / expected - 1) < 0.02, (fw.nme, expected)


def test_forward_permutation_invariant_with_missing():
    gt, pred, tr, te = _affine_sets()
    rng = np.random.default_rng(1)
    pred = pred + rng.normal(0, 1.0, pred.shape)
    vis = rng.random(pred.shape[:2]) > 0.25
    perm = rng.permutation(pred.shape[1])
    a = forward_error(*make_sets(pred, vis, gt, None, tr, te), "paper", "box")
    b = forward_error(*make_sets(pred[:, perm], vis[:, perm], gt, None, tr, te), "paper", "box")
    np.testing.assert_allclose(b.errors, a.errors, rtol=1e-5, atol=1e-9)


def test_missing_entries_no_nan_and_svt_beats_mean_fill():
    gt, pred, tr, te = _affine_sets(seed=2)
    rng = np.random.default_rng(2)
    pred = pred + rng.normal(0, 0.5, pred.shape)
    vis = rng.random(pred.shape[:2]) > 0.3
    pred[~vis] = np.nan                                          # missing as NaN too
    gvis = rng.random(gt.shape[:2]) > 0.1
    sets = make_sets(pred, vis, gt, gvis, tr, te)
    svt = forward_error(*sets, "paper_all", "box")
    mean = forward_error(*sets, get_protocol("paper_all", fill="mean"), "box")
    assert np.isfinite(svt.nme) and np.isfinite(svt.per_landmark).all() and np.isfinite(svt.per_image).all()
    assert np.array_equal(np.isfinite(svt.errors), sets[1].gt_vis)
    assert svt.nme < mean.nme, (svt.nme, mean.nme)
    bw = backward_error(*sets, "paper")
    assert np.isfinite(bw.per_landmark).all()


def test_gt_missing_in_training_targets():
    gt, pred, tr, te = _affine_sets()
    gt = gt.copy()
    gt[:50, 2] = np.nan                                          # unknown target coordinates in some training images
    fw = forward_error(*make_sets(pred, None, gt, None, tr, te), "ols")
    assert fw.nme < 1e-8


def test_never_detected_landmark_scores_one_in_backward():
    gt, pred, tr, te = _affine_sets()
    vis = np.ones(pred.shape[:2], bool)
    vis[:, 4] = False
    sets = make_sets(pred, vis, gt, None, tr, te)
    bw = backward_error(*sets, get_protocol("paper", min_detect=0))
    assert bw.per_landmark[4] == 1.0
    assert bw.per_landmark[np.arange(11) != 4].max() < 0.02
    assert list(backward_error(*sets, "paper").dropped) == [4]
    vis2 = vis.copy(); vis2[:, 4] = True; vis2[te, 5] = False    # detected in training only
    bw2 = backward_error(*make_sets(pred, vis2, gt, None, tr, te), get_protocol("paper", min_detect=0))
    assert bw2.per_landmark[5] == 1.0 and bw2.per_landmark[4] < 0.02


def test_paper_protocol_seeded_repeats():
    gt, pred, tr, te = _affine_sets(n_train=1200)
    rng = np.random.default_rng(0)
    pred = pred + rng.normal(0, 2.0, pred.shape)
    sets = make_sets(pred, None, gt, None, tr, te)
    a = forward_error(*sets, "paper").nme
    assert a == forward_error(*sets, "paper").nme
    assert a != forward_error(*sets, get_protocol("paper", seed=1)).nme
    assert abs(a - forward_error(*sets, get_protocol("paper", seed=1)).nme) < 0.1 * a


def test_ced_auc_bins():
    e = np.random.default_rng(0).exponential(0.05, 500)
    t, f = ced(e)
    assert np.all(np.diff(f) >= 0) and f[-1] == 1.0 and f[0] == 0.0
    th = np.linspace(0, 0.08, 20001)
    assert abs(auc(e, 0.08) - np.trapezoid(ced(e, th)[1], th) / 0.08) < 1e-3
    assert auc(np.zeros(3), 0.08) == 1.0 and auc(np.ones(3), 0.08) == 0.0
    yaw = np.linspace(-90, 90, 500)
    pb = nme_per_bin(e, yaw)
    assert sum(pb["count"]) == 500 and len(pb["nme"]) == 6
    np.testing.assert_allclose(sorted_landmark_curve([0.3, 0.1])[-1], 0.2)


def test_normalisations():
    gt = random_shapes(5, L=68)
    np.testing.assert_allclose(normalizer(gt, norm="interocular_68"), np.linalg.norm(gt[:, 36] - gt[:, 45], axis=-1))
    np.testing.assert_allclose(normalizer(gt, norm="interocular_68_ref"), np.linalg.norm(gt[:, 41] - gt[:, 46], axis=-1))
    c = normalizer(gt, norm="eye_centres_68")
    np.testing.assert_allclose(c, np.linalg.norm(gt[:, 36:42].mean(1) - gt[:, 42:48].mean(1), axis=-1))

    class DS: norm, eye_idx = "interocular", (0, 1)
    assert Norm.from_dataset(DS()) == get_norm("interocular_5pt")


def test_mean_shape_baseline():
    gt = random_shapes(300, L=5, deform=0.0, seed=4)
    gt = gt - gt.mean(1, keepdims=True) + 50                     # rigid variation only around a fixed centre
    tr, te = make_sets(gt, None, gt, None, np.arange(200), np.arange(200, 300))
    ms = mean_shape_error(tr, te, "box")
    same = np.repeat(gt[:1], 300, 0)
    assert mean_shape_error(*make_sets(same, None, same, None, np.arange(200), np.arange(200, 300)), "box").nme < 1e-12
    assert ms.nme > 0.01


def test_points_from_table_roundtrip_and_metrics():
    rng = np.random.default_rng(0)
    n, K = 20, 6
    pred = rng.uniform(0, 100, (n, K, 2)).astype(np.float32)
    vis = rng.random((n, K)) > 0.3
    img, k = np.nonzero(vis)
    t = PointTable.from_image_index(img, n, x=pred[img, k, 0], y=pred[img, k, 1], cluster=k * 3 + 1)
    p2, v2, ids = points_from_table(t)
    present = np.flatnonzero(vis.any(0))
    np.testing.assert_array_equal(ids, present * 3 + 1)
    np.testing.assert_array_equal(v2, vis[:, present])
    np.testing.assert_allclose(p2[v2], pred[:, present][vis[:, present]])
    pm = point_metrics(t, pred, vis, r=0.5)
    assert pm["nmi"] == pytest.approx(1.0) and pm["precision"] == 1.0 and pm["recall"] == 1.0
    few = points_from_table(t, min_images=int(vis.sum(0).max()))[2]
    assert len(few) >= 1 and set(few) <= set(ids)


def test_evaluate_json_table_and_plots(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    gt, pred, tr, te = _affine_sets()
    rng = np.random.default_rng(5)
    pred = pred + rng.normal(0, 1.0, pred.shape)
    yaw = rng.uniform(-90, 90, len(gt))
    ev = evaluate(*make_sets(pred, rng.random(pred.shape[:2]) > 0.1, gt, None, tr, te, yaw=yaw), "paper", "box")
    ev.save(tmp_path / "results.json")
    d = load_json(tmp_path / "results.json")
    assert d["protocol"]["name"] == "paper" and len(d["forward_per_yaw"]["nme"]) == 6
    assert d["forward"]["nme"] == pytest.approx(ev.forward.nme)
    rows = [ev.row("noisy"), {"method": "mean shape", "forward_nme": ev.mean_shape.nme}]
    md = results_table(rows)
    assert md.count("\n") == 3 and "noisy" in md
    assert json.loads(results_table(rows, "json"))[0]["forward_nme"] == pytest.approx(ev.forward.nme)
    plot_ced({"a": ev.forward, "b": ev.mean_shape.per_image})
    plot_per_bin({"a": ev.per_yaw()})
    plot_sorted_curves({"a": ev.backward})


def test_protocol_registry():
    assert {"paper", "paper_all", "lstsq", "ols"} <= set(PROTOCOLS)
    p = get_protocol("paper")
    assert (p.lam, p.n_train, p.repeats, p.fill, p.min_detect) == (0.01, 300, 10, "svt", 0.2)
    with pytest.raises(ValueError):
        Protocol("bad", regressor="svm")
