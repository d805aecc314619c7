"""Tests of unsupervised_landmarks.clustering (outliers, k-means, thresholds, per-image assignment, stage 0)."""
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from unsupervised_landmarks.core import PointTable, ConfigError
from unsupervised_landmarks.clustering import (assign_chunks, assign_labels, background_centroids, cluster_thresholds,
                                               foreground_mask, hard_mixture, inertia, keep_overlap, kmeans, kmeanspp_init,
                                               knn_density, remove_outliers, round_report, stage0)


def random_table(n_img=400, D=16, max_pts=30, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, max_pts, n_img)
    n = int(counts.sum())
    return PointTable(np.concatenate([[0], np.cumsum(counts)]),
                      {"x": rng.uniform(0, 100, n).astype(np.float32), "y": rng.uniform(0, 100, n).astype(np.float32),
                       "desc": rng.normal(size=(n, D)).astype(np.float32)})


def test_no_cluster_gets_two_points_of_one_image():
    t = random_table(max_pts=40)                  # many collisions; some images have more points than clusters
    M = 25
    C = kmeans(t["desc"], M, seed=0, niter=10)
    near, dist = assign_chunks(t["desc"], C)
    thr = cluster_thresholds(dist, near, M, n_std=10.0)     # generous: nearly all pairs accepted
    for gated in (False, True):
        lab = assign_labels(t, C, thr, chunk=777, gated=gated)
        key = lab.image * M + lab["cluster"]
        assert len(np.unique(key)) == len(key)
        assert (lab.counts <= np.minimum(t.counts, M)).all()
        assert (lab["cluster"] >= 0).all() and (lab["cluster"] < M).all()


def test_assignment_equals_per_image_hungarian():
    "The nearest-centroid fast path and the chunking give exactly the per-image LSA of the paper."
    t = random_table(n_img=150, seed=2)
    M = 20
    C = kmeans(t["desc"], M, seed=1, niter=10)
    thr = np.full(M, np.inf, np.float32)
    lab = assign_labels(t, C, thr, chunk=100, keep_unassigned=True)
    ref = np.full(len(t), -1)
    for i in range(t.n_images):
        s = t.rows(i)
        D = np.linalg.norm(t["desc"][s][:, None] - C[None], axis=-1)
        r, c = linear_sum_assignment(D)
        ref[s.start + r] = c
    np.testing.assert_array_equal(lab["cluster"], ref)


def test_thresholds_drop_far_points():
    rng = np.random.default_rng(0)
    C = np.array([[0, 0], [10, 0]], np.float32)
    near_pts = rng.normal(0, 0.3, (200, 2)).astype(np.float32) + C[rng.integers(0, 2, 200)]
    far_pts = np.array([[5, 6], [-4, -4], [14, 5]], np.float32)      # far from both centroids
    x = np.concatenate([near_pts, far_pts])
    nearest, dist = assign_chunks(x, C)
    thr = cluster_thresholds(dist, nearest, 2)
    for j in range(2):
        d = dist[nearest == j]
        assert thr[j] == pytest.approx(d.mean() + d.std(), rel=1e-4)
    # one image per point: only the threshold can drop a point
    t = PointTable(np.arange(len(x) + 1), {"x": np.zeros(len(x), np.float32), "y": np.zeros(len(x), np.float32), "desc": x})
    lab = assign_labels(t, C, thr, keep_unassigned=True)
    assert (lab["cluster"][-3:] == -1).all()
    assert (lab["cluster"][:-3] >= 0).mean() > 0.7                    # ~84% of a Gaussian lies under mean + 1 std
    assert (lab["dist"][lab["cluster"] >= 0] <= thr[lab["cluster"][lab["cluster"] >= 0]]).all()
    assert cluster_thresholds(np.array([1.0]), np.array([0]), 3)[1:].tolist() == [-1.0, -1.0]   # empty clusters take nothing


