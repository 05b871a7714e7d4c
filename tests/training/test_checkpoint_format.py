"""The files a training run writes keep the names and tensor prefixes of every run before them,
so old run folders and training states still load and resume (the names are spelled out here, not
read from featinv.io.checkpoint, so that renaming a constant there fails this test)."""
from __future__ import annotations

from safetensors import safe_open

from helpers import quiet, train_configs, write_images
from featinv.inversion import sources
from featinv.io import checkpoint
from featinv.training.loop import train

config = train_configs(image_size=32, batch_size=4, budget=4, preset="residual", width=0.125,
                       threads=1)


def tensor_names(path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def test_a_run_folder_holds_the_files_and_prefixes_of_older_runs(tmp_path):
    write_images(tmp_path / "data", 4)
    out = tmp_path / "run"
    train(config(tmp_path / "data", out, loss="pixel,adversarial", ema=0.9), log=quiet)
    assert sorted(p.name for p in out.iterdir()) == ["decoder.safetensors", "metrics.jsonl",
                                                     "train_state.safetensors"]
    names = tensor_names(out / "train_state.safetensors")
    prefixes = ("decoder.", "ema.module.", "discriminator.", "opt.", "disc_opt.")
    assert all(name.startswith(prefixes) for name in names)
    assert all(any(name.startswith(p) for name in names) for p in prefixes)
    assert set(checkpoint.STATE_PREFIXES.values()) == {"decoder.", "encoder.", "ema.",
                                                       "discriminator.", "opt.", "disc_opt."}
    meta = checkpoint.read_meta(out / "train_state.safetensors", checkpoint.STATE_FORMAT)
    assert list(meta["optimizer_groups"]) == ["disc_opt."] and meta["param_groups"]
    # the decoder file holds the averaged decoder under its own names, nothing else
    decoder_names = tensor_names(out / "decoder.safetensors")
    assert sorted(decoder_names) == sorted(n[len("decoder."):] for n in names
                                           if n.startswith("decoder."))
    # inversion finds a run's decoder by the same name (it spells it out: it loads without torch)
    assert sources.RUN_FILE == checkpoint.DECODER_FILE == "decoder.safetensors"


def test_a_fine_tuned_encoder_is_stored_under_encoder(tmp_path):
    write_images(tmp_path / "data", 4)
    out = tmp_path / "run"
    train(config(tmp_path / "data", out, feature="squeezenet.conv1",
                 params={"weights": "random"}, finetune_encoder=True), log=quiet)
    state = tensor_names(out / "train_state.safetensors")
    assert any(n.startswith("encoder.") for n in state)
    assert all(n.startswith(("decoder.", "encoder.", "opt.")) for n in state)
    assert any(n.startswith("encoder.") for n in tensor_names(out / "decoder.safetensors"))
