"Stage 2 mechanics: training with merges, resume, NaN, and the inference API's coordinate mapping."
import copy, os

import numpy as np
import pytest
import torch

import unsupervised_landmarks.stage2 as S2
from unsupervised_landmarks.core import PointTable, ConfigError, read_jsonl
from unsupervised_landmarks.hourglass import LandmarkNet, NET_PRESETS
from unsupervised_landmarks.data import Sample, crop_sample, apply_affine


def _data(n=12, size=64, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    pts = np.array([[16, 16], [48, 16], [32, 40]], np.float32)
    # clusters 0 and 3 label the same place (a split landmark) in alternating images: merging should find them
    per = []
    for i in range(n):
        cl = np.array([0 if i % 2 else 3, 1, 2])
        per.append({"x": pts[:, 0], "y": pts[:, 1], "cluster": cl})
    return imgs, PointTable.from_lists(per)


def test_run_and_resume(tmp_path, monkeypatch):
    imgs, lab = _data()
    torch.manual_seed(0); s1 = LandmarkNet(NET_PRESETS["test"])
    cfg = S2.stage2_config("test", iters=8, merge_warmup=2, merge_every=3, ckpt_every=2, min_images=1)
    ref = S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "ref", progress=False)
    assert ref.net.n_channels == len(ref.channel_clusters) <= 4
    assert sorted(sum(ref.channel_clusters, [])) == [0, 1, 2, 3]
    merges = [r for r in read_jsonl(tmp_path / "ref" / "metrics.jsonl") if "merge_step" in r]
    assert [m["iter"] for m in merges] == [2, 5]
    # kill in the middle, then resume: the same weights and channel map as the uninterrupted run
    real, count = S2.gaussian_targets, [0]
    def killer(*a, **k):
        count[0] += 1
        if count[0] == 6: raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(S2, "gaussian_targets", killer)
    with pytest.raises(KeyboardInterrupt):
        S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "run", progress=False)
    monkeypatch.undo()
    res = S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "run", resume=True, progress=False)
    assert res.channel_clusters == ref.channel_clusters
    for k, v in ref.net.state_dict().items():
        torch.testing.assert_close(v, res.net.state_dict()[k])
    # killed after the second merge step was logged and before the next checkpoint: the resumed run merges again,
    # and the log and the history hold that merge step (and every loss line) once, as the uninterrupted run's
    assert res.history == ref.history and [h["merge_step"] for h in res.history] == [1, 2]
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl") == read_jsonl(tmp_path / "ref" / "metrics.jsonl")
    with pytest.raises(ConfigError, match="another config"):
        S2.run_stage2(imgs, lab, s1, S2.stage2_config("test", sigma=2.0), tmp_path / "run", resume=True, progress=False)


def test_resume_after_a_step_that_merges_nothing(tmp_path, monkeypatch):
    """A merge step that merges nothing lists the channels in its plan's (size) order; it is logged but not applied.
    A resume must not apply it either when it replays the merge history (it used to: the replayed labels and channel
    map came out permuted against the checkpoint's weights). Merge plans are scripted so the case is certain."""
    imgs, lab = _data()                                   # active clusters by size: [1, 2, 0, 3] (12, 12, 6, 6 images)
    def scripted(conf, overlap, sizes, ratio=0.7):
        return next(plans)
    monkeypatch.setattr(S2, "plan_merges", scripted)
    cfg = S2.stage2_config("test", iters=8, merge_warmup=2, merge_every=3, ckpt_every=2, min_images=1, visibility="label_rate")
    torch.manual_seed(0); s1 = LandmarkNet(NET_PRESETS["test"])
    script = [[[0], [1], [2, 3]], [[0], [2], [1]]]        # merge 0+3; then a reorder that merges nothing
    plans = iter(script)
    ref = S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "ref", progress=False)
    assert ref.channel_clusters == [[1], [2], [0, 3]]
    real, count = S2.gaussian_targets, [0]
    def killer(*a, **k):                                  # die at iteration 7, after both merge steps and the checkpoint at 6
        count[0] += 1
        if count[0] == 8: raise KeyboardInterrupt
        return real(*a, **k)
    plans = iter(script)
    monkeypatch.setattr(S2, "gaussian_targets", killer)
    with pytest.raises(KeyboardInterrupt):
        S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "run", progress=False)
    monkeypatch.setattr(S2, "gaussian_targets", real)
    res = S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "run", resume=True, progress=False)
    assert res.channel_clusters == ref.channel_clusters
    np.testing.assert_allclose(res.visibility_threshold, ref.visibility_threshold)
    for k, v in ref.net.state_dict().items():
        torch.testing.assert_close(v, res.net.state_dict()[k])


