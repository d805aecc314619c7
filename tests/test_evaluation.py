"""Known-answer tests of the evaluation toolkit (unsupervised_landmarks.evaluation) on larger data than the notebook."""
import json

import numpy as np
import pytest

from unsupervised_landmarks.core import PointTable, load_json
from unsupervised_landmarks.evaluation import (
    LandmarkSet, make_sets, svt_complete, svt_official, Protocol, get_protocol, PROTOCOLS, Norm, get_norm, normalizer,
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


@pytest.mark.parametrize("protocol", ["paper", "paper_fast", "cpu"])
def test_forward_permutation_invariant_with_missing(protocol):
    gt, pred, tr, te = _affine_sets()
    rng = np.random.default_rng(1)
    pred = pred + rng.normal(0, 1.0, pred.shape)
    vis = rng.random(pred.shape[:2]) > 0.1                         # ~10% missing: every landmark passes both 20% rules
    perm = rng.permutation(pred.shape[1])
    a = forward_error(*make_sets(pred, vis, gt, None, tr, te), protocol, "box")
    b = forward_error(*make_sets(pred[:, perm], vis[:, perm], gt, None, tr, te), protocol, "box")
    assert len(a.dropped) == 0
    np.testing.assert_allclose(b.errors, a.errors, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("protocol", [get_protocol("paper_all", max_missing=None),
                                      get_protocol("cpu", n_train=None, repeats=1, pool=None)])
def test_missing_entries_no_nan_and_svt_beats_mean_fill(protocol):
    gt, pred, tr, te = _affine_sets(seed=2)
    rng = np.random.default_rng(2)
    pred = pred + rng.normal(0, 0.5, pred.shape)
    vis = rng.random(pred.shape[:2]) > 0.3
    pred[~vis] = np.nan                                          # missing as NaN too
    gvis = rng.random(gt.shape[:2]) > 0.1
    sets = make_sets(pred, vis, gt, gvis, tr, te)
    svt = forward_error(*sets, protocol, "box")
    mean = forward_error(*sets, get_protocol(protocol, fill="mean"), "box")
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
    bw = backward_error(*sets, get_protocol("paper", max_missing=None))
    assert bw.per_landmark[4] == 1.0
    assert bw.per_landmark[np.arange(11) != 4].max() < 0.02
    assert list(backward_error(*sets, "paper").dropped) == [4] == list(backward_error(*sets, "cpu").dropped)
    vis2 = vis.copy(); vis2[:, 4] = True; vis2[te, 5] = False    # detected in training only
    bw2 = backward_error(*make_sets(pred, vis2, gt, None, tr, te), get_protocol("paper", max_missing=None))
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
    assert {"paper", "paper_h36m", "paper_fast", "paper_all", "cpu", "lstsq", "ols"} <= set(PROTOCOLS)
    p = get_protocol("paper")
    assert (p.lam, p.n_train, p.repeats, p.fill, p.min_detect, p.max_missing, p.peak_threshold) == \
        (0.01, 300, 10, "svt_official", 0.0, 0.2, 0.2)
    assert (p.svt_tau, p.svt_step, p.svt_tol, p.svt_max_iter, p.svt_scale) == (None, None, 1e-2, 1000, 256.0)
    c = get_protocol("cpu")                                       # what the cpu and test presets have always used
    assert (c.lam, c.n_train, c.repeats, c.pool, c.fill, c.min_detect, c.max_missing, c.peak_threshold) == \
        (0.01, 300, 10, 1000, "svt", 0.2, None, None)
    assert (c.svt_tau, c.svt_step, c.svt_tol, c.svt_max_iter, c.svt_center) == (None, None, 1e-4, 1000, True)
    assert get_protocol("paper_h36m").n_train == 800 and get_protocol("paper_fast").fill == "svt"
    with pytest.raises(ValueError):
        Protocol("bad", regressor="svm")


# --- the official evaluation (`paper` protocol) -------------------------------------------------------------------

def _svt_solve():
    """`svt_solve` of matrix-completion 0.0.2 (a test-only dependency), loaded from its file: the package's __init__
    imports cvxpy, which this project does not need."""
    import importlib.util, os
    spec = importlib.util.find_spec("matrix_completion")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("matrix-completion==0.0.2 is not installed (a dev requirement: pip install -e '.[dev]')")
    path = os.path.join(list(spec.submodule_search_locations)[0], "svt_solver.py")
    if not os.path.isfile(path): pytest.skip(f"matrix-completion has no {path}")
    sp = importlib.util.spec_from_file_location("_mc_svt_solver", path)
    mod = importlib.util.module_from_spec(sp)
    try: sp.loader.exec_module(mod)
    except ImportError as e: pytest.skip(f"matrix_completion/svt_solver.py is not importable here: {e}")
    return mod.svt_solve


def _coordinate_matrix(n, K, missing, seed):
    "Pixel coordinates of K points in n images (a mean shape plus rank-3 variation) and an observation mask."
    rng = np.random.default_rng(seed)
    A = rng.uniform(60, 200, (1, 2 * K)) + rng.normal(size=(n, 3)) @ rng.normal(size=(3, 2 * K)) * 10
    return A, rng.random(A.shape) > missing


@pytest.mark.parametrize("n,K,missing", [(300, 12, 0.2), (1000, 30, 0.1), (200, 8, 0.4)])
def test_svt_official_matches_matrix_completion(n, K, missing):
    svt_solve = _svt_solve()
    A, obs = _coordinate_matrix(n, K, missing, seed=n)
    Z = np.where(obs, A, np.nanmean(np.where(obs, A, np.nan), 0)) / 256     # what the official code passes
    np.random.seed(0)
    ref = svt_solve(Z, np.round(obs.astype(float)))
    ours, info = svt_official(Z, obs, return_info=True)
    assert 1 < info["iterations"] <= 1000                                       # (200, 8, 0.4) runs all 1000 steps
    np.testing.assert_allclose(ours * 256, ref * 256, rtol=0, atol=1e-6)     # pixels


def test_paper_fill_matches_the_official_forward_matrix():
    "The `paper` protocol's completion of a training matrix = the official Forward_matrix steps around svt_solve."
    from unsupervised_landmarks.evaluation import _fill
    svt_solve = _svt_solve()
    A, obs = _coordinate_matrix(400, 10, 0.15, seed=7)
    Xn = np.where(obs, A, np.nan)
    mean = np.nanmean(Xn, 0)                                                 # column means over observed entries
    ref = 256.0 * svt_solve(np.where(obs, A, mean) / 256.0, np.round(obs.astype(float)))
    ref[obs] = A[obs]                                                        # observed entries put back
    ours = _fill(A, obs, get_protocol("paper"))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    fast = _fill(A, obs, get_protocol("paper_fast"))                         # our SVT: another result
    assert np.abs(fast - ours).max() > 1e-3


def test_paper_protocol_by_hand():
    """Forward and backward NME of a small case computed by hand. Training offsets o = (+-1, +-1), test offsets (2, 0)
    and (0, 3); two ground-truth points g1 = c1 + o, g2 = c2 + o with |c1 - c2| = 50 (the normaliser); discovered A =
    2 g1 + (5, 7), and B missing in 2 of 6 images (a low peak once, not detected once): B is dropped.
    Forward: X'X = 16 I, ridge 0.01 x 16, Y'X = 8 I per target -> error |o| 0.16 / 16.16 per point.
    Backward: X = (g1, g2) has X'X = 4 [[I, I], [I, I]] (max 4, ridge 0.04) and Y'X = [8 I, 8 I] -> W = [8 I, 8 I] / 8.04,
    the prediction 16 o / 8.04 misses 2 o by |o| 2 x 0.04 / 8.04."""
    off = np.array([[1, 1], [-1, 1], [1, -1], [-1, -1], [2, 0], [0, 3]], float)
    gt = np.stack([np.array([40., 50.]) + off, np.array([70., 90.]) + off], 1)          # (6, 2, 2), |c1 - c2| = 50
    A = 2 * gt[:, 0] + [5., 7.]
    B = np.random.default_rng(0).uniform(0, 100, (6, 2))
    pred = np.stack([A, B], 1)
    vis = np.ones((6, 2), bool); vis[2, 1] = False
    peak = np.full((6, 2), 0.7); peak[5, 1] = 0.1
    tr, te = make_sets(pred, vis, gt, None, np.arange(4), np.arange(4, 6), pred_peak=peak)
    norm = Norm("pairs", (0, 1))
    fw, bw = forward_error(tr, te, "paper", norm), backward_error(tr, te, "paper", norm)
    np.testing.assert_allclose(fw.per_image, np.array([2, 3]) * 0.16 / 16.16 / 50, rtol=1e-10)
    assert fw.nme == pytest.approx(2.5 * 0.16 / 16.16 / 50, rel=1e-10)
    np.testing.assert_allclose(bw.errors[:, 0], np.array([2, 3]) * 2 * 0.04 / 8.04 / 50, rtol=1e-10)
    assert bw.nme == pytest.approx(2.5 * 2 * 0.04 / 8.04 / 50, rel=1e-10)
    assert list(fw.dropped) == [1] == list(bw.dropped) and list(bw.landmarks) == [0]
    ev = evaluate(tr, te, "paper", norm)                                     # the same through `evaluate`
    assert (ev.forward.nme, ev.backward.nme) == (fw.nme, bw.nme) and ev.row()["K"] == 1
    assert len(backward_error(tr, te, "cpu", norm).landmarks) == 2           # cpu: peaks ignored, B kept (5/6 detected)
    peak[5, 1] = 0.2                                                          # a peak of exactly 0.2 is a detection
    tr, te = make_sets(pred, vis, gt, None, np.arange(4), np.arange(4, 6), pred_peak=peak)
    assert list(backward_error(tr, te, "paper", norm).dropped) == []         # missing in 1 of 6 (< 20%): kept


def test_twenty_percent_rules_are_not_the_same():
    "The official rule keeps landmarks missing in < 20% of the images; ours (cpu) those detected in >= 20%."
    n = 50
    gt = random_shapes(n, L=4, seed=1)
    pred = np.concatenate([gt, gt + 1.0, gt[:, :1] - 2.0], 1)                # K = 9
    vis = np.ones((n, 9), bool)
    vis[:10, 4] = False                                                      # missing in exactly 20%: dropped by paper
    vis[:9, 5] = False                                                       # 18%: kept by both
    vis[:40, 6] = False                                                      # detected in exactly 20%: kept by cpu only
    vis[:41, 7] = False                                                      # 18% detected: dropped by both
    tr, te = make_sets(pred, vis, gt, None, np.arange(40), np.arange(40, n))
    assert list(backward_error(tr, te, "paper").dropped) == [4, 6, 7]
    assert list(backward_error(tr, te, "cpu").dropped) == [7]

