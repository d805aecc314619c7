"Integration tests for unsupervised_landmarks.synthetic: visibility by depth test, landmarks on the object, determinism, caching."
import json

import numpy as np
import pytest

from unsupervised_landmarks.core import ConfigError
from unsupervised_landmarks.data import ArrayDataset, load_dataset
from unsupervised_landmarks.synthetic import (
    BODY_JOINTS, HEAD_FLIP, HEAD_LANDMARKS, SynthBodies, SynthHeads, _generate, camera_matrix, render_bodies,
    render_heads, sample_body_views, sample_heads, sample_views)

L = HEAD_LANDMARKS.index


def posed(sampler, n, yaw, pitch=0.0, roll=0.0, split="train", n_identities=None):
    v = sampler(0, split, np.arange(n), n_identities or n)
    v["identity"] = np.arange(n) % (n_identities or n)
    for k, a in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
        v[k] = np.broadcast_to(np.asarray(a, np.float64), (n,)).copy()
    v["M"] = camera_matrix(v["yaw"], v["pitch"], v["roll"]).astype(np.float32)
    return v


@pytest.fixture(scope="module")
def profile_views():
    "12 identities at yaw +90, -90 and 0 (pitch 0) and the same at pitch +-15."
    n = 12
    out = {}
    for yaw in (90, -90, 0):
        for pitch in (0, 15 if yaw >= 0 else -15):
            out[(yaw, pitch)] = render_heads(None, views=posed(sample_views, n, yaw, pitch), n_identities=n, aux=True)
    return out


def test_far_side_hidden_in_profile(profile_views):
    for pitch in (0, 15):
        v = profile_views[(90, pitch)]["visible"]        # +90 turns the face to the image's right: the _l side shows
        assert not v[:, [L("ear_r"), L("eye_outer_r"), L("brow_outer_r"), L("pupil_r"), L("mouth_r")]].any()
        assert v[:, [L("ear_l"), L("eye_outer_l"), L("brow_outer_l"), L("mouth_l")]].all()
    for pitch in (0, -15):
        v = profile_views[(-90, pitch)]["visible"]
        assert not v[:, [L("ear_l"), L("eye_outer_l"), L("brow_outer_l"), L("pupil_l"), L("mouth_l")]].any()
        assert v[:, [L("ear_r"), L("eye_outer_r"), L("brow_outer_r"), L("mouth_r")]].all()


def test_frontal_all_visible(profile_views):
    v = profile_views[(0, 0)]["visible"]
    assert v[:, [L("ear_l"), L("ear_r"), L("eye_outer_l"), L("eye_outer_r")]].all()
    assert v.mean() > 0.97


def _on_object(out, tol=1):
    "Every visible landmark has an object pixel within `tol` px; returns their depth mismatch in px (heads)."
    S = out["images"].shape[1]
    obj = np.isfinite(out["depth"])
    bad = []
    for i, j in zip(*np.nonzero(out["visible"])):
        x, y = out["landmarks"][i, j]
        c, r = int(np.floor(x)), int(np.floor(y))
        if not obj[i, max(r - tol, 0):r + tol + 1, max(c - tol, 0):c + tol + 1].any(): bad.append((i, j, x, y))
    assert not bad, bad[:5]


def test_visible_landmarks_lie_on_the_object():
    heads = render_heads(np.arange(48), seed=5, n_identities=12, aux=True)
    _on_object(heads)
    bodies = render_bodies(np.arange(24), seed=5, n_identities=6, aux=True)
    _on_object(bodies)
    # hidden landmarks are behind the rendered surface: on the frontal half most are visible, in profile not
    assert 0.6 < heads["visible"].mean() < 1.0
    assert 0.4 < bodies["visible"].mean() < 1.0


