"""Train -> save -> load -> invert -> evaluate at small scale, on photos from ../shared."""
import json
import pickle

import pytest
import torch

import featinv
from featinv import CheckpointError
from featinv.io.checkpoint import META_KEY
from featinv.cli.main import main
from featinv.training.loop import TrainConfig, train
from helpers import run_cli as run

pytestmark = pytest.mark.slow  # every test here takes seconds (CONTRIBUTING.md)


@pytest.fixture(scope="module")
def trained(train_subset, val_subset, tmp_path_factory):
    """A HOG decoder trained for 2 short epochs through the CLI."""
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--feature", "hog", "--data", train_subset, "--val", val_subset,
            "--out", out, "--image-size", 32, "--epochs", 2, "--batch-size", 16,
            "--width", 0.125, "--workers", 0, "--lr", 2e-3, "--preset", "compact",
            "--schedule", "step"]
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 0
    return out


def test_training_writes_checkpoint_metrics_and_previews(trained):
    assert (trained / "decoder.safetensors").is_file()
    assert (trained / "train_state.safetensors").is_file()
    assert (trained / "val_epoch001.png").is_file() and (trained / "val_epoch002.png").is_file()
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(0 < r["val_normalized_error"] < 2 for r in records)
    meta = featinv.load_decoder(trained / "decoder.safetensors").meta
    assert meta["feature"] == {"name": "hog", "params": {"cell_size": 8, "num_orientations": 9,
                                                         "backend": "torch"},
                               "plugin": "featinv.features.hog", "input": "gray"}
    assert meta["layout"] == {"kind": "grid", "channels": 31, "height": 4, "width": 4,
                              "sparse": False}
    assert meta["image_size"] == 32 and meta["decoder"]["family"] == "two_stream"
    assert meta["training"]["epochs"] == 2 and meta["metrics"]["epoch"] == 2
    assert meta["featinv_version"] == featinv.__version__


def test_invert_cli_writes_pngs(trained, val_subset, tmp_path, capsys):
    images = sorted(val_subset.iterdir())[:2]
    code, out, err = run(capsys, "invert", "--checkpoint", trained / "decoder.safetensors",
                         *images, "-o", tmp_path, "--side-by-side", "--size", "32")
    assert code == 0, err
    written = out.split()
    assert len(written) == 2 and all(p.endswith(".hog.png") for p in written)
    from PIL import Image
    w, h = Image.open(written[0]).size
    assert h == 32 + 4 and w > 2 * 32  # input | reconstruction, 2 px padding


def test_invert_reports_bad_files_and_carries_on(trained, val_subset, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    good = sorted(val_subset.iterdir())[0]
    code, out, err = run(capsys, "invert", "-c", trained / "decoder.safetensors", bad, good,
                         "-o", tmp_path / "out")
    assert code == 1
    assert "broken.jpg: not an image file" in err and "1 of 2 images failed" in err
    assert len(out.split()) == 1


def test_evaluate_cli_json(trained, val_subset, capsys):
    code, out, err = run(capsys, "evaluate", "--feature", "hog", "--checkpoint",
                         trained / "decoder.safetensors", "--data", val_subset, "--limit", 8,
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    for key in ("normalized_error", "psnr", "ssim", "n_images", "seconds_per_image"):
        assert key in result
    assert result["n_images"] == 8 and 0 < result["normalized_error"] < 2
    assert 0 < result["ssim"] < 1 and result["seconds_per_image"] > 0


def test_python_api_invert(trained, val_subset):
    images = sorted(val_subset.iterdir())[:2]
    out = featinv.invert(images, checkpoint=trained / "decoder.safetensors", size=32)
    assert len(out) == 2
    assert out[0].shape[0] == 3 and min(out[0].shape[1:]) == 32
    assert 0 <= out[0].min() and out[0].max() <= 1


def test_checkpoint_for_another_feature_is_refused(trained):
    with pytest.raises(CheckpointError, match="decoder for 'hog', not 'dct'"):
        featinv.load_decoder(trained / "decoder.safetensors", feature="dct")


def test_checkpoint_with_another_layout_is_refused(trained, tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = trained / "decoder.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    meta["feature"]["params"] = {"cell_size": 4}
    bad = tmp_path / "other_layout.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(CheckpointError, match="layout 31x4x4.*now gives 31x8x8"):
        featinv.load_decoder(bad)


def test_tampered_and_foreign_files_are_refused(trained, tmp_path):
    data = (trained / "decoder.safetensors").read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        featinv.load_decoder(truncated)
    pickled = tmp_path / "model.safetensors"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="never unpickles"):
        featinv.load_decoder(pickled)
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not written by featinv"):
        featinv.load_decoder(foreign)


def test_resume_continues_and_matches_an_uninterrupted_run(train_subset, tmp_path, monkeypatch):
    """Kill training after a mid-epoch checkpoint, resume: same weights as a straight run."""
    def config(out):
        return TrainConfig(feature="hog", data=str(train_subset), out=str(out), image_size=32,
                           epochs=2, batch_size=16, width=0.125, workers=0, save_every=2,
                           val=None)

    train(config(tmp_path / "straight"), log=lambda m: None)

    real_step, calls = torch.optim.Adam.step, {"n": 0}

    def dying_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # after the checkpoint at step 4
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "killed"), log=lambda m: None)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    train(config(tmp_path / "killed"), resume=True, log=lambda m: None)

    a = featinv.load_decoder(tmp_path / "straight" / "decoder.safetensors").state_dict()
    b = featinv.load_decoder(tmp_path / "killed" / "decoder.safetensors").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bf16_channels_last_training_saves_a_decoder_that_inverts(train_subset, tmp_path,
                                                                   capsys):
    code, _, err = run(capsys, "train", "-f", "hog", "--data", train_subset, "--out", tmp_path,
                       "--image-size", 32, "--epochs", 1, "--limit", 16, "--batch-size", 8,
                       "--preset", "residual", "--workers", 0, "--precision", "bf16",
                       "--channels-last")
    assert code == 0, err
    decoder = featinv.load_decoder(tmp_path / "decoder.safetensors")
    assert all(p.dtype == torch.float32 for p in decoder.parameters())  # master weights
    y = featinv.invert([torch.rand(3, 32, 32)], checkpoint=tmp_path / "decoder.safetensors")[0]
    assert y.shape == (3, 32, 32) and torch.isfinite(y).all()


def test_fp16_on_the_cpu_is_refused_in_one_line(train_subset, tmp_path, capsys):
    code, _, err = run(capsys, "train", "-f", "hog", "--data", train_subset, "--out", tmp_path,
                       "--precision", "fp16", "--device", "cpu", "--workers", 0)
    assert code == 1 and "needs a CUDA device" in err and err.count("\n") == 1
