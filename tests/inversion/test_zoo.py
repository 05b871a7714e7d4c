"""Shipped decoders (featinv/zoo), packing, the residual preset and multi-decoder inversion."""
from pathlib import Path

import pytest
import torch
from PIL import Image

import featinv
from featinv.decoders.networks import build_decoder
from featinv.io.images import center_crop_resize, pil_to_tensor
from featinv.inversion.load import ZOO_DIR, extractor_for, load_decoder, reconstruct
from featinv.representation.layout import GridLayout
from featinv.analysis.metrics import reconstruction_distances
from featinv.inversion.shipped import MAX_SHIPPED_BYTES, describe, pack, shipped
from featinv.training.loop import TrainConfig, train
from helpers import run_cli as run

SHIPPED = ("hog", "sift", "lbp")


# --- the residual preset ----------------------------------------------------------------------

@pytest.mark.parametrize("layout,size", [
    (GridLayout(31, 16, 16), 128),         # HOG: 8x up
    (GridLayout(58, 8, 8), 128),           # LBP: 16x up
    (GridLayout(133, 32, 32, sparse=True), 128),  # SIFT: sparse stem
    (GridLayout(512, 13, 13), 227),        # a CNN layer with an odd grid
    (GridLayout(64, 5, 7), 40),            # tiny and not square
])
@pytest.mark.slow
def test_residual_preset_builds_any_grid(layout, size):
    spec = featinv.get_spec("hog")
    decoder = build_decoder(spec, layout, size, preset="residual").eval()
    assert decoder.config["family"] == "residual_unet"
    x = torch.randn(2, *layout.shape)
    with torch.no_grad():
        raw = decoder(x)
        sized = decoder(x, size=(size, size + 3))
    assert raw.shape[:2] == (2, 3) and raw.shape[-1] / layout.width == raw.shape[-2] / layout.height
    assert sized.shape == (2, 3, size, size + 3) and torch.isfinite(sized).all()


def test_residual_blocks_start_as_identity():
    from featinv.decoders.networks import ResBlock

    block = ResBlock(8)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(block(x), x)


# --- packing --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def residual_run(tmp_path_factory):
    from helpers import write_images

    root = tmp_path_factory.mktemp("zoo")
    write_images(root / "train", 16, size=(40, 36))
    write_images(root / "val", 4, size=(40, 36), seed=1)
    out = root / "run"
    train(TrainConfig(feature="hog", data=str(root / "train"), val=str(root / "val"),
                      out=str(out), image_size=32, epochs=2, batch_size=8, workers=0,
                      preset="residual", schedule="cosine", crop_scale=(0.8, 1.0)), log=lambda m: None)
    return out


