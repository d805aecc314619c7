"""Issue 30: runs that know their data (fingerprint in the crop cache and the run record, resume refuses other data),
recoverable run folders (corrected config before any stage completes, weights by content, stale temporary files),
early and exact errors (override types, pre-flight of images and weights, full disk), and the command line's help.
Each test uses the `test` preset on a fixture AFLW (6 + 3 images of 44 px) and takes seconds."""
import json, os, shutil
from pathlib import Path
from unittest import mock

import pytest
import torch

import unsupervised_landmarks.core as core
from unsupervised_landmarks.core import ConfigError, DatasetError, append_jsonl, read_jsonl, save_json, save_torch, atomic_write
from unsupervised_landmarks.data import write_fixture_aflw
from unsupervised_landmarks import pipeline
from unsupervised_landmarks.pipeline import experiment_config, prepare_data, write_config, check_data_root, train_cli


@pytest.fixture
def two_copies(tmp_path, data_tmp):
    "Two AFLW folders with the same names and counts but different images (seed 0 and 1)."
    write_fixture_aflw(tmp_path / "a", seed=0); write_fixture_aflw(tmp_path / "b", seed=1)
    return tmp_path / "a", tmp_path / "b"


def _done_stage0(run: Path):
    (run / "stage0").mkdir(parents=True, exist_ok=True); save_json({}, run / "stage0" / "done.json")


def test_second_copy_does_not_reuse_first_copys_crops(two_copies, data_tmp):
    a, b = two_copies
    ca, _ = prepare_data(experiment_config("aflw", "test", data_root=str(a)), progress=False)
    cb, _ = prepare_data(experiment_config("aflw", "test", data_root=str(b)), progress=False)
    assert all(p.startswith(str(b)) for p in cb.meta["path"]), cb.meta["path"][:2]
    assert ca.images.tobytes() != cb.images.tobytes()
    # a byte-identical copy under a third root is cropped anew too (the root is part of the identity)
    shutil.copytree(a, a.parent / "c", copy_function=shutil.copy2)
    cc, _ = prepare_data(experiment_config("aflw", "test", data_root=str(a.parent / "c")), progress=False)
    assert all(p.startswith(str(a.parent / "c")) for p in cc.meta["path"])
    assert cc.images.tobytes() == ca.images.tobytes()


def test_resume_refuses_other_data_showing_both(two_copies, tmp_path):
    a, b = two_copies
    run = tmp_path / "run"
    write_config(experiment_config("aflw", "test", data_root=str(a)), run, resume=False)
    _done_stage0(run)
    rec = json.loads((run / "inputs.json").read_text())["data"]
    assert rec["train"]["root"] == str(a.resolve()) and rec["train"]["n_images"] == 6
    with pytest.raises(ConfigError) as e:
        write_config(experiment_config("aflw", "test", data_root=str(b)), run, resume=True)
    msg = str(e.value)
    assert "other data" in msg and str(a.resolve()) in msg and str(b.resolve()) in msg and "image files" in msg
    assert "annotation file aflw_train_keypoints.mat: content differs" in msg
    # fewer images: the counts are shown (this used to fail only at evaluation, "12 prediction rows but 14 ...")
    write_fixture_aflw(tmp_path / "five", n_train=5, seed=0)
    with pytest.raises(ConfigError, match="n_images: 6 in the run, 5 now"):
        write_config(experiment_config("aflw", "test", data_root=str(tmp_path / "five")), run, resume=True)
    write_config(experiment_config("aflw", "test", data_root=str(a)), run, resume=True)      # its own data: fine


def test_resume_refuses_other_data_before_cropping(two_copies, tmp_path, data_tmp):
    "Through run_experiment: the refusal comes before prepare_data crops anything of the other copy."
    a, b = two_copies
    run = tmp_path / "run"
    write_config(experiment_config("aflw", "test", data_root=str(a)), run, resume=False); _done_stage0(run)
    with mock.patch.object(pipeline, "prepare_data", side_effect=AssertionError("cropped")):
        with pytest.raises(ConfigError, match="other data"):
            pipeline.run_experiment(experiment_config("aflw", "test", data_root=str(b)), run, resume=True, progress=False)


def test_refusal_names_fields_values_and_flags(tmp_path):
    run = tmp_path / "run"
    write_config(experiment_config("synthheads", "test"), run, resume=False); _done_stage0(run)
    with pytest.raises(ConfigError) as e:
        write_config(experiment_config("synthheads", "test", seed=2, overrides={"stage1": {"M": 9}}), run, resume=True)
    msg = str(e.value)
    assert "seed: 0 in the run, 2 now (CLI: --seed 2)" in msg
    assert """stage1.M: 8 in the run, 9 now (CLI: --overrides '{"stage1": {"M": 9}}')""" in msg
    assert "stage0_M: 8 in the run, 9 now" in msg
    with pytest.raises(ConfigError, match="`ul-train --resume`"):
        write_config(experiment_config("synthheads", "test"), run, resume=False)


def test_folder_without_completed_stage_takes_corrected_config(tmp_path):
    run = tmp_path / "run"
    write_config(experiment_config("synthheads", "test", overrides={"stage1": {"M": 7}}), run, resume=False)
    (run / "stage1").mkdir(); save_json({"M": 7}, run / "stage1" / "config.json")       # a stage claimed, nothing done
    write_config(experiment_config("synthheads", "test"), run, resume=True)
    assert json.loads((run / "config.json").read_text())["stage1"]["M"] == 8
    assert not (run / "stage1" / "config.json").exists()


