"""SqueezeNet inverted offline, as from a fresh install: the commands run in a subprocess with
../shared hidden (an audit hook refuses to open or list anything below it), every socket
connection and name lookup refused, and empty HOME, TORCH_HOME, Hugging Face and featinv caches,
from a folder beside which there is no ../shared.

With the real shipped SqueezeNet decoders in featinv/zoo (``squeezenet.fire9.safetensors``),
the test runs ``featinv invert -f squeezenet.fire9 skimage:astronaut`` and ``featinv analyze
layers skimage:astronaut -o strip.png`` as a user would. Until they exist it exercises the same
path with tiny untrained decoders (conv1, fire9, pool10) that a plugin registered in the
subprocess ships through ``featinv_shipped_decoders``; it says which in its output (-rP).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featinv.inversion.load import ZOO_DIR
from featinv.representation.extract import load_features

from helpers import REPO, SHARED, tiny_layer_decoders, write_images

pytestmark = pytest.mark.slow  # every test here takes seconds (CONTRIBUTING.md)

REAL = ZOO_DIR / "squeezenet.fire9.safetensors"

SITECUSTOMIZE = '''
import os, sys

_HIDDEN = os.path.realpath(os.environ["FEATINV_TEST_HIDDEN"])
_NETWORK = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
            "socket.gethostbyname_ex", "socket.gethostbyaddr", "urllib.Request"}


def _hidden(path):
    try:
        path = os.fsdecode(path) if not isinstance(path, int) else None
    except TypeError:
        return False
    return path is not None and (os.path.realpath(os.path.abspath(path)) + os.sep).startswith(
        _HIDDEN + os.sep)


def _hook(event, args):
    if event in _NETWORK:
        raise OSError(f"{event}: the network is blocked by the test")
    if event in ("open", "os.listdir", "os.scandir") and args and _hidden(args[0]):
        raise PermissionError(f"{args[0]}: ../shared is hidden by the test")


sys.addaudithook(_hook)
'''

DRIVER = '''
import json, os, sys
from pathlib import Path

import featinv
from featinv import ShippedDecoder
from featinv.representation.plugins import register_plugin


class TestDecoders:
    @featinv.hookimpl
    def featinv_shipped_decoders(self):
        return [ShippedDecoder(feature, Path(file), description="tiny test decoder")
                for feature, file in json.loads(os.environ["FEATINV_TEST_DECODERS"])]


register_plugin(TestDecoders(), "offline-test-decoders")
from featinv.cli.main import main

main(sys.argv[1:])
'''


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """``run(*args)``: featinv's CLI in a subprocess without ../shared and without network."""
    root = tmp_path_factory.mktemp("offline")
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (site / "featinv_offline_driver.py").write_text(DRIVER)
    work = root / "work"
    work.mkdir()
    assert not (work.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FEATINV_", "HF_", "TORCH_")) and "proxy" not in k.lower()}
    env.update(HOME=str(root / "home"), TORCH_HOME=str(root / "torch"),
               XDG_CACHE_HOME=str(root / "cache"), HF_HOME=str(root / "hf"),
               FEATINV_CACHE_DIR=str(root / "featinv-cache"), PYTHONPATH=str(site),
               FEATINV_TEST_HIDDEN=str(SHARED), PYTHONDONTWRITEBYTECODE="1")
    decoders = []
    if not REAL.is_file():
        folder = root / "decoders"
        folder.mkdir()
        decoders = [(e.feature, str(e.file)) for e in
                    tiny_layer_decoders(folder, ("conv1", "fire9", "pool10"), size=64)]
        env["FEATINV_TEST_DECODERS"] = json.dumps(decoders)

    def run(*args, python=None):
        if python is not None:  # any Python code, under the same conditions
            command = [sys.executable, "-c", python]
        else:
            main = "featinv_offline_driver" if decoders else "featinv"
            command = [sys.executable, "-m", main, *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=work, env=env,
                              timeout=600)

    run.work, run.tiny = work, bool(decoders)
    return run


PROBE = """
import os, socket
try:
    socket.create_connection(("127.0.0.1", 9), timeout=1)
except OSError as exc:
    print("connect:", exc)
for call in (lambda: open({readme!r}), lambda: os.listdir({shared!r})):
    try:
        call()
        print("shared: readable")
    except OSError as exc:
        print("shared:", exc)
"""


def test_the_subprocess_is_really_offline_and_blind_to_shared(offline):
    probe = offline(python=PROBE.format(readme=str(SHARED / "data" / "README.md"),
                                        shared=str(SHARED)))
    lines = probe.stdout.splitlines()
    assert probe.returncode == 0 and "the network is blocked by the test" in lines[0], probe
    assert len(lines) == 3 and all("hidden by the test" in line for line in lines[1:]), lines


def test_extract_squeezenet_offline(offline):
    done = offline("extract", "-f", "squeezenet.fire9", "skimage:astronaut", "-o", "f.npz")
    assert done.returncode == 0, done.stderr
    features, meta = load_features(offline.work / "f.npz")
    assert features[0].shape == (512, 31, 31)  # fire9 of the 512 px photo
    assert meta["feature"]["params"]["weights"] == "deepcompression"


def test_invert_and_layer_strip_offline(offline, capsys):
    size = [] if not offline.tiny else ["--size", "64"]
    with capsys.disabled():
        print(f"\n[offline squeezenet] {'tiny test-plugin decoders' if offline.tiny else REAL}")
    done = offline("invert", "-f", "squeezenet.fire9", "skimage:astronaut", "-o", "out", *size)
    assert done.returncode == 0, done.stderr
    assert (offline.work / "out" / "astronaut.squeezenet.fire9.png").is_file()
    assert "Warning" not in done.stderr  # the shipped weights are those it was trained on
    done = offline("analyze", "layers", "skimage:astronaut", "-o", "strip.png", *size)
    assert done.returncode == 0, done.stderr
    layers = [line.split(":")[0] for line in done.stdout.splitlines()[:-1]]
    assert layers[0] == "squeezenet.conv1" and "squeezenet.fire9" in layers
    assert (offline.work / "strip.png").is_file()


def test_perceptual_metrics_offline(offline):
    write_images(offline.work / "photos", 2, size=(64, 64))
    done = offline("evaluate", "-f", "squeezenet.fire9", "--data", "photos", "--image-size", "64",
                   "--perceptual-weights", "auto", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert Path(result["perceptual_weights"]).parent == REPO / "featinv" / "weights"
    assert 0 < result["perceptual_distance"] < 4
