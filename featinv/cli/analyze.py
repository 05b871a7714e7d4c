"""``featinv analyze ...``: the paper's analyses as commands (see featinv.analysis).

DECODER arguments are checkpoint paths or names of representations with a shipped decoder.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from .options import POSITIVE, device_option
from ..errors import printable

MAX_PICTURES = 256  # images one strip or grid of analyze may hold
PICTURES = click.IntRange(1, MAX_PICTURES)
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace output files that "
                                "exist already (inputs are never replaced).")


def _load(source: str, device: str):
    from ..inversion.load import extractor_for, load_decoder, pick_device

    decoder = load_decoder(source, device=pick_device(device))
    return extractor_for(decoder).to(pick_device(device)), decoder


def _size(decoder) -> int:
    return decoder.config["image_size"]


def _write_json(data: dict, path: Path) -> Path:
    from ..io.files import write_output

    text = json.dumps(data, indent=2) + "\n"
    return write_output(path, lambda tmp: Path(tmp).write_text(text))


def _check_outputs(targets, inputs, overwrite: bool, data=None) -> None:
    """Refuse outputs onto inputs (decoder files, images, the photos below ``data``) and onto
    existing files without ``--overwrite``, before any work."""
    from ..io.outputs import check_targets, with_data_images

    check_targets(targets, [*inputs, *with_data_images(data)], overwrite)


def _echo_path(path) -> None:
    click.echo(printable(path))


@click.group("analyze")
def analyze() -> None:
    """What a representation keeps: perturbations, interpolation, random features, top-k, units."""


@analyze.command("perturb")
@click.argument("decoders", nargs=-1, required=True)
@click.option("--data", required=True, type=click.Path(), help="Folder of test images.")
@click.option("--limit", type=POSITIVE, default=100, show_default=True, help="Images used.")
@click.option("--perturbation", "-p", "names", multiple=True,
              help="Perturbation(s) to apply (default: all). See featinv.analysis.perturb.")
@click.option("--autoencoder", "-a", multiple=True, type=click.Path(),
              help="Decoders trained with --finetune-encoder (one per layer, in order); their "
                   "errors are drawn as one more curve, as in the paper's Figure 7.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "-o", default="perturb", show_default=True, type=click.Path(),
              help="Output folder: perturb.json and perturb.png.")
@overwrite_option
@device_option
def perturb_cmd(decoders, data, limit, names, autoencoder, seed, out, overwrite, device) -> None:
    """Reconstruction error per DECODER (one per layer) under each feature perturbation."""
    from ..analysis.analyses import perturbation_errors
    from ..analysis.evaluate import load_square_images
    from ..analysis.plots import perturbation_chart

    folder = Path(out)
    _check_outputs([folder / "perturb.json", folder / "perturb.png"], [*decoders, *autoencoder],
                   overwrite, data)
    images: dict[int, object] = {}

    def images_at(size: int):
        """The test photos at one decoder size, read once per size."""
        if size not in images:
            images[size] = load_square_images(
                data, size, limit, lambda m: click.echo(f"Error: {printable(m)}", err=True))[0]
        return images[size]

    rows = []
    for source in decoders:
        extractor, decoder = _load(source, device)
        errors = perturbation_errors(extractor, decoder, images_at(_size(decoder)),
                                     list(names) or None, seed)
        rows.append({"layer": decoder.meta["feature"]["name"], "decoder": source,
                     "errors": errors})
        click.echo(f"{printable(rows[-1]['layer'])}: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in errors.items()))
    auto = []
    for source in autoencoder:
        extractor, decoder = _load(source, device)
        err = perturbation_errors(extractor, decoder, images_at(_size(decoder)), ["none"],
                                  seed)["none"]
        auto.append({"layer": decoder.meta["feature"]["name"], "decoder": source, "error": err})
    result = {"data": str(data), "n_images": len(next(iter(images.values()))), "seed": seed,
              "layers": rows, "autoencoder": auto}
    _echo_path(_write_json(result, folder / "perturb.json"))
    _echo_path(perturbation_chart(result, folder / "perturb.png"))


@analyze.command("interpolate")
@click.argument("decoder")
@click.argument("image_a")
@click.argument("image_b")
@click.option("--steps", type=click.IntRange(2, MAX_PICTURES), default=8, show_default=True)
@click.option("--out", "-o", default="interpolation.png", show_default=True, type=click.Path())
@overwrite_option
@device_option
def interpolate_cmd(decoder, image_a, image_b, steps, out, overwrite, device) -> None:
    """Decode features interpolated between IMAGE_A and IMAGE_B: a strip A | steps | B."""
    import torch

    from ..analysis.analyses import interpolate
    from ..io.images import load_square, make_grid, save_png

    _check_outputs([out], [decoder, image_a, image_b], overwrite)
    extractor, dec = _load(decoder, device)
    a, b = (load_square(p, _size(dec)) for p in (image_a, image_b))
    strip = interpolate(extractor, dec, a, b, steps).cpu()
    _echo_path(save_png(make_grid([torch.cat([a[None], strip, b[None]])]), Path(out)))


@analyze.command("sample")
@click.argument("decoder")
@click.option("--data", required=True, type=click.Path(),
              help="Images whose features the sampler imitates.")
@click.option("--limit", type=POSITIVE, default=256, show_default=True)
@click.option("--method", type=click.Choice(["histogram", "gaussian"]), default="histogram",
              show_default=True, help="Per-dimension histograms, or one truncated Gaussian.")
@click.option("--n", "count", type=PICTURES, default=8, show_default=True, help="Samples drawn.")
@click.option("--contrast", type=float, default=2.0, show_default=True,
              help="Factor the samples are multiplied by (the paper's alpha).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "-o", default="samples.png", show_default=True, type=click.Path())
@overwrite_option
@device_option
def sample_cmd(decoder, data, limit, method, count, contrast, seed, out, overwrite,
               device) -> None:
    """Images decoded from random feature vectors."""
    import torch

    from ..analysis.analyses import FeatureSampler
    from ..analysis.evaluate import load_square_images
    from ..io.images import make_grid, save_png
    from ..inversion.load import decode, encode

    _check_outputs([out], [decoder], overwrite, data)
    extractor, dec = _load(decoder, device)
    x, _ = load_square_images(data, _size(dec), limit)
    feats = torch.cat([encode(extractor, dec, x[i:i + 32]).cpu() for i in range(0, len(x), 32)])
    sampler = FeatureSampler(feats)
    draw = sampler.histogram if method == "histogram" else sampler.gaussian
    images = decode(dec, draw(count, contrast, seed)).cpu()
    _echo_path(save_png(make_grid([images]), Path(out)))


@analyze.command("topk")
@click.argument("decoder")
@click.argument("images", nargs=-1, required=True)
@click.option("-k", type=POSITIVE, default=5, show_default=True)
@click.option("--out", "-o", default="topk", show_default=True, type=click.Path(),
              help="Folder: one strip per image (input | all | top k | all but top k) and "
                   "topk.json with the errors.")
@overwrite_option
@device_option
def topk_cmd(decoder, images, k, out, overwrite, device) -> None:
    """Reconstruct from all class scores, only the top K, and all but the top K."""
    import torch

    from ..analysis.analyses import TOPK_VARIANTS, topk_variants
    from ..io.images import load_square, make_grid, save_png
    from ..inversion.load import decode, encode
    from ..analysis.metrics import reconstruction_distances
    from ..io.outputs import plan_inputs

    folder = Path(out)
    inputs = plan_inputs(images)
    targets = {item.path: folder / f"{item.stem}.topk.png" for item in inputs}
    _check_outputs([*targets.values(), folder / "topk.json"],
                   [decoder, *(item.path for item in inputs)], overwrite)
    extractor, dec = _load(decoder, device)
    rows = {}
    for path in targets:
        x = load_square(path, _size(dec))[None]
        variants = topk_variants(encode(extractor, dec, x), k)
        recon = {name: decode(dec, f).cpu() for name, f in variants.items()}
        strip = torch.cat([x] + [recon[name] for name in TOPK_VARIANTS])
        _echo_path(save_png(make_grid([strip]), targets[path]))
        rows[str(path)] = {name: float(reconstruction_distances(x, recon[name])[0])
                           for name in TOPK_VARIANTS}
    _write_json({"k": k, "decoder": decoder, "distance": rows}, folder / "topk.json")


@analyze.command("unit")
@click.argument("decoder")
@click.option("--unit", "-u", "units", type=int, multiple=True, required=True,
              help="Channel (or vector entry) to activate; repeat for several.")
@click.option("--value", type=float, help="Activation (default: 4 std above the unit's mean).")
@click.option("--out", "-o", default="units.png", show_default=True, type=click.Path())
@overwrite_option
@device_option
def unit_cmd(decoder, units, value, out, overwrite, device) -> None:
    """Images generated from one active unit, all others zero (one per --unit)."""
    import torch

    from ..analysis.analyses import unit_features
    from ..io.images import make_grid, save_png
    from ..inversion.load import decode

    if len(units) > MAX_PICTURES:
        raise click.UsageError(f"at most {MAX_PICTURES} --unit options, got {len(units)}.")
    _check_outputs([out], [decoder], overwrite)
    _, dec = _load(decoder, device)
    feats = torch.cat([unit_features(dec, u, value) for u in units])
    _echo_path(save_png(make_grid([decode(dec, feats).cpu()]), Path(out)))