def test_moving_the_weights_file_keeps_resume(tmp_path):
    w = tmp_path / "w1" / "superpoint_v1.pth"; w.parent.mkdir(); torch.save({"x": torch.arange(3.0)}, w)
    run = tmp_path / "run"
    write_config(experiment_config("synthheads", "test", superpoint_weights=str(w)), run, resume=False); _done_stage0(run)
    moved = tmp_path / "elsewhere.pth"; shutil.move(w, moved)
    write_config(experiment_config("synthheads", "test", superpoint_weights=str(moved)), run, resume=True)
    torch.save({"x": torch.arange(4.0)}, moved)                                             # other weights, same path
    with pytest.raises(ConfigError, match="superpoint_weights: content sha1:"):
        write_config(experiment_config("synthheads", "test", superpoint_weights=str(moved)), run, resume=True)
    assert pipeline.weights_identity(experiment_config("synthheads", "test"))["superpoint_weights"] is None


@pytest.mark.parametrize("ov,field", [({"stage1": {"M": "many"}}, "stage1.M='many'"),
                                      ({"stage1": {"lr": "0.1"}}, "stage1.lr='0.1'"),
                                      ({"stage2": {"lr": "0.1"}}, "stage2.lr='0.1'"),
                                      ({"n_train": 4.5}, "n_train=4.5"),
                                      ({"stage1": {"net": {"channels": "64"}}}, "stage1.net.channels='64'")])
def test_override_types_checked_before_anything_runs(ov, field):
    with pytest.raises(ConfigError, match="wrong type") as e:
        experiment_config("synthheads", "test", overrides=ov)
    assert field in str(e.value) and "expected" in str(e.value)


def test_cli_checks_overrides_before_any_work(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"stage1\.M='many'"):
        train_cli(["--run-dir", str(tmp_path / "r"), "--preset", "test", "--overrides", '{"stage1": {"M": "many"}}'])
    with pytest.raises(SystemExit):
        train_cli(["--run-dir", str(tmp_path / "r"), "--overrides", "{stage1: 3}"])
    assert "--overrides is not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_preflight_finds_missing_images_and_bad_weights(two_copies, tmp_path):
    a, _ = two_copies
    (a / "output" / "tr00005.jpg").unlink()                          # not the first image (the loader checks that one)
    with pytest.raises(DatasetError, match="tr00005.jpg"):
        check_data_root(experiment_config("aflw", "test", data_root=str(a)))
    with pytest.raises(ConfigError, match="--superpoint-weights"):
        check_data_root(experiment_config("synthheads", "test", initializer="superpoint"))
    with pytest.raises(ConfigError, match="nope.pth"):
        check_data_root(experiment_config("synthheads", "test", initializer="superpoint",
                                          superpoint_weights=str(tmp_path / "nope.pth")))


def test_full_disk_names_the_file(tmp_path):
    with mock.patch.object(Path, "write_bytes", side_effect=OSError(28, "No space left on device")):
        with pytest.raises(core.DiskFullError, match="no space left on device while writing .*stage1_last.pt"):
            save_torch({"w": torch.zeros(2)}, tmp_path / "checkpoints" / "stage1_last.pt")
    assert list((tmp_path / "checkpoints").iterdir()) == []
    if Path("/dev/full").exists():                                    # a real ENOSPC from the kernel
        def w(p):
            with open("/dev/full", "wb") as f: f.write(b"0" * 10000)
        with pytest.raises(core.DiskFullError, match="config.json"):
            atomic_write(tmp_path / "config.json", w)
        with mock.patch("builtins.open", side_effect=OSError(28, "No space left on device")):
            with pytest.raises(core.DiskFullError, match="metrics.jsonl"):
                append_jsonl({"a": 1}, tmp_path / "metrics.jsonl")


def test_stale_tmp_removed_on_resume(tmp_path):
    run = tmp_path / "run"
    write_config(experiment_config("synthheads", "test"), run, resume=False); _done_stage0(run)
    (run / "checkpoints").mkdir()
    stale = run / "checkpoints" / ".stage1_last.pt.x8k2_q0z.tmp"; stale.write_bytes(b"")   # a killed checkpoint write
    keep = run / "checkpoints" / "notes.tmp"; keep.write_text("mine")
    write_config(experiment_config("synthheads", "test"), run, resume=True)
    assert not stale.exists() and keep.exists()


def test_metrics_lines_have_time_stamps(tmp_path):
    append_jsonl({"stage": 1, "iter": 1}, tmp_path / "metrics.jsonl")
    raw = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert set(raw) == {"stage", "iter", "time"} and raw["time"][:2] == "20"
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"stage": 1, "iter": 1}]


def test_help_lists_choices_presets_and_weights_flag(capsys):
    with pytest.raises(SystemExit) as e: train_cli(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for s in ("--superpoint-weights", "{paper,cpu,test}", "{sift,orb,superpoint,gt_noise}", "aflw", "preset defaults:",
              "paper: input 256 px", "cpu: input 128 px", "test: input 64 px"):
        assert s in out, s
