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


@pytest.fixture(scope="module")
def learned_weights(tmp_path_factory):
    "RANDOM weights for XFeat, ALIKED and DISK in each public file's format (loading and shapes only)."
    import kornia.feature as KF
    import torch
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("learned")
    torch.save(KF.XFeat().net.state_dict(), d / "xfeat.pt")
    torch.save(KF.ALIKED("aliked-n16").state_dict(), d / "aliked-n16.pth")
    torch.save({"extractor": KF.DISK().state_dict()}, d / "disk-depth-save.pth", _use_new_zipfile_serialization=False)
    return d