def test_merge_plan_merges_split_landmark():
    xy = np.tile(np.array([[10, 10], [40, 10], [10, 11], [30, 40]], np.float32), (20, 1, 1))
    pk = np.full((20, 4), 0.9)
    conf, ov = S2.channel_overlap(xy, pk, stride=4)
    groups = S2.plan_merges(conf, ov, sizes=np.array([20, 15, 10, 12]))
    assert groups == [[0, 2], [1], [3]]


def test_nan_stops(tmp_path, monkeypatch):
    imgs, lab = _data()
    s1 = LandmarkNet(NET_PRESETS["test"])
    monkeypatch.setattr(S2, "gaussian_targets", lambda p, grid, stride, sigma: torch.full((*p.shape[:2], grid, grid), float("nan")))
    with pytest.raises(FloatingPointError, match="stage 2"):
        S2.run_stage2(imgs, lab, s1, S2.stage2_config("test", min_images=1), tmp_path, progress=False)


def test_detector_maps_back_to_image_coordinates(tmp_path):
    imgs, lab = _data()
    s1 = LandmarkNet(NET_PRESETS["test"])
    S2.run_stage2(imgs, lab, s1, S2.stage2_config("test", min_images=1), tmp_path, progress=False)
    det = S2.LandmarkDetector.load(tmp_path)
    big = np.random.default_rng(1).integers(0, 255, (2, 150, 200, 3), dtype=np.uint8)
    boxes = np.array([[40, 30, 120, 110], [10, 20, 90, 140]], np.float32)
    xy, vis, peak = det(list(big), boxes)
    assert xy.shape == (2, det.K, 2) and vis.shape == (2, det.K)
    # the same points computed by hand: crop, predict in the crop, invert the crop's affine
    # (a point that falls outside the image, in the crop's padding, is put on its border and is not visible)
    for i in range(2):
        s = crop_sample(Sample(big[i], boxes[i], None, None, {}), det.in_size, det.enlarge)
        pc, vc, _ = det.predict_crops(s.image[None])
        back = apply_affine(np.linalg.inv(np.vstack([s.meta["crop_affine"], [0, 0, 1]]))[:2], pc[0])
        inside = ((back >= 0) & (back <= [200, 150])).all(1)
        np.testing.assert_allclose(xy[i], np.clip(back, 0, [200, 150]), atol=1e-3)
        np.testing.assert_array_equal(vis[i], vc[0] & inside)
    with pytest.raises(FileNotFoundError, match="stage2_final.pt"):
        S2.LandmarkDetector.load(tmp_path / "nope")


@pytest.mark.parametrize("merge_grid, cell", [(None, 4.0), (32, 2.0)])
def test_merge_grid_sets_the_overlap_cell(tmp_path, monkeypatch, merge_grid, cell):
    "The merge steps measure overlap in cells of in_size / merge_grid px (the detector's stride when None)."
    imgs, lab = _data()
    torch.manual_seed(0); s1 = LandmarkNet(NET_PRESETS["test"])
    seen, real = [], S2.channel_overlap
    def spy(xy, peak, stride, *a, **k):
        seen.append(stride); return real(xy, peak, stride, *a, **k)
    monkeypatch.setattr(S2, "channel_overlap", spy)
    cfg = S2.stage2_config("test", iters=4, merge_warmup=2, merge_every=5, min_images=1, merge_grid=merge_grid)
    S2.run_stage2(imgs, lab, s1, cfg, tmp_path, progress=False)
    assert seen == [cell]                                   # test net: 64-px input, stride 4


