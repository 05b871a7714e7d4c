"""The version and the reconstruction metrics are each written in one place."""
import importlib.metadata
from pathlib import Path

import pytest
import torch

import featinv
from featinv.analysis.metrics import normalized_error, psnr, quality, ssim

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_written_only_in_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "featinv.version.__version__"}
    assert importlib.metadata.version("featinv") == featinv.__version__


def test_quality_gives_the_three_metrics():
    x, y = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    assert quality(x, y) == {"normalized_error": normalized_error(x, y),
                             "psnr": float(psnr(x, y).mean()), "ssim": float(ssim(x, y).mean())}
