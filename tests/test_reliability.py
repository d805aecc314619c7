"""Issue 30: runs that know their data (fingerprint in the crop cache and the run record, resume refuses other data),
recoverable run folders (corrected config before any stage completes, weights by content, stale temporary files),
early and exact errors (override types, pre-flight of images and weights, full disk), and the command line's help.
Each test uses the `test` preset on a fixture AFLW (6 + 3 images of 44 px) and takes seconds."""
import json, os, re, shutil
from pathlib import Path
from unittest import mock

import numpy as np
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
    assert f"to resume this run: --data-root {a.resolve()}" in msg          # the flag that points it back at its data
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
    assert "seed: 0 in the run, 2 now\n" in msg and "stage1.M: 8 in the run, 9 now" in msg and "stage0_M: 8 in the run, 9 now" in msg
    assert "--seed 2" not in msg                                  # the hint resumes the run: its values, not the refused ones
    # the named flag with the run's value, and the --overrides fields merged into ONE JSON (argparse keeps the last)
    assert """to resume this run: --seed 0 --overrides '{"stage0_M": 8, "stage1": {"M": 8}}'""" in msg
    with pytest.raises(ConfigError, match="`ul-train --resume`"):
        write_config(experiment_config("synthheads", "test"), run, resume=False)


def _hint_overrides(msg: str) -> dict:
    "The --overrides JSON of a refusal's 'to resume this run' line."
    line = next(l for l in msg.splitlines() if l.startswith("to resume this run:"))
    return json.loads(line.split("--overrides '", 1)[1].split("'", 1)[0])