def test_absent_weight_reaches_the_loss(tmp_path, monkeypatch):
    "run_stage2 hands detector_loss the config's absent_weight and the per-image labelled channels (some unlabelled)."
    imgs, _ = _data()
    lab = PointTable.from_lists([{"x": np.array([16.0]), "y": np.array([16.0]), "cluster": np.array([i % 2])}
                                 for i in range(len(imgs))])   # each image labels one of the two channels
    real = S2.detector_loss
    for w in (None, 1.0):
        seen = []
        def spy(out, target, labelled, absent_weight=None):
            seen.append((labelled.clone(), absent_weight)); return real(out, target, labelled, absent_weight)
        monkeypatch.setattr(S2, "detector_loss", spy)
        torch.manual_seed(0); s1 = LandmarkNet(NET_PRESETS["test"])
        S2.run_stage2(imgs, lab, s1, S2.stage2_config("test", iters=2, merge_every=0, min_images=1, absent_weight=w),
                      tmp_path / str(w), progress=False)
        assert len(seen) == 2 and all(a == w for _, a in seen)
        assert all(v.shape[1] == 2 and (v.sum(1) == 1).all() for v, _ in seen)   # one labelled, one absent per image


def test_label_rate_visibility(tmp_path):
    """visibility='label_rate': per-channel thresholds, saved with the detector and reloaded; on the training images each
    channel fires on about the share of images where its clusters were labelled."""
    imgs, lab = _data(n=20)
    keep = ~((lab["cluster"] == 1) & (lab.image % 4 != 0))        # cluster 1 labelled in 5 of 20 images only
    lab = lab.filter(keep)
    s1 = LandmarkNet(NET_PRESETS["test"])
    cfg = S2.stage2_config("test", min_images=1, merge_every=0, visibility="label_rate")
    res = S2.run_stage2(imgs, lab, s1, cfg, tmp_path, progress=False)
    thr = np.asarray(res.visibility_threshold)
    assert thr.shape == (res.net.n_channels,)
    det = S2.LandmarkDetector.load(tmp_path)
    np.testing.assert_allclose(det.visibility_threshold, thr, rtol=1e-6)
    _, vis, _ = det.predict_crops(imgs)
    rates = {c: len(np.unique(lab.image[np.isin(lab["cluster"], g)])) / len(imgs) for c, g in enumerate(res.channel_clusters)}
    for c, r in rates.items():
        assert abs(vis[:, c].mean() - r) <= 1.5 / len(imgs), (c, vis[:, c].mean(), r)
    assert min(rates.values()) == 0.25
    logged = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "visibility_thresholds" in r]
    assert len(logged) == 1 and len(logged[0]["visibility_thresholds"]) == res.net.n_channels
    with pytest.raises(ConfigError, match="visibility"):
        S2.run_stage2(imgs, lab, s1, S2.stage2_config("test", min_images=1, visibility="often"), tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()                           # refused before anything was trained or written


def test_rigid_shape_check(tmp_path):
    """shape_tol / shape_view: training ends by fitting a rigid shape to the training detections; it is saved with the
    detector, reloaded, and the detector's visible flags are exactly the shape check of the peak-threshold ones."""
    imgs, lab = _data(n=20)
    s1 = LandmarkNet(NET_PRESETS["test"])
    cfg = S2.stage2_config("test", min_images=1, merge_every=0, visibility="label_rate", shape_tol=0.1, shape_view=0.4)
    res = S2.run_stage2(imgs, lab, s1, cfg, tmp_path, progress=False)
    assert res.shape is not None and len(res.shape["channels"]) >= 4
    det = S2.LandmarkDetector.load(tmp_path)
    assert det.shape is not None and det.shape.tol == 0.1 and det.shape.view == 0.4
    xy, vis, peak = det.predict_crops(imgs)
    raw = peak >= det.visibility_threshold
    c = det.shape_channels
    np.testing.assert_array_equal(vis[:, c], det.shape.check(xy[:, c], raw[:, c]))
    assert not (vis & ~raw).any()                                  # the check only removes detections
    plain = S2.LandmarkDetector(det.net, det.channel_clusters, det.visibility_threshold)
    np.testing.assert_array_equal(plain.predict_crops(imgs)[1], raw)
    for bad in ({"shape_tol": -1.0}, {"shape_view": 0.5}, {"shape_tol": 0.1, "shape_view": 2.0}):
        with pytest.raises(ConfigError, match="shape_"):
            S2.run_stage2(imgs, lab, s1, S2.stage2_config("test", min_images=1, **bad), tmp_path / "b", progress=False)
        assert not (tmp_path / "b").exists()


def test_paper_schedule_across_merges_and_resume(tmp_path, monkeypatch):
    """The paper's schedule on a tiny run: 2-step accumulation, lr x0.1 at two milestones, merges every epoch at the
    effective batch, the descriptor head and the cell targets. Every optimiser step uses lr_at(i), also right after a
    merge rebuilt the optimiser and after a resume; a run killed mid-step and resumed ends with the same weights."""
    imgs, lab = _data()                                   # 12 images; active clusters by size: [1, 2, 0, 3]
    cfg = S2.stage2_config("test", iters=10, batch=2, accum=2, lr_milestones=(3, 7), merge_warmup=2, merge_every=100,
                           merge_every_epochs=1, head="desc", target="cell", scale=(0.7, 1.3, 0.7, 1.3), ckpt_every=2,
                           min_images=1)
    assert S2.merge_interval(cfg, len(imgs)) == 3         # one pass over 12 images at 2 x 2 a step
    script = [[[0], [1], [2, 3]], [[0], [1], [2]], [[0, 2], [1]]]   # merges at 2 and 8 rebuild the optimiser, 5 not
    monkeypatch.setattr(S2, "plan_merges", lambda conf, overlap, sizes, ratio=0.7: next(plans))
    real_opt, lrs = S2.detector_optimizer, []
    def spy_opt(net, c):
        opt = real_opt(net, c); step = opt.step
        def rec(*a, **k):
            lrs.append(opt.param_groups[0]["lr"]); return step(*a, **k)
        opt.step = rec
        return opt
    monkeypatch.setattr(S2, "detector_optimizer", spy_opt)
    torch.manual_seed(0); s1 = LandmarkNet(NET_PRESETS["test"])
    plans = iter(script)
    ref = S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "ref", progress=False)
    assert lrs == [S2.lr_at(cfg, i) for i in range(10)] == [5e-4] * 3 + [5e-4 * 0.1] * 4 + [5e-4 * 0.1 * 0.1] * 3
    assert [m["iter"] for m in read_jsonl(tmp_path / "ref" / "metrics.jsonl") if "merge_step" in m] == [2, 5, 8]
    assert ref.channel_clusters == [[1, 0, 3], [2]]
    real, count = S2.cell_targets, [0]
    def killer(*a, **k):                                  # two micro-batches a step: call 13 is iteration 6's first
        count[0] += 1
        if count[0] == 13: raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(S2, "cell_targets", killer)
    plans = iter(script)
    with pytest.raises(KeyboardInterrupt):
        S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "run", progress=False)
    monkeypatch.setattr(S2, "cell_targets", real)
    plans, lrs[:] = iter(script[2:]), []                  # the checkpoint at 6 holds the merges at 2 and 5
    res = S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "run", resume=True, progress=False)
    assert lrs == [S2.lr_at(cfg, i) for i in range(6, 10)]
    assert res.channel_clusters == ref.channel_clusters
    for k, v in ref.net.state_dict().items():
        assert torch.equal(v, res.net.state_dict()[k]), k


