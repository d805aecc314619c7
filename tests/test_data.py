"Integration tests for unsupervised_landmarks.data: every loader on its fixture, crops, caching, Torch7, augmentation."
import os, struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from unsupervised_landmarks.core import ConfigError, DatasetError
from unsupervised_landmarks.data import (
    DATASETS, FIXTURES, ArrayDataset, Augmenter, LandmarkDataset, Sample, apply_affine, box_from_points,
    crop_sample, load_dataset, materialize, read_image, read_t7, register_dataset, write_fixture_celeba, write_t7)

SPLITS = {"celeba": ["train", "val", "test"], "mafl": ["train", "test"], "aflw": ["train", "test"],
          "ls3d": ["train", "test"], "h36m": ["train", "test"], "bbcpose": ["train", "val", "test"],
          "cats": ["train", "test"]}


def bright(img, pts, thr=200):
    return np.array([img[int(y), int(x)].min() >= thr for x, y in pts])


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixtures")
    out = {}
    for name, writer in FIXTURES.items():
        root = base / ("celeba" if name == "mafl" else name)
        if name == "mafl": out[name] = out["celeba"]; continue
        out[name] = writer(root)
    return out


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_loader_on_fixture(name, fixtures, tmp_path):
    fx = fixtures[name]
    for split in SPLITS[name]:
        ds = load_dataset(name, fx["root"], split)
        assert isinstance(ds, LandmarkDataset)
        assert len(ds) == fx["sizes"][(name, split)], (name, split)
        assert ds.name == name and ds.split == split
        s = ds[0]
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
        assert s.landmarks.shape == (len(ds.landmark_names), 2) and s.visible.all()
        assert bright(s.image, s.landmarks).all(), f"{name}/{split}: landmarks not on the fixture dots"
        x0, y0, x1, y1 = s.box
        assert x1 > x0 and y1 > y0
        # crop to 32x32 in memory and through the cache; landmarks map with the stored affine
        cache = tmp_path / f"{name}-{split}.npz"
        m = materialize(ds, size=32, cache=cache, progress=False)
        assert m.images.shape == (len(ds), 32, 32, 3) and cache.is_file()
        assert m.landmarks.shape == (len(ds), len(ds.landmark_names), 2)
        for i in range(len(ds)):
            np.testing.assert_allclose(apply_affine(m.meta["crop_affine"][i], ds[i].landmarks), m.landmarks[i], atol=1e-3)
        back = ArrayDataset.load(cache)
        assert back.describe() == m.describe() and np.array_equal(back.images, m.images)
        assert materialize(ds, size=32, cache=cache, progress=False).images.tobytes() == m.images.tobytes()


def test_eval_attributes():
    c = load_dataset.__globals__["CelebA"]
    assert (c.eye_idx, c.norm) == ((0, 1), "interocular")
    ls3d = load_dataset.__globals__["LS3D"]
    assert ls3d.norm == "box" and ls3d.eye_idx == (36, 45) and len(ls3d.landmark_names) == 68
    for cls in ["LS3D", "Human36M", "BBCPose", "CatHeads", "CelebA"]:
        k = load_dataset.__globals__[cls]
        pairs = np.array(k.flip_pairs)
        assert pairs.max() < len(k.landmark_names) and len(set(pairs.ravel())) == pairs.size   # disjoint pairs


def test_celeba_flat_layout_and_protocol(tmp_path):
    fx = write_fixture_celeba(tmp_path / "flat", layout="flat")
    tr = load_dataset("celeba", fx["root"], "train")
    te = load_dataset("mafl", fx["root"], "test")
    assert len(tr) == 6 and len(te) == 3
    assert not {p.name for p in tr.paths} & {p.name for p in te.paths}        # CelebA train excludes MAFL test
    for s in te:
        np.testing.assert_allclose(s.landmarks, fx["truth"][Path(s.meta["path"]).name])
    with pytest.raises(ConfigError, match="variant='wild'"):
        load_dataset("celeba", fx["root"], box="file")


