"""examples/reproduce_appendix_a.sh and appendix_a_figure.py at tiny scale: every loss arm
trains from the shipped HOG decoder, is evaluated with every metric, and the figure is drawn."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, link_photos

pytestmark = pytest.mark.slow  # every test here takes seconds (CONTRIBUTING.md)

EXAMPLES = REPO / "examples"
ARMS = ("pixel", "pixel_feature", "pixel_feature_adversarial", "pixel_feature_adversarial_x10",
        "pixel_feature_squeezenet")


def test_appendix_a_recipe_and_figure(shared_dir, tmp_path):
    data = tmp_path / "data"
    for sub in ("train", "val"):
        (data / sub).mkdir(parents=True)
    link_photos(shared_dir / "data" / "train", 8, data / "train")
    link_photos(shared_dir / "data" / "val", 4, data / "val")
    (data / "weights").symlink_to(shared_dir / "data" / "weights")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LIMIT": "8",
           "EPOCHS": "1", "SQ_LIMIT": "8", "VAL_LIMIT": "4", "OPT_LIMIT": "2", "OPT_STEPS": "4"}
    runs = tmp_path / "runs"
    done = subprocess.run(["bash", str(EXAMPLES / "reproduce_appendix_a.sh"), "hog", str(runs),
                           str(data)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    for name in ("base", "optimize", *ARMS):
        result = json.loads((runs / f"{name}.eval.json").read_text())
        assert result["n_images"] == (2 if name == "optimize" else 4), name
        for metric in ("normalized_error", "feature_error", "perceptual_distance",
                       "class_agreement"):
            assert result[metric] is not None, (name, metric)
    meta = (runs / "pixel_feature_adversarial" / "metrics.jsonl").read_text()
    assert '"train_disc"' in meta  # the discriminator's loss is logged next to the others

    # a second run finds everything done: nothing is retrained or overwritten
    stamp = (runs / "pixel" / "decoder.safetensors").stat().st_mtime_ns
    again = subprocess.run(["bash", str(EXAMPLES / "reproduce_appendix_a.sh"), "hog", str(runs),
                            str(data)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (runs / "pixel" / "decoder.safetensors").stat().st_mtime_ns == stamp

    figure = tmp_path / "fig.png"
    shown = subprocess.run([sys.executable, str(EXAMPLES / "appendix_a_figure.py"), "hog",
                            str(runs), "--data", str(data / "val"), "--n", "2", "--steps", "4", "-o", str(figure)],
                           env=env, capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr[-2000:]
    from PIL import Image
    assert Image.open(figure).size == (8 * 130, 16 + 2 * 130)  # 8 columns, 2 photos