def test_paper_head_starts_from_the_descriptor_head():
    imgs, lab = _data()
    torch.manual_seed(0); s1 = LandmarkNet(NET_PRESETS["test"])
    st = S2.initial_state(lab, s1, S2.stage2_config("paper", min_images=1), "cpu")
    assert torch.equal(st.net.head[0].weight, s1.desc_head[0].weight) and st.net.n_channels == 4
    st = S2.initial_state(lab, s1, S2.stage2_config("test", min_images=1), "cpu")
    assert not torch.equal(st.net.head[0].weight, s1.desc_head[0].weight)


def _ddp_accum_worker(rank, port, out):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        imgs, lab = _data()
        torch.manual_seed(0); s1 = LandmarkNet(NET_PRESETS["test"])
        cfg = S2.stage2_config("test", batch=4, accum=2, lr=0.0, weight_decay=0.0, min_images=1)
        st = S2.initial_state(lab, s1, cfg, "cpu")
        st.opt, st.model = S2.detector_optimizer(st.net, cfg), S2.wrap_model(st.net, torch.device("cpu"))
        rng, aug = np.random.default_rng([7, rank]), S2.augmenter_for(cfg)
        torch.manual_seed(100 + rank)
        rs, ts = copy.deepcopy(rng.bit_generator.state), torch.get_rng_state()
        S2.detector_step(st, imgs, cfg, rng, aug, "cpu", 0)
        got = torch.cat([p.grad.flatten() for p in st.net.parameters()])
        rng.bit_generator.state = rs; torch.set_rng_state(ts)     # the same micro-batches again, without DDP
        losses = []
        for _ in range(2):
            x, p, v = S2.sample_batch(imgs, st.pts, st.mask, 2, rng, "cpu"); x, p, v, _ = aug(x, p, v)
            losses.append(S2.detector_loss(st.net(x), S2.detector_targets(p, v, 16, 4, cfg.sigma), v))
        mine = torch.cat([g.flatten() for g in torch.autograd.grad(sum(losses) / 2, list(st.net.parameters()))])
        dist.all_reduce(mine); mine /= 2                                # DDP's average over the two processes
        torch.save({"got": got, "want": mine}, out / f"r{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_accumulation_under_ddp(tmp_path):
    "Under DistributedDataParallel the accumulated step's gradient is the mean over micro-batches and processes."
    import socket, torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    mp.spawn(_ddp_accum_worker, args=(port, tmp_path), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in (0, 1))
    torch.testing.assert_close(r0["got"], r1["got"], rtol=0, atol=0)     # one all-reduced gradient on both ranks
    torch.testing.assert_close(r0["got"], r0["want"], rtol=1e-4, atol=1e-6)


def _small_run(tmp_path, **kw):
    imgs, lab = _data()
    torch.manual_seed(0); s1 = LandmarkNet(NET_PRESETS["test"])
    return imgs, lab, s1, S2.stage2_config("test", min_images=1, **kw)


def _nan_at(monkeypatch, call):
    "Targets of NaN from the `call`-th call on (one call per iteration in the test preset)."
    real, count = S2.gaussian_targets, [0]
    def poisoned(*a, **k):
        count[0] += 1
        t = real(*a, **k)
        return t * float("nan") if count[0] >= call else t
    monkeypatch.setattr(S2, "gaussian_targets", poisoned)


def test_nan_stop_says_what_is_left(tmp_path, monkeypatch):
    imgs, lab, s1, cfg = _small_run(tmp_path, ckpt_every=2)
    _nan_at(monkeypatch, 4)                                          # iteration 3: the checkpoint after 2 is good
    with pytest.raises(FloatingPointError, match=r"stage 2, iteration 3: loss is nan; the last good checkpoint "
                       r"\(after 2 iterations\) is kept at .*stage2_last.pt\. The weight and gradient norms were within"):
        S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "a", progress=False)
    _nan_at(monkeypatch, 1)
    with pytest.raises(FloatingPointError, match="iteration 0: loss is nan; no checkpoint has been written yet"):
        S2.run_stage2(imgs, lab, s1, cfg, tmp_path / "b", progress=False)