def test_default_root_from_data_dir(tmp_path, monkeypatch):
    FIXTURES["cats"](tmp_path / "cats")
    monkeypatch.setenv("UL_DATA_DIR", str(tmp_path))
    assert len(load_dataset("cats", split="test")) == 1


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_missing_dir_lists_layout(name, tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset(name, tmp_path / "absent")
    assert "absent" in str(e.value) and "Expected layout" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="Expected layout"):
        load_dataset(name, tmp_path / "empty")


def test_unreadable_image_names_file(fixtures, tmp_path):
    import shutil
    root = tmp_path / "cats"
    shutil.copytree(fixtures["cats"]["root"], root)
    ds = load_dataset("cats", root, "train")
    ds.paths[0].write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=ds.paths[0].name):
        ds[0]
    ds.paths[1].unlink()
    with pytest.raises(DatasetError, match="not found"):
        ds[1]


def test_registry():
    with pytest.raises(ConfigError, match="known"):
        load_dataset("no-such-dataset")

    @register_dataset("unit-toy")
    def toy(root=None, split="train", n=3):
        return ArrayDataset(np.zeros((n, 8, 8, 3), np.uint8), name="unit-toy", split=split)
    try:
        assert len(load_dataset("Unit-Toy", split="test", n=4)) == 4
    finally:
        DATASETS.pop("unit-toy")


def test_crop_keeps_aspect_and_nan():
    img = np.zeros((30, 90, 3), np.uint8); img[:, 40:50] = 255            # a vertical bright bar
    s = Sample(img, [0, 0, 90, 30], [[45, 15], [np.nan, np.nan]])
    c = crop_sample(s, size=45, enlarge=1.0)                                # scale 0.5, vertical padding
    assert c.image.shape == (45, 45, 3)
    assert c.image[:7].max() == 0 and c.image[38:].max() == 0               # padded above and below, not stretched
    np.testing.assert_allclose(c.landmarks[0], [22.5, 22.5], atol=1e-5)
    assert np.isnan(c.landmarks[1]).all() and not c.visible[1]
    cols = np.flatnonzero(c.image[22, :, 0] > 128)
    assert 19 <= cols.min() and cols.max() <= 25                            # the bar is 5 px wide at half scale


def test_t7_formats(tmp_path):
    for dt in [np.float32, np.float64, np.int64, np.uint8]:
        a = (np.arange(24).reshape(2, 3, 4) * 3).astype(dt)
        np.testing.assert_array_equal(read_t7(write_t7(tmp_path / f"{dt.__name__}.t7", a)), a)
    # a table {1: 2.5, 'k': 'v', 2: true} followed by nothing: numbers, strings, booleans, tables
    st = lambda t: struct.pack("<i", len(t)) + t.encode()
    buf = struct.pack("<iii", 3, 1, 3) + struct.pack("<id", 1, 1.0) + struct.pack("<id", 1, 2.5) \
        + struct.pack("<i", 2) + st("k") + struct.pack("<i", 2) + st("v") \
        + struct.pack("<id", 1, 2.0) + struct.pack("<ii", 5, 1)
    (tmp_path / "t.t7").write_bytes(buf)
    assert read_t7(tmp_path / "t.t7") == {1.0: 2.5, "k": "v", 2.0: True}
    (tmp_path / "bad.t7").write_bytes(struct.pack("<i", 42))
    with pytest.raises(DatasetError, match="bad.t7"):
        read_t7(tmp_path / "bad.t7")


def test_augmenter_identity_geometry_and_photometric():
    x = torch.rand(4, 3, 32, 32); p = torch.rand(4, 5, 2) * 32
    out, q, v, A = Augmenter(rotation=0, scale=(1, 1), shift=0, photometric=True, seed=0)(x, p)
    torch.testing.assert_close(q, p, atol=1e-4, rtol=0)
    torch.testing.assert_close(A, torch.eye(3).repeat(4, 1, 1), atol=1e-5, rtol=0)
    assert not torch.equal(out, x) and out.min() >= 0 and out.max() <= 1
    p[1, 2] = float("nan")
    _, q2, v2, _ = Augmenter(seed=0)(x, p)
    assert not v2[1, 2] and torch.isnan(q2[1, 2]).all()