def test_visible_head_landmarks_are_on_the_front_surface():
    "The depth of a visible landmark matches the rendered depth map around it (a real depth test)."
    v = sample_views(2, "train", np.arange(32), 8)
    out = render_heads(None, views=v, seed=2, n_identities=8, aux=True)
    ident = sample_heads(2, "train", v["identity"])
    from unsupervised_landmarks.synthetic import head_landmarks
    lm3, _ = head_landmarks(ident, v["gaze"])
    z = np.einsum("bij,blj->bli", v["M"], lm3)[..., 2]              # camera depth of each landmark
    errs = []
    for i, j in zip(*np.nonzero(out["visible"])):
        x, y = out["landmarks"][i, j]
        c, r = int(np.floor(x)), int(np.floor(y))
        win = out["depth"][i, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
        errs.append(np.abs(win - z[i, j]).min() * v["s"][i])
    errs = np.array(errs)
    assert np.median(errs) < 0.3 and np.quantile(errs, 0.99) < 3, (np.median(errs), errs.max())


def test_landmarks_inside_the_frame_and_box():
    out = render_heads(np.arange(32), seed=1, n_identities=8)
    S = out["images"].shape[1]
    lm, vis, box = out["landmarks"], out["visible"], out["boxes"]
    assert ((lm[vis] >= 0) & (lm[vis] < S)).all()
    inside = ((lm[..., 0] >= box[:, None, 0] - 1) & (lm[..., 0] <= box[:, None, 2] + 1) &
              (lm[..., 1] >= box[:, None, 1] - 1) & (lm[..., 1] <= box[:, None, 3] + 1))
    assert inside[vis].mean() > 0.98
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    assert (w > 30).all() and (h > 40).all() and (h < S).all()


def test_flip_pairs_mirror():
    "A head at yaw a and the same head at yaw -a are mirror images for the landmarks (symmetric identities)."
    n = 6
    a = render_heads(None, views=posed(sample_views, n, 35.0), n_identities=n)
    b = render_heads(None, views=posed(sample_views, n, -35.0), n_identities=n)
    perm = np.arange(len(HEAD_LANDMARKS))
    for i, j in HEAD_FLIP: perm[i], perm[j] = j, i
    cx = sample_views(0, "train", np.arange(n), n)["cx"]
    mirrored = b["landmarks"][:, perm].copy()
    mirrored[..., 0] = 2 * cx[:, None] - mirrored[..., 0]
    fin = a["visible"] & b["visible"][:, perm]
    pupils = [L("pupil_l"), L("pupil_r")]                            # the gaze is not mirrored
    fin[:, pupils] = False
    assert np.abs(mirrored - a["landmarks"])[fin].max() < 0.05
    assert (a["visible"][:, :18] == b["visible"][:, perm][:, :18]).mean() > 0.97


def test_determinism_and_seeds():
    a = render_heads(np.arange(8), seed=3, n_identities=4)
    b = render_heads(np.arange(8), seed=3, n_identities=4)
    assert all(np.array_equal(a[k], b[k]) for k in ("images", "landmarks", "visible", "boxes"))
    c = render_heads(np.arange(8), seed=4, n_identities=4)
    assert (a["images"] != c["images"]).mean() > 0.5
    # an image depends only on (seed, split, index): rendering it in another batch gives the same pixels
    d = render_heads(np.arange(4, 8), seed=3, n_identities=4)
    assert np.array_equal(d["images"], a["images"][4:]) and np.array_equal(d["landmarks"], a["landmarks"][4:])
    # train and test use different identities
    tr, te = sample_heads(0, "train", [0, 1]), sample_heads(0, "test", [0, 1])
    assert not np.allclose(tr["feats"], te["feats"])


def test_dataset_cache_and_prefix(tmp_path):
    ds = SynthHeads(12, "train", seed=2, root=tmp_path, progress=False)
    assert ds.generated and ds.path.is_file() and ds.path.parent.parent == tmp_path
    assert ds.path.parent.name.startswith("synthheads-")
    params = json.loads((ds.path.parent / "params.json").read_text())
    assert params["n"] == 12 and params["seed"] == 2 and params["kind"] == "synthheads"
    again = SynthHeads(12, "train", seed=2, root=tmp_path, progress=False)
    assert not again.generated and np.array_equal(again.images, ds.images) and np.array_equal(again.visible, ds.visible)
    assert isinstance(again, ArrayDataset) and again.landmark_names == HEAD_LANDMARKS and again.norm == "box"
    test = SynthHeads(12, "test", seed=2, root=tmp_path, progress=False)
    assert test.path != ds.path and (test.images != ds.images).mean() > 0.5
    small = SynthHeads(5, "train", seed=2, root=tmp_path, progress=False, n_identities=1)
    big = SynthHeads(10, "train", seed=2, root=tmp_path, progress=False, n_identities=1)
    assert np.array_equal(small.images, big.images[:5])                # a smaller n is a prefix
    ds.path.write_bytes(b"not an npz")                                  # a broken cache is rebuilt
    fixed = SynthHeads(12, "train", seed=2, root=tmp_path, progress=False)
    assert fixed.generated and np.array_equal(fixed.images, again.images)
    s = fixed[3]
    assert s.image.shape == (128, 128, 3) and s.landmarks.shape == (20, 2) and set(s.meta) >= {"yaw", "identity"}
    with pytest.raises(ConfigError, match="split"): SynthHeads(4, "dev", root=tmp_path)


def test_default_root_is_data_dir(data_tmp):
    ds = SynthBodies(4, "train", progress=False)
    assert ds.path.parent.parent == data_tmp and ds.path.parent.name.startswith("synthbodies-")
    assert ds.landmarks.shape == (4, 14, 2) and ds.landmark_names == BODY_JOINTS
    assert load_dataset("synthbodies", split="train", n=4, progress=False).path == ds.path
    assert type(load_dataset("synthheads", split="test", n=3, progress=False)).__name__ == "SynthHeads"


def test_worker_processes_give_the_same_data():
    kw = dict(split="train", image_size=64, seed=0, yaw_range=90.0, n_identities=4)
    one = _generate("synthheads", 40, kw, 1, progress=False)
    two = _generate("synthheads", 40, kw, 2, progress=False)
    assert np.array_equal(one["images"], two["images"]) and np.array_equal(one["landmarks"], two["landmarks"])
    assert np.array_equal(one["meta"]["yaw"], two["meta"]["yaw"])


def test_bodies_full_turn_and_image_size():
    out = render_bodies(np.arange(32), seed=1, n_identities=8, image_size=96, aux=True)
    assert out["images"].shape == (32, 96, 96, 3)
    assert out["meta"]["yaw"].min() < -90 and out["meta"]["yaw"].max() > 90
    # from behind, the head (joint 0) is usually still visible while a wrist is often hidden
    vb = posed(sample_body_views, 12, 180.0, n_identities=12)
    back = render_bodies(None, views=vb, n_identities=12)
    assert back["visible"][:, BODY_JOINTS.index("head")].mean() > 0.8
    assert not back["visible"].all()