def test_exploded_weights_are_never_checkpointed(tmp_path):
    "lr=1e9: the weights explode at iteration 0 and the loss is NaN at 1; with ckpt_every=1 nothing exploded is kept."
    imgs, lab, s1, cfg = _small_run(tmp_path, lr=1e9, ckpt_every=1)
    with pytest.warns(RuntimeWarning, match="stage 2: the weight norm is .* at iteration 0"), \
            pytest.raises(FloatingPointError, match="no checkpoint has been written yet.*lower lr"):
        S2.run_stage2(imgs, lab, s1, cfg, tmp_path, progress=False)
    assert not (tmp_path / "checkpoints" / "stage2_last.pt").exists()


def test_divergence_warns_once(tmp_path):
    "lr=10 blows the weights up without a NaN: a warning (one), the run completes, the norms are in the log."
    imgs, lab, s1, cfg = _small_run(tmp_path, lr=10.0)
    with pytest.warns(RuntimeWarning, match="stage 2: the weight norm") as w:
        S2.run_stage2(imgs, lab, s1, cfg, tmp_path, progress=False)
    assert len([x for x in w if "stage 2: the weight norm" in str(x.message)]) == 1
    assert all("weight_norm" in r and "grad_norm" in r for r in read_jsonl(tmp_path / "metrics.jsonl") if "loss" in r)