@pytest.mark.slow
def test_pack_halves_the_file_and_keeps_the_outputs(residual_run, tmp_path):
    packed = pack(residual_run, tmp_path / "hog.safetensors", recipe="featinv train -f hog ...")
    full = residual_run / "decoder.safetensors"
    assert packed.stat().st_size < 0.6 * full.stat().st_size
    a, b = load_decoder(full), load_decoder(packed)
    assert all(p.dtype == torch.float32 for p in b.parameters())  # cast back on load
    x = torch.rand(2, 3, 32, 32)
    ya, yb = (reconstruct(extractor_for(d), d, x) for d in (a, b))
    assert (ya - yb).abs().max() < 2e-2
    info = describe(packed)
    assert info["recipe"] == "featinv train -f hog ..." and info["preset"] == "residual"
    assert info["val_normalized_error"] is not None and info["parameters"] > 0
    history = b.meta["packed"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_pack_cli_refuses_what_is_not_a_decoder(tmp_path, capsys):
    (tmp_path / "x.safetensors").write_bytes(b"not a file")
    code, _, err = run(capsys, "pack", tmp_path / "x.safetensors", "-o", tmp_path / "y.safetensors")
    assert code == 1 and err.startswith("Error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y.safetensors").exists()


# --- the shipped decoders -------------------------------------------------------------------

def test_hog_sift_and_lbp_are_shipped():
    assert {e["feature"] for e in shipped()} >= set(SHIPPED)


@pytest.fixture(scope="module")
def val_128(shared_dir):
    """64 validation photos, centre squares at 128 px, and their mean image."""
    files = sorted((shared_dir / "data" / "val").glob("*.jpg"))[:64]
    x = torch.stack([pil_to_tensor(center_crop_resize(Image.open(f).convert("RGB"), 128))
                     for f in files])
    return x, x.mean(0, keepdim=True).expand_as(x)


@pytest.fixture(scope="module")
def val320_256(shared_dir):
    """8 photos of val320, centre squares at 256 px (from 320: not enlarged), and the mean
    image of 64 (the mean of the 8 alone would be a biased baseline: each photo is 1/8 of it)."""
    files = sorted((shared_dir / "data" / "val320").glob("*.jpg"))[:64]
    x = torch.stack([pil_to_tensor(center_crop_resize(Image.open(f).convert("RGB"), 256))
                     for f in files])
    return x[:8], x.mean(0, keepdim=True).expand_as(x[:8])


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_decoder_at_256_px_fits_and_beats_the_mean_image(name, val320_256):
    """Fully convolutional: the 128-px decoders reconstruct 256-px photos (their features on
    a twice larger grid) at exactly 256 px, better than the mean image."""
    decoder = load_decoder(name)
    extractor = extractor_for(decoder)
    x, mean = val320_256
    feats = extractor(x[:1])
    assert tuple(feats.shape[1:]) == extractor.layout(256, 256).shape
    assert extractor.layout(256, 256).height == 2 * decoder.layout.height
    with torch.no_grad():
        assert decoder(feats).shape[-2:] == (256, 256)  # no resizing needed
    y = reconstruct(extractor, decoder, x)
    # measured on these 8: hog 0.68, sift 0.75, lbp 0.88 of the mean image's distance (at 128 px:
    # 0.68, 0.78, 0.84; trained without scale augmentation, LBP loses at the larger size)
    assert reconstruction_distances(x, y).mean() < 0.92 * reconstruction_distances(x, mean).mean()


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_decoder_loads_fits_and_beats_the_mean_image(name, val_128):
    path = ZOO_DIR / f"{name}.safetensors"
    assert path.stat().st_size <= MAX_SHIPPED_BYTES
    info = describe(path)
    assert info["recipe"].startswith("featinv train") and info["val_images"] == 500
    assert 0 < info["val_normalized_error"] < 0.7
    decoder = load_decoder(name)
    extractor = extractor_for(decoder)
    size = decoder.config["image_size"]
    assert decoder.layout == extractor.layout(size, size)
    x, mean = val_128
    y = reconstruct(extractor, decoder, x)
    assert reconstruction_distances(x, y).mean() < 0.85 * reconstruction_distances(x, mean).mean()


def test_zoo_cli_lists_size_and_metrics(capsys):
    code, out, _ = run(capsys, "zoo")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["feature", "MB"]
    for name in SHIPPED:
        row = next(line for line in lines if line.startswith(name + " "))
        assert "residual" in row and "128 px" in row


@pytest.mark.slow
@pytest.mark.parametrize("args,side", [((), 512), (("--size", "128"), 128)])
def test_invert_side_by_side_with_three_shipped_decoders(tmp_path, capsys, args, side):
    """The README's first command: the astronaut at its own 512 px, or at 128 px."""
    out = tmp_path / "astronaut.png"
    code, stdout, err = run(capsys, "invert", "-f", "hog,sift", "-f", "lbp", "skimage:astronaut",
                            "--side-by-side", "-o", out, *args)
    assert code == 0, err
    assert stdout.strip() == str(out)
    with Image.open(out) as img:  # input | HOG | SIFT | LBP, 2 px gaps
        assert img.size == (4 * side + 5 * 2, side + 2 * 2)


@pytest.mark.slow
def test_invert_writes_one_png_per_decoder_and_names_them(tmp_path, capsys):
    code, stdout, err = run(capsys, "invert", "-f", "hog,lbp", "skimage:coffee", "--size", "64",
                            "-o", tmp_path)
    assert code == 0, err
    assert sorted(Path(p).name for p in stdout.split()) == ["coffee.hog.png", "coffee.lbp.png"]


def test_unknown_example_image_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "invert", "-f", "hog", "skimage:nope", "-o", tmp_path)
    assert code == 1
    assert "scikit-image has no example image 'nope'" in err and "skimage:astronaut" in err


@pytest.mark.slow
def test_bf16_decoder_is_close_to_fp32(tmp_path, capsys):
    from featinv.inversion.methods import decoder_method

    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    full = decoder_method("hog").run(x)
    half = decoder_method("hog", precision="bf16")
    assert half.info["precision"] == "bf16"
    fast = half.run(x)
    assert fast.dtype == torch.float32 and fast.shape == full.shape
    assert (fast - full).abs().mean() < 0.01
    code, stdout, err = run(capsys, "invert", "-f", "hog", "skimage:coffee", "--precision", "bf16",
                            "--size", "64", "-o", tmp_path / "c.png")
    assert code == 0, err


@pytest.mark.parametrize("args,message", [
    (["--method", "optimize", "--precision", "bf16"], "applies to decoders"),
    (["--precision", "fp16", "--device", "cpu"], "needs a CUDA device"),
])
def test_precision_that_cannot_run_is_one_line(tmp_path, capsys, args, message):
    code, _, err = run(capsys, "invert", "-f", "hog", "skimage:coffee", *args, "-o", tmp_path)
    assert code == 1 and message in err and "Traceback" not in err


@pytest.mark.slow
def test_realistic_hog_decoder_is_shipped_next_to_the_pixel_one(val_128, capsys):
    """docs/paper.md, Appendix A: arm (e), fine-tuned with SqueezeNet fire5's feature loss."""
    path = ZOO_DIR / "hog.realistic.safetensors"
    assert path.stat().st_size <= MAX_SHIPPED_BYTES
    assert "pixel,feature" in describe(path)["recipe"]
    decoder = load_decoder("hog", decoder="realistic")
    assert decoder.layout == load_decoder("hog").layout
    extractor = extractor_for(decoder)
    x, mean = val_128
    y = reconstruct(extractor, decoder, x)
    assert reconstruction_distances(x, y).mean() < 0.85 * reconstruction_distances(x, mean).mean()
    code, out, _ = run(capsys, "zoo")
    row = next(line for line in out.splitlines() if " realistic " in line)
    assert row.startswith("hog ") and "comparator squeezenet.fire5" in row