def test_refusal_hint_merges_overrides_and_resumes(tmp_path):
    "Several sections differ: one --overrides JSON with every run value; that JSON, used as given, resumes the run."
    run = tmp_path / "run"
    made = {"stage1": {"lr": 0.002}, "stage2": {"iters": 5}, "outlier_drop": 0.3}
    write_config(experiment_config("synthheads", "test", overrides=made), run, resume=False)
    _done_stage0(run); _done(run, 1, 2)
    with pytest.raises(ConfigError) as e:
        write_config(experiment_config("synthheads", "test", overrides={"stage1": {"lr": 0.01}, "stage2": {"iters": 7}}),
                     run, resume=True)
    msg = str(e.value)
    assert msg.count("--overrides '") == 1
    ov = _hint_overrides(msg)
    assert ov == made, ov
    write_config(experiment_config("synthheads", "test", overrides=ov), run, resume=True)


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
    with pytest.raises(SystemExit) as e:
        train_cli(["--run-dir", str(tmp_path / "r"), "--preset", "test", "--overrides", '{"stage1": {"M": "many"}}'])
    assert e.value.code == 2
    assert "stage1.M='many'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli(["--run-dir", str(tmp_path / "r"), "--overrides", "{stage1: 3}"])
    assert "--overrides is not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_reports_library_errors_without_traceback(tmp_path, capsys):
    "ConfigError / DatasetError: one message on stderr and exit status 2, no Python traceback."
    with pytest.raises(SystemExit) as e:
        train_cli(["--run-dir", str(tmp_path / "r"), "--preset", "test", "--overrides", '{"stage2": {"target": "gauss"}}'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("ul-train: error: stage2.target='gauss' is unknown") and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        train_cli(["--run-dir", str(tmp_path / "r"), "--dataset", "aflw", "--preset", "test",
                   "--data-root", str(tmp_path / "nothing_here")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "nothing_here" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("ov,msg", [({"stage2": {"target": "gauss"}}, "stage2.target='gauss' is unknown; choose from 'gaussian', 'cell'"),
                                    ({"stage1": {"pairing": "clusterin"}}, "stage1.pairing='clusterin' is unknown; choose from"),
                                    ({"stage1": {"lr": -1}}, "stage1.lr=-1 is out of range: expected > 0"),
                                    ({"stage1": {"M": 0}}, "M=0 is out of range: expected >= 1"),
                                    ({"stage2": {"batch": 0}}, "stage2.batch=0 is out of range: expected >= 1"),
                                    ({"stage1": {"round_iters": -1}}, "stage1.round_iters=-1 is out of range: expected >= 0"),
                                    ({"stage1": {"negatives": "some"}}, "stage1.negatives='some' is unknown")])
def test_stage_options_checked_before_anything_runs(ov, msg):
    "Options of stages 1 and 2 used to be checked when their stage began, after stage 0 had completed."
    with pytest.raises(ConfigError, match=re.escape(msg)):
        experiment_config("synthheads", "test", overrides=ov)
    bad = experiment_config("synthheads", "test")                  # a config made without experiment_config: the pre-flight
    for k, v in ov.items(): setattr(bad, k, pipeline._apply(getattr(bad, k), v, k))
    with pytest.raises(ConfigError, match=re.escape(msg.split("=")[0].split(".")[-1])):
        check_data_root(bad)


def _done(run: Path, *stages):
    "Mark stage 1 / 2 as completed (their final checkpoints)."
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    for k in stages: (run / "checkpoints" / f"stage{k}_final.pt").write_bytes(b"")


def _partial(run: Path, k: int):
    "What a stage that began and failed leaves: its config, a checkpoint, stage 1's rounds, its metrics lines."
    (run / f"stage{k}").mkdir(parents=True, exist_ok=True); save_json({}, run / f"stage{k}" / "config.json")
    (run / "checkpoints").mkdir(exist_ok=True); (run / "checkpoints" / f"stage{k}_last.pt").write_bytes(b"x")
    if k == 1:
        for r in (0, 1): (run / "stage1" / f"round_0{r}").mkdir(); save_json({"round": r}, run / "stage1" / f"round_0{r}" / "done.json")
    append_jsonl({"stage": k, "iter": 1, "loss": 1.0}, run / "metrics.jsonl")


def test_unfinished_stage_takes_corrected_section(tmp_path, capsys):
    "After stage 0, a stage-1 or stage-2 option of a stage that has not completed can still be corrected."
    run = tmp_path / "run"
    write_config(experiment_config("synthheads", "test", overrides={"stage1": {"lr": 0.002}}), run, resume=False)
    _done_stage0(run); append_jsonl({"stage": 0, "note": "kept"}, run / "metrics.jsonl"); _partial(run, 1)
    write_config(experiment_config("synthheads", "test", overrides={"stage1": {"lr": 0.001}}), run, resume=True)
    assert json.loads((run / "config.json").read_text())["stage1"]["lr"] == 0.001
    assert not any((run / "stage1").glob("*")) and not (run / "checkpoints" / "stage1_last.pt").exists()
    assert read_jsonl(run / "metrics.jsonl") == [{"stage": 0, "note": "kept"}]
    assert "stage 1 had not completed" in capsys.readouterr().out
    assert (run / "stage0" / "done.json").exists()
    # stage 1 completed, stage 2 failed: stage 2's section is open, stage 1's is fixed
    _done(run, 1); _partial(run, 2); (run / "stage1" / "round_00").mkdir(); save_json({}, run / "stage1" / "round_00" / "done.json")
    write_config(experiment_config("synthheads", "test", overrides={"stage1": {"lr": 0.001}, "stage2": {"iters": 3}}), run, resume=True)
    assert not (run / "stage2" / "config.json").exists() and not (run / "checkpoints" / "stage2_last.pt").exists()
    assert (run / "checkpoints" / "stage1_final.pt").exists() and (run / "stage1" / "round_00" / "done.json").exists()
    assert "stage 2 had not completed and the config changed in stage2.iters" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="stage1.lr: 0.001 in the run, 0.002 now"):
        write_config(experiment_config("synthheads", "test", overrides={"stage1": {"lr": 0.002}, "stage2": {"iters": 3}}), run, resume=True)
    # an unchanged resume removes nothing
    _partial(run, 2)
    write_config(experiment_config("synthheads", "test", overrides={"stage1": {"lr": 0.001}, "stage2": {"iters": 3}}), run, resume=True)
    assert (run / "checkpoints" / "stage2_last.pt").exists() and capsys.readouterr().out == ""


def test_run_failed_in_stage2_resumes_with_corrected_stage2(tmp_path, data_tmp):
    """The reviewer's case end to end: stages 0 and 1 complete, stage 2 fails at its start (here: an error raised in
    its place); the corrected stage-2 option is taken on resume, stage 1 is not redone, and the run completes. The data
    fingerprints are computed once per split in each attempt."""
    from unsupervised_landmarks import data as D
    write_fixture_aflw(tmp_path / "aflw")
    cfg = lambda it: experiment_config("aflw", "test", data_root=str(tmp_path / "aflw"), overrides={"stage2": {"iters": it}})
    run = tmp_path / "run"
    calls = []
    real_fp = D.data_fingerprint
    counting = lambda ds: calls.append(1) or real_fp(ds)
    with mock.patch.object(D, "data_fingerprint", side_effect=counting), \
         mock.patch.object(pipeline, "run_stage2", side_effect=ConfigError("stage 2 refused its option")):
        with pytest.raises(ConfigError, match="refused its option"):
            pipeline.run_experiment(cfg(4), run, progress=False)
    assert len(calls) == 2, len(calls)                       # train and test, once each (check, record, cache key)
    assert (run / "checkpoints" / "stage1_final.pt").exists()
    rounds = {p: p.stat().st_mtime_ns for p in (run / "stage1").glob("round_*/done.json")}
    res = pipeline.run_experiment(cfg(3), run, resume=True, progress=False)
    assert res.results["rows"][-1]["method"] == "stage 2 detector"
    assert json.loads((run / "stage2" / "config.json").read_text())["iters"] == 3
    assert rounds and {p: p.stat().st_mtime_ns for p in (run / "stage1").glob("round_*/done.json")} == rounds   # not redone


def test_legacy_run_without_inputs_json_refuses_other_data(two_copies, tmp_path):
    "A run folder from before inputs.json: compared by resolved data folder and stage 0's image count, not fingerprinted."
    a, b = two_copies
    run = tmp_path / "run"
    write_config(experiment_config("aflw", "test", data_root=str(a)), run, resume=False)
    (run / "inputs.json").unlink()                                 # as the runs made before the fingerprint
    _done_stage0(run)
    core.PointTable(np.arange(7), {"x": np.zeros(6, np.float32)}).save(run / "stage0" / "labels.npz")   # 6 images labelled
    with pytest.raises(ConfigError) as e:
        write_config(experiment_config("aflw", "test", data_root=str(b)), run, resume=True)
    msg = str(e.value)
    assert f"data_root: {a.resolve()} in the run, {b.resolve()} now" in msg and f"--data-root {a.resolve()}" in msg
    write_config(experiment_config("aflw", "test", data_root=str(a)), run, resume=True)     # its own folder: fine
    assert not (run / "inputs.json").exists()                     # today's fingerprint is not recorded as the run's
    shutil.rmtree(a); write_fixture_aflw(a, n_train=5, seed=0)    # the same folder now holds 5 training images
    with pytest.raises(ConfigError, match="training images: 6 in the run's stage 0, 5 now"):
        write_config(experiment_config("aflw", "test", data_root=str(a)), run, resume=True)


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
    for s in ("--superpoint-weights", "{paper,cpu,test}", "{sift,orb,superpoint,xfeat,aliked,disk,gt_noise}", "aflw",
              "preset defaults:",
              "paper: input 256 px", "cpu: input 128 px", "test: input 64 px"):
        assert s in out, s


# ---------------------------------------------------------------- the learned initializers (issue 28) in the pipeline
@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk"])
def test_make_initializer_learned(name, learned_weights, tmp_path, monkeypatch):
    from unsupervised_landmarks.keypoints import LEARNED_INITIALIZERS, WEIGHT_FILES
    cls, f = LEARNED_INITIALIZERS[name], WEIGHT_FILES[name]
    monkeypatch.setenv("UL_WEIGHTS_DIR", str(learned_weights))            # the default folder (`make weights`)
    cfg = experiment_config("synthheads", "test", initializer=name)
    assert isinstance(pipeline.make_initializer(cfg), cls)
    check_data_root(cfg)                                                   # the pre-flight loads them
    assert pipeline.weights_identity(cfg)[f"{name}_weights"].startswith("sha1:")
    monkeypatch.setenv("UL_WEIGHTS_DIR", str(tmp_path / "empty"))
    by_path = experiment_config("synthheads", "test", initializer=name, initializer_args={"weights": str(learned_weights / f)})
    assert isinstance(pipeline.make_initializer(by_path), cls)
    check_data_root(by_path)
    # descriptors of gt_noise from a learned initializer
    gt = experiment_config("synthheads", "test", initializer="gt_noise",
                           initializer_args={"desc": name, "desc_args": {"weights": str(learned_weights / f)}})
    check_data_root(gt)
    # a missing file fails in the pre-flight, before any cropping, naming the file and `make weights`
    with pytest.raises(ConfigError) as e:
        check_data_root(experiment_config("synthheads", "test", initializer=name))
    assert str(tmp_path / "empty" / f) in str(e.value) and "make weights" in str(e.value)
    with pytest.raises(ConfigError, match="nope.pt"):
        check_data_root(experiment_config("synthheads", "test", initializer=name, initializer_args={"weights": str(tmp_path / "nope.pt")}))


def test_learned_weights_moved_keeps_resume(learned_weights, tmp_path):
    "The learned initializer's weights count by content: another path to the same file resumes, other weights do not."
    run, w = tmp_path / "run", tmp_path / "a" / "xfeat.pt"
    w.parent.mkdir(); shutil.copy(learned_weights / "xfeat.pt", w)
    c = lambda p: experiment_config("synthheads", "test", initializer="xfeat", initializer_args={"weights": str(p)})
    write_config(c(w), run, resume=False); _done_stage0(run)
    moved = tmp_path / "b.pt"; shutil.move(w, moved)
    write_config(c(moved), run, resume=True)
    sd = torch.load(moved, weights_only=True); sd = {k: v + 1 for k, v in sd.items()}; torch.save(sd, moved)
    with pytest.raises(ConfigError, match="xfeat_weights: content sha1:"):
        write_config(c(moved), run, resume=True)