def test_warm_start_reproduces_clusters():
    x, lab, _ = hard_mixture(n=4000, M=12, D=16, seed=3)
    C = kmeans(x, 12, seed=0, niter=50)
    n1, _ = assign_chunks(x, C)
    C2 = kmeans(x, 12, init=C, seed=123, niter=10)
    n2, _ = assign_chunks(x, C2)
    np.testing.assert_array_equal(n1, n2)                          # same ids, same members
    np.testing.assert_allclose(C2, C, atol=1e-4)
    with pytest.raises(ConfigError):
        kmeans(x, 12, init=C[:, :8])


def test_kmeanspp_beats_random_start_on_hard_data():
    x, _, centres = hard_mixture(n=6000, M=60, D=32, seed=1)
    pp = [inertia(x, kmeans(x, 60, seed=s, niter=15)) for s in range(2)]
    rnd = [inertia(x, kmeans(x, 60, seed=s, niter=15, kmeanspp=False)) for s in range(2)]
    assert max(pp) < min(rnd)
    assert np.mean(pp) < 1.5 * inertia(x, centres)
    c = kmeanspp_init(x, 60, seed=0)
    assert c.shape == (60, 32) and len(np.unique(c, axis=0)) == 60


def test_kmeans_fits_on_a_sample_and_is_seeded():
    x, _, _ = hard_mixture(n=5000, M=10, D=8, seed=0)
    a = kmeans(x, 10, seed=4, max_sample=800)
    b = kmeans(x, 10, seed=4, max_sample=800)
    np.testing.assert_array_equal(a, b)
    assert inertia(x, a) < 2 * inertia(x, kmeans(x, 10, seed=4))


def test_outlier_removal_drops_isolated_points():
    rng = np.random.default_rng(5)
    blobs = np.repeat(rng.normal(0, 1, (5, 32)), 200, 0) + rng.normal(0, 0.05, (1000, 32))
    iso = rng.normal(0, 4, (50, 32))
    x = np.concatenate([blobs, iso]).astype(np.float32)
    perm = rng.permutation(len(x)); x = x[perm]
    is_iso = perm >= 1000
    for kw in [{}, {"max_ref": 300}, {"max_ref": 300, "approx": True}]:
        keep = remove_outliers(x, k=20, drop=50 / 1050, **kw)
        assert keep.sum() == 1000
        np.testing.assert_array_equal(keep, ~is_iso)
    d = knn_density(x, k=20)
    assert d[is_iso].min() > d[~is_iso].max()



