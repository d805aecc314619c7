"Project hygiene: the exported library matches the notebooks, notebooks are clean, README is generated."
import json, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_export_in_sync(tmp_path):
    "nbdev_export on a copy of the notebooks reproduces the committed package byte for byte."
    for p in ["nbs", "settings.ini", "setup.py"]:
        (shutil.copytree if (ROOT / p).is_dir() else shutil.copy)(ROOT / p, tmp_path / p)
    (tmp_path / "unsupervised_landmarks").mkdir()
    subprocess.run([str(BIN / "nbdev_export")], cwd=tmp_path, check=True, capture_output=True)
    fresh = {p.relative_to(tmp_path / "unsupervised_landmarks"): p.read_text()
             for p in (tmp_path / "unsupervised_landmarks").rglob("*.py")}
    committed = {p.relative_to(ROOT / "unsupervised_landmarks"): p.read_text()
                 for p in (ROOT / "unsupervised_landmarks").rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), "modules differ: run nbdev_export"
    stale = [str(k) for k in fresh if fresh[k] != committed[k]]
    assert not stale, f"out of date with the notebooks (run nbdev_export): {stale}"


def test_notebooks_clean_and_tagged():
    "Notebooks carry no outputs/execution counts (nbdev_clean), and experiment notebooks keep their parameters tag."
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        d = json.loads(nb.read_text())
        for c in d["cells"]:
            if c["cell_type"] == "code":
                assert c.get("execution_count") is None and not c.get("outputs"), f"{nb.name}: run nbdev_clean"
        if nb.name[:2].isdigit() and int(nb.name[:2]) >= 10:
            tags = [t for c in d["cells"] for t in c.get("metadata", {}).get("tags", [])]
            assert "parameters" in tags, f"{nb.name} has no cell tagged 'parameters'"


def test_registry_commands_in_sync():
    "Every registered result's command.sh holds the command of its entry.json (`tools/results.py readme` syncs them)."
    for ej in sorted((ROOT / "results").glob("*/entry.json")):
        e = json.loads(ej.read_text())
        sh = (ej.parent / "command.sh").read_text().splitlines()
        assert sh and sh[-1] == e["command"], f"{ej.parent.name}: command.sh differs from entry.json; run tools/results.py readme"


def test_readme_generated():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "readme.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_hourglass_benchmark_runs():
    "The speed benchmark prints img/s and the fraction of matmul peak, also for a stage-1 preset's network."
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hourglass_speed.py"), "--presets", "test", "stage1-test",
                        "--batch", "2", "--steps", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if "img/s" in l]
    assert len(lines) == 2 and lines[1].startswith("stage1-test") and "% of the matmul peak" in lines[1], r.stdout
    assert "matmul" in r.stdout.splitlines()[0]

def test_shape_check_benchmark_runs():
    "The rigid-shape check benchmark prints the fit time and the check's img/s, and the check separates moved detections."
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shape_check_speed.py"), "--images", "300", "--K", "15", "--missing", "0.3",
                        "--check", "200"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("fit on")]
    assert len(line) == 1 and "img/s" in line[0], r.stdout
    moved, others = [float(w) for w in line[0].split("kept ")[1].replace(" of the moved detections,", "").split()[:2]]
    assert moved < 0.1 and others > 0.9, line[0]
