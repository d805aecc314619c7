import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture
def data_tmp(tmp_path, monkeypatch):
    "A private data_dir() for tests that generate datasets."
    d = tmp_path / "data"
    d.mkdir()
    monkeypatch.setenv("UL_DATA_DIR", str(d))
    return d