def mixture_with_clutter(seed=0, n=8000, D=32):
    "Gaussian clusters with 1/rank sizes and spreads 0.1-0.3 plus a quarter of scattered points."
    x, _, _ = hard_mixture(n=n, M=40, D=D, seed=seed)
    return np.concatenate([x, np.random.default_rng(seed).normal(0, 1.5, (n // 3, D)).astype(np.float32)])


def test_approximate_density_agrees_with_exact():
    "Approximate k-NN (candidate balls around k-means cells of the references) against the exact search, same refs."
    x = mixture_with_clutter(seed=2)
    kw = dict(k=30, max_ref=1500, seed=3)
    ex = knn_density(x, approx=False, **kw)
    ap = knn_density(x, approx=True, **kw)
    assert ap.dtype == np.float32 and ap.shape == ex.shape
    assert (ap >= ex - 1e-4 * (1 + ex)).all()                         # missing neighbours only raise the median
    assert np.mean(np.abs(ap - ex) <= 1e-4 * (1 + ex)) > 0.5          # most scores are the exact ones
    np.testing.assert_allclose(knn_density(x, approx=True, n_cand=1500, **kw), ex, rtol=1e-4, atol=1e-4)  # all refs
    ov = keep_overlap(remove_outliers(x, approx=True, **kw), remove_outliers(x, approx=False, **kw))
    assert ov["jaccard"] > 0.98 and ov["ref_kept"] > 0.99, ov
    other = keep_overlap(remove_outliers(x, approx=False, **{**kw, "seed": 4}), remove_outliers(x, approx=False, **kw))
    assert ov["jaccard"] > other["jaccard"]                           # closer than another exact reference sample


def test_approximate_density_reference_rows_and_switch():
    x = mixture_with_clutter(seed=5, n=3000)
    # every row a reference (N <= max_ref): each skips its own zero distance, as in the exact search
    ex, ap = knn_density(x, k=10, approx=False), knn_density(x, k=10, approx=True, n_cand=len(x))
    np.testing.assert_allclose(ap, ex, rtol=1e-4, atol=1e-4)
    # odd k: the median is one rank
    np.testing.assert_allclose(knn_density(x, k=9, approx=True, n_cand=len(x)), knn_density(x, k=9), rtol=1e-4, atol=1e-4)
    # approx=None switches on above approx_above rows only; the exact result is bit-for-bit the exact path's
    np.testing.assert_array_equal(knn_density(x, k=10, approx=None), ex)
    auto = knn_density(x, k=10, approx=None, approx_above=len(x) - 1)
    np.testing.assert_array_equal(auto, knn_density(x, k=10, approx=True))
    assert not np.array_equal(auto, ex)
    # fewer candidates than k + 1 are raised to k + 1; two rows: each the other's only neighbour
    assert np.isfinite(knn_density(x, k=10, approx=True, n_cand=3)).all()
    np.testing.assert_allclose(knn_density(x[:2], k=5, approx=True), np.linalg.norm(x[0] - x[1]), rtol=1e-4)


def test_keep_overlap_by_hand():
    assert keep_overlap([1, 1, 0, 0], [1, 0, 1, 0]) == {"jaccard": 1 / 3, "ref_kept": 0.5}
    assert keep_overlap([0, 0], [0, 0]) == {"jaccard": 0.0, "ref_kept": 0.0}

def test_float16_memmap_inputs(tmp_path):
    t = random_table(n_img=100, D=8, seed=7)
    path = tmp_path / "desc.npy"
    np.save(path, t["desc"].astype(np.float16))
    mm = np.load(path, mmap_mode="r")
    C = kmeans(t["desc"], 10, seed=0, niter=5)
    n32, d32 = assign_chunks(t["desc"], C, chunk=50)
    n16, d16 = assign_chunks(mm, C, chunk=50)
    assert (n32 == n16).mean() > 0.98 and np.abs(d32 - d16).max() < 0.02
    t16 = PointTable(t.offsets, {**t.columns, "desc": mm})
    thr = cluster_thresholds(d16, n16, 10)
    lab = assign_labels(t16, C, thr, chunk=64)
    assert len(np.unique(lab.image * 10 + lab["cluster"])) == len(lab)
    assert len(remove_outliers(mm, k=5, drop=0.2, chunk=100)) == len(t)


def test_stage0_end_to_end_and_report(tmp_path):
    rng = np.random.default_rng(0)
    n_img, L, D = 80, 5, 16
    proto = rng.normal(size=(L, D))
    gt = rng.uniform(10, 90, (n_img, L, 2)).astype(np.float32)
    vis = rng.random((n_img, L)) < 0.8
    rows = []
    for i in range(n_img):
        v = np.flatnonzero(vis[i])
        xy = np.concatenate([gt[i, v], rng.uniform(0, 100, (3, 2))])
        d = np.concatenate([proto[v] + rng.normal(0, 0.1, (len(v), D)), rng.normal(0, 2, (3, D))])
        rows.append({"x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32), "desc": d.astype(np.float32)})
    t = PointTable.from_lists(rows)
    labels, C, info = stage0(t, M=10, drop=0.25, k=10, seed=0, gt=gt, vis=vis, r=1.0)
    assert C.shape == (10, D) and info["n_after_outliers"] == len(t) - int(0.25 * len(t))
    assert info["nmi"] > 0.9 and info["landmarks_covered"] == L
    assert sum(info["cluster_sizes"]) == len(labels) == info["n_labels"]
    labels.save(tmp_path / "labels.npz")
    back = PointTable.load(tmp_path / "labels.npz")
    np.testing.assert_array_equal(back["cluster"], labels["cluster"])
    # a second round warm-started from the first round's centroids keeps the labels
    labels2, C2, _ = stage0(t, M=10, drop=0.25, k=10, seed=0, init=C)
    assert (labels2["cluster"] == labels["cluster"]).mean() > 0.95
    rep = round_report(labels, 10)
    assert "nmi" not in rep and rep["points_per_image"] == pytest.approx(len(labels) / n_img)
    with pytest.raises(ConfigError):
        stage0(PointTable(t.offsets, {"x": t["x"], "y": t["y"]}))          # no descriptors


def test_foreground_mask_by_hand():
    "Kept: inside the box and strictly nearer the nearest inside centroid than the nearest outside one."
    c_out = np.array([[0, 1], [-1, 0]], np.float32); c_in = np.array([[1, 0]], np.float32)
    x = np.array([[0.9, 0.1], [0.1, 0.9], [-0.9, 0.0], [0.6, 0.6], [0.9, 0.1]], np.float32)
    keep = foreground_mask(x, [True, True, True, True, False], c_out, c_in)
    np.testing.assert_array_equal(keep, [True, False, False, False, False])     # (0.6, 0.6): a tie is dropped
    np.testing.assert_array_equal(foreground_mask(x, np.ones(5, bool), c_out[:0], c_in), np.ones(5, bool))
    np.testing.assert_array_equal(foreground_mask(x, np.ones(5, bool), c_out, c_in[:0]), np.zeros(5, bool))


def test_background_clusters_known_answer():
    """A studio: 5 background structures seen outside the box in every image and now and then inside it, 6 body parts
    inside only. The two k-means and the nearer-centroid rule keep exactly the body parts."""
    rng = np.random.default_rng(3)
    D, n_img = 24, 120
    E = np.eye(D, dtype=np.float32)
    rows, fg = [], []
    for i in range(n_img):
        n_in_bg = int(rng.random() < 0.3)
        d = np.concatenate([E[:6], E[6 + rng.integers(0, 5, n_in_bg)], E[6 + rng.integers(0, 5, 8)]])
        d = (d + rng.normal(0, 0.05, d.shape)).astype(np.float32)
        n = len(d)
        rows.append({"x": rng.uniform(0, 99, n).astype(np.float32), "y": rng.uniform(0, 99, n).astype(np.float32),
                     "desc": d, "inside": np.r_[np.ones(6 + n_in_bg, bool), np.zeros(8, bool)]})
        fg.append(np.r_[np.ones(6, bool), np.zeros(n_in_bg + 8, bool)])
    t, fg = PointTable.from_lists(rows), np.concatenate(fg)
    c_out, c_in = background_centroids(t["desc"], t["inside"], (10, 6), seed=0)
    assert c_out.shape == (10, D) and c_in.shape == (6, D)
    np.testing.assert_array_equal(foreground_mask(t["desc"], t["inside"], c_out, c_in), fg)
    # a sample of 400 rows: still both sides, the same answer here
    c2 = background_centroids(t["desc"], t["inside"], (10, 6), max_points=400, seed=1)
    np.testing.assert_array_equal(foreground_mask(t["desc"], t["inside"], *c2), fg)
    # stage0: applied with the outlier removal (its density over all points, inside and outside)
    labels, C, info = stage0(t, M=6, drop=0.1, k=10, seed=0, background=(10, 6))
    assert info["n_inside"] == int(t["inside"].sum()) and info["n_foreground"] == int(fg.sum())
    kept_rows = labels["desc"] @ E[:6].T
    assert (kept_rows.max(1) > 0.8).all()                                   # every label is a body part
    assert info["n_after_outliers"] <= int(fg.sum()) and len(labels) > 0.5 * fg.sum()
    # without `background` an 'inside' column means: the box alone (outside points dropped before everything)
    assert stage0(t, M=6, drop=0.0, seed=0)[2]["n_points"] == int(t["inside"].sum())
    with pytest.raises(ConfigError, match="inside"):
        stage0(PointTable(t.offsets, {k: t[k] for k in ("x", "y", "desc")}), M=6, background=(10, 6))