def test_augmenter_reproducible_and_fast():
    x = torch.rand(32, 3, 128, 128); p = torch.rand(32, 50, 2) * 128
    a, b = Augmenter(seed=7), Augmenter(seed=7)
    ra, rb = a(x, p), b(x, p)
    assert all(torch.equal(u, w) for u, w in zip(ra[:3], rb[:3])) and torch.equal(ra[3], rb[3])
    assert not torch.equal(a(x, p)[3], ra[3])                # the generator advances
    t = time.perf_counter(); a(x, p); dt = time.perf_counter() - t
    assert dt < 5.0, dt                                      # ~0.1 s on an idle core
    # the returned affine maps the input points to the output points
    q = p @ ra[3][:, :2, :2].transpose(1, 2) + ra[3][:, None, :2, 2]
    torch.testing.assert_close(ra[1], q, atol=1e-3, rtol=0)
    inside = (ra[1] >= 0).all(-1) & (ra[1] < 128).all(-1)
    assert torch.equal(ra[2], inside)


# --- the official code's evaluation data (issue 27): MAFL 68-point ground truth, Human3.6M left-right reordering ---

def _write_gt68(path, names, seed=0, fmt="pickle"):
    "A 68-point ground-truth file for `names` (values in px of the aligned images); returns the table."
    import pickle
    rng = np.random.default_rng(seed)
    table = {n: rng.uniform(0, 40, (68, 2)) for n in names}
    if fmt == "pickle":
        path.write_bytes(pickle.dumps(table, protocol=4))
    else:
        path.write_text("".join(n + " " + " ".join(repr(float(v)) for v in a.ravel()) + "\n" for n, a in table.items()))
    return table


@pytest.mark.parametrize("fmt", ["pickle", "text"])
def test_mafl_68_point_ground_truth(tmp_path, fmt):
    from unsupervised_landmarks.data import FACE68_NAMES
    fx = write_fixture_celeba(tmp_path / "celeba")
    names = [f"{i:06d}.jpg" for i in (2, 5, 11)]                     # the MAFL test images
    f = tmp_path / ("gt68.pickle" if fmt == "pickle" else "gt68.txt")
    table = _write_gt68(f, names[:2], fmt=fmt)                         # 000011.jpg is not in the file
    five = load_dataset("mafl", fx["root"], "test")
    ds = load_dataset("mafl", fx["root"], "test", landmarks68=f)
    assert ds.landmarks.shape == (3, 68, 2) and ds.landmark_names == FACE68_NAMES and ds.eye_idx == (41, 46)
    assert ds.norm == "interocular"
    for i, p in enumerate(ds.paths):
        s, s5 = ds[i], five[i]
        np.testing.assert_array_equal(s.box, s5.box)                    # the crop is the 5-point loader's
        if p.name in table:
            np.testing.assert_allclose(s.landmarks, table[p.name] + 0.5, atol=1e-4)   # 0-based px + coord_offset
            assert s.visible.all()
        else:
            assert np.isnan(s.landmarks).all() and not s.visible.any()
    crops = materialize(ds, 32, progress=False)
    assert crops.eye_idx == (41, 46) and crops.visible.sum() == 2 * 68
    assert load_dataset("mafl", fx["root"], "test").landmarks.shape == (3, 5, 2)     # default: the 5 MAFL points


def test_restricted_unpickler_refuses_code(tmp_path):
    import os, pickle
    from unsupervised_landmarks.data import load_pickle_restricted
    ok = {"a.jpg": np.arange(136.).reshape(68, 2), "n": [1, 2.5, "x", (True, None)], "s": np.float32(2)}
    for proto in (2, 3, 4, 5):
        (tmp_path / "ok.pickle").write_bytes(pickle.dumps(ok, protocol=proto))
        back = load_pickle_restricted(tmp_path / "ok.pickle")
        np.testing.assert_array_equal(back["a.jpg"], ok["a.jpg"])
        assert back["n"] == ok["n"] and back["s"] == 2
    for bad in (os.system, Path("x"), torch.zeros(2)):
        (tmp_path / "bad.pickle").write_bytes(pickle.dumps(bad))
        with pytest.raises(DatasetError, match="refusing to unpickle"):
            load_pickle_restricted(tmp_path / "bad.pickle")
    (tmp_path / "junk.pickle").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a readable pickle"):
        load_pickle_restricted(tmp_path / "junk.pickle")


