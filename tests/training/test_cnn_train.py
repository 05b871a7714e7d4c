"""CNN layers end to end on CPU: train -> invert -> evaluate with SqueezeNet's Caffe weights,
with the encoder fixed (the paper's main setting) and fine-tuned (its autoencoders, section 5.2)."""
import json

import pytest
import torch
from safetensors.torch import load_file

import featinv
from featinv.inversion.load import extractor_for
from helpers import run_cli as run

pytestmark = pytest.mark.slow  # every test here takes seconds (CONTRIBUTING.md)

WEIGHTS = "data/weights/squeezenet1_0_deepcompression_caffe.npz"


def _train(capsys, out, train_subset, val_subset, weights, *extra):
    code, _, err = run(capsys, "train", "-f", "squeezenet.fire4", "-p", f"weights={weights}",
                       "--data", str(train_subset), "--val", str(val_subset), "--out", str(out),
                       "--image-size", "64", "--epochs", "1", "--limit", "16", "--val-limit", "4",
                       "--batch-size", "8", "--width", "0.125", "--workers", "0", *extra)
    assert code == 0, err
    return err


@pytest.fixture(scope="module")
def weights(shared_dir):
    return str(shared_dir / WEIGHTS)


@pytest.mark.parametrize("finetune", [False, True], ids=["fixed", "finetuned"])
def test_squeezenet_train_invert_evaluate(capsys, tmp_path, train_subset, val_subset, weights,
                                          finetune):
    out = tmp_path / "run"
    log = _train(capsys, out, train_subset, val_subset, weights,
                 *(["--finetune-encoder"] if finetune else []))
    assert ("fine-tuning the encoder" in log) == finetune
    tensors = load_file(str(out / "decoder.safetensors"))
    encoder_keys = [k for k in tensors if k.startswith("encoder.")]
    assert bool(encoder_keys) == finetune

    decoder = featinv.load_decoder(out / "decoder.safetensors")
    extractor = extractor_for(decoder)
    original = featinv.get_feature("squeezenet.fire4", weights=weights).module.state_dict()
    tuned = extractor.module.state_dict()
    changed = any(not torch.equal(original[k], tuned[k]) for k in original)
    assert changed == finetune  # inversion uses the fine-tuned encoder when there is one

    photo = sorted(val_subset.iterdir())[0]
    code, printed, _ = run(capsys, "invert", "-c", str(out / "decoder.safetensors"), str(photo),
                           "-o", str(tmp_path / "inv"))
    assert code == 0 and printed.strip().endswith(".png")
    code, printed, _ = run(capsys, "evaluate", "-c", str(out / "decoder.safetensors"),
                           "--data", str(val_subset), "--limit", "4", "--json")
    result = json.loads(printed)
    assert code == 0 and result["n_images"] == 4 and 0 < result["normalized_error"] < 2


def test_finetune_needs_parameters(capsys, tmp_path, train_subset):
    code, _, err = run(capsys, "train", "-f", "hog", "--data", str(train_subset), "--out",
                       str(tmp_path), "--finetune-encoder", "--epochs", "1", "--workers", "0")
    assert code == 1 and "needs a differentiable representation with parameters" in err


def test_training_size_defaults_to_the_representation(capsys, tmp_path, train_subset):
    code, _, err = run(capsys, "train", "-f", "alexnet.fc8", "-p", "weights=random",
                       "--data", str(train_subset), "--out", str(tmp_path), "--epochs", "1",
                       "--limit", "4", "--batch-size", "4", "--width", "0.0625", "--workers", "0")
    assert code == 0, err
    decoder = featinv.load_decoder(tmp_path / "decoder.safetensors")
    assert decoder.config["image_size"] == 227
    # the paper's FC8 network outputs 128 px; evaluation upsamples it to the input size
    out = decoder(torch.zeros(1, 1000))
    assert out.shape[-1] == 128
