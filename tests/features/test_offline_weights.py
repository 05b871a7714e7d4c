"""Pretrained weights without a network: one clear error within seconds, cached weights still load.

The hub is made unreachable with an endpoint nothing listens on, so these tests behave the same
on machines with and without a network.
"""
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

import featinv
from featinv.features import cnn

NOWHERE = "http://127.0.0.1:9"  # the discard port: connection refused at once


def _featinv(args, env):
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "featinv", *args], capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=600)
    return out, time.perf_counter() - t0


@pytest.mark.slow
def test_offline_timm_weights_fail_fast_with_one_line(tmp_path):
    from helpers import write_images

    write_images(tmp_path / "imgs", 1, size=(64, 64))
    env = {"HF_ENDPOINT": NOWHERE, "HF_HUB_CACHE": str(tmp_path / "hub"),
           "TORCH_HOME": str(tmp_path / "torch")}
    t0 = time.perf_counter()  # what the command imports before it can tell: the slack
    subprocess.run([sys.executable, "-c", "import featinv.cli.main, featinv.features.timm_stages, "
                    "timm, huggingface_hub"], check=True, env={**os.environ, **env})
    baseline = time.perf_counter() - t0
    failed, seconds = _featinv(["extract", "-f", "timm.resnet18.stage2", str(tmp_path / "imgs"),
                                "-o", str(tmp_path / "f.npz"), "-p", "weights=imagenet"], env)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the ImageNet weights of timm model "
                                                   "'resnet18' are not cached"), failed.stderr
    assert "127.0.0.1" in lines[0] and "weights=random" in lines[0]
    assert seconds < baseline + 5, (seconds, baseline)


def test_unreachable_names_the_host_quickly():
    t0 = time.perf_counter()
    reason = cnn.unreachable(NOWHERE + "/some/file", timeout=2)
    assert reason is not None and "127.0.0.1" in reason
    assert time.perf_counter() - t0 < 3
    with pytest.raises(ConnectionError, match="offline"):
        cnn.check_download(NOWHERE)


def test_cached_timm_weights_load_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub
    import timm

    repo = timm.get_pretrained_cfg("resnet18").hf_hub_id
    snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    torch.manual_seed(0)
    state = timm.create_model("resnet18").state_dict()
    save_file(state, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "ENDPOINT", NOWHERE)
    ext = featinv.get_feature("timm.resnet18.stage1")
    assert torch.equal(ext.module.body.state_dict()["conv1.weight"], state["conv1.weight"])
    # not cached and offline: the clear error, without trying the network
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(featinv.FeatinvError, match="HF_HUB_OFFLINE is set"):
        featinv.get_feature("timm.resnet18.stage1")