def test_h36m_lr_reorder_by_hand():
    "Facing away: the right hip and right knee lie right of their left twins, so hips, arms and legs all swap."
    from unsupervised_landmarks.data import h36m_lr_reorder
    pose = np.zeros((32, 2))
    pose[:, 1] = np.arange(32)
    pose[[1, 2, 3, 4, 5], 0] = 10.0                       # right leg on the image's right
    pose[[6, 7, 8, 9, 10], 0] = -10.0
    pose[17:24, 0] = 20.0; pose[25:32, 0] = -20.0          # left arm on the right (facing away), clavicles apart
    pose[16, 0], pose[24, 0] = 5.0, -5.0
    out = h36m_lr_reorder(pose[None])[0]
    swapped = {1: 6, 2: 7, 3: 8, 4: 9, 5: 10, **{17 + k: 25 + k for k in range(7)}}
    swapped.update({v: k for k, v in list(swapped.items())})
    for j in range(32):
        np.testing.assert_array_equal(out[j], pose[swapped.get(j, j)])
    assert out[16, 0] == 5.0 and out[24, 0] == -5.0          # the clavicles are not in the official list
    facing = pose.copy(); facing[:, 0] *= -1                 # facing the camera: already image-left = right
    np.testing.assert_array_equal(h36m_lr_reorder(facing), facing)
    only_legs = facing.copy(); only_legs[[2, 3, 4, 5], 0] = 30.0      # right knee right of the left knee only
    out2 = h36m_lr_reorder(only_legs)
    np.testing.assert_array_equal(out2[[2, 3, 4, 5, 7, 8, 9, 10]], only_legs[[7, 8, 9, 10, 2, 3, 4, 5]])
    np.testing.assert_array_equal(out2[[1, 6, 17, 25]], only_legs[[1, 6, 17, 25]])


def test_h36m_loader_reorders_on_request(fixtures):
    from unsupervised_landmarks.data import h36m_lr_reorder
    root = fixtures["h36m"]["root"]
    plain = load_dataset("h36m", root, "test")
    re = load_dataset("h36m", root, "test", lr_reorder=True)
    np.testing.assert_array_equal(re.landmarks, h36m_lr_reorder(plain.landmarks))
    d = lambda l: np.linalg.norm(l[:, 17] - l[:, 25], axis=-1)
    np.testing.assert_allclose(d(re.landmarks), d(plain.landmarks))      # the shoulder normaliser does not change


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fingerprint_of_every_loader(name, fixtures, tmp_path):
    """Every loader lists the annotation files it read (or one per image), so that a change in any of them changes the
    data's fingerprint and with it the crop cache's key; the image list covers every item."""
    import shutil
    from unsupervised_landmarks.data import data_fingerprint, fingerprint_diff
    src = Path(fixtures[name]["root"]); root = tmp_path / src.name
    shutil.copytree(src, root, copy_function=shutil.copy2)
    ds = load_dataset(name, root, split="train")
    fp = data_fingerprint(ds)
    assert fp["n_images"] == len(ds) and fp["root"] == str(Path(ds.root).resolve()) and len(fp["digest"]) == 16
    assert fp["annotation_files"] or fp["item_files"], "the loader lists no annotation file"
    ann = next(iter(fp["annotation_files"]), None)
    if ann:                                                        # shared files: by content (one byte more)
        f = Path(ds.root) / ann; f.write_bytes(f.read_bytes() + b" ")
    else: os.utime(ds.item_files[0], ns=(2, 2))                    # one file per image: by size and time
    fp2 = data_fingerprint(ds)
    assert fp2["digest"] != fp["digest"] and fingerprint_diff(fp, fp2)
    cache = tmp_path / "c.npz"
    m = materialize(ds, size=16, cache=cache, progress=False)
    Path(ds.paths[-1]).touch()                                      # an image rewritten: its time changes
    os.utime(ds.paths[-1], ns=(1, 1))
    assert data_fingerprint(ds)["images"] != fp2["images"]
    m.images[:] = 0; m.save(cache, materialize=ArrayDataset.read_attrs(cache)["materialize"])
    assert materialize(ds, size=16, cache=cache, progress=False).images.any()   # not the stale cache