def test_inference_refuses_bad_inputs(tmp_path):
    imgs, lab, s1, cfg = _small_run(tmp_path)
    res = S2.run_stage2(imgs, lab, s1, cfg, tmp_path, progress=False)
    det = S2.LandmarkDetector(res.net, res.channel_clusters, res.visibility_threshold)
    with pytest.raises(ValueError, match=r"crops of uint8 values 0-255 expected, got float64 values in \[0, 0\.996\d*\], images scaled to \[0, 1\]"):
        det.predict_crops(imgs[:2] / 255.0)
    with pytest.raises(ValueError, match=r"\(B, 64, 64, 3\), the network's input size 64 px, expected, got shape \(2, 48, 48, 3\)"):
        det.predict_crops(imgs[:2, :48, :48])
    with pytest.raises(ValueError, match="no crops given"):
        det.predict_crops(imgs[:0])
    with pytest.raises(ValueError, match="no images given"):
        det([])
    with pytest.raises(ValueError, match="image 0 of uint8 values 0-255 expected"):
        det([imgs[0] / 255.0])
    xy, vis, peak = det.predict_crops(imgs[:2].astype(np.float32))    # 0-255 floats are the same pixels
    np.testing.assert_allclose(xy, det.predict_crops(imgs[:2])[0])


def test_full_image_points_stay_inside(tmp_path):
    "Without boxes the square crop pads a tall image on both sides: points that land in the padding are not in the image."
    imgs, lab, s1, cfg = _small_run(tmp_path)
    res = S2.run_stage2(imgs, lab, s1, cfg, tmp_path, progress=False)
    det = S2.LandmarkDetector(res.net, res.channel_clusters, res.visibility_threshold)
    tall = np.random.default_rng(2).integers(0, 255, (3, 120, 20, 3), dtype=np.uint8)
    xy, vis, peak = det(list(tall))
    assert (xy >= 0).all() and (xy[..., 0] <= 20).all() and (xy[..., 1] <= 120).all()
    s = crop_sample(Sample(tall[0], np.array([0, 0, 20, 120], np.float32), None, None, {}), det.in_size, 1.0)
    back = apply_affine(np.linalg.inv(np.vstack([s.meta["crop_affine"], [0, 0, 1]]))[:2], det.predict_crops(s.image[None])[0][0])
    outside = ~((back >= 0) & (back <= [20, 120])).all(1)
    assert not vis[0][outside].any()                             # a point that was in the padding is not visible
