"""``featinv analyze ...``: the paper's analyses as commands (see featinv.analysis).

DECODER arguments are checkpoint paths or names of representations with a shipped decoder.
"""
from __future__ import annotations

from pathlib import Path

import click

from .options import POSITIVE, SEED, SIDE, Finite, device_option, overwrite_option
from ..choices import PERTURBATIONS, SAMPLERS
from ..errors import printable
from ..io import json_text
from ..limits import MIN_CONTRAST

MAX_PICTURES = 256  # images one strip or grid of analyze may hold
PICTURES = click.IntRange(1, MAX_PICTURES)


def _load(source: str, device: str):
    from ..analysis.figures import load_pair

    return load_pair(source, device)


def _write_json(data: dict, path: Path) -> Path:
    from ..io.files import write_output

    text = json_text.dumps(data, indent=2) + "\n"  # strict JSON: NaN -> null
    return write_output(path, lambda tmp: Path(tmp).write_text(text))


def _check_outputs(targets, inputs, overwrite: bool, data=None, suffix: str | None = None
                   ) -> None:
    """Refuse outputs onto inputs (decoder files, images, the photos below ``data``), onto
    existing files without ``--overwrite``, and (``suffix``) outputs named as another format
    than the one written, before any work."""
    from ..io.outputs import check_targets, with_data_images

    check_targets(targets, [*inputs, *with_data_images(data)], overwrite, suffix)


def _echo_path(path) -> None:
    click.echo(printable(path))


@click.group("analyze")
def analyze() -> None:
    """What a representation keeps: layers, perturbations, interpolation, random features, top-k,
    units."""


@analyze.command("perturb")
@click.argument("decoders", nargs=-1, required=True)
@click.option("--data", required=True, type=click.Path(), help="Folder of test images.")
@click.option("--limit", type=POSITIVE, default=100, show_default=True, help="Images used.")
@click.option("--perturbation", "-p", "names", multiple=True, type=click.Choice(PERTURBATIONS),
              help="Perturbation(s) to apply (default: all). See featinv.analysis.perturb.")
@click.option("--autoencoder", "-a", multiple=True, type=click.Path(),
              help="Decoders trained with --finetune-encoder (one per layer, in order); their "
                   "errors are drawn as one more curve, as in the paper's Figure 7.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", "-o", default="perturb", show_default=True, type=click.Path(),
              help="Output folder: perturb.json and perturb.png.")
@overwrite_option
@device_option
def perturb_cmd(decoders, data, limit, names, autoencoder, seed, out, overwrite, device) -> None:
    """Reconstruction error per DECODER (one per layer) under each feature perturbation."""
    from ..analysis.figures import perturbation_study
    from ..analysis.plots import perturbation_chart
    from ..io.files import written_together

    folder = Path(out)
    _check_outputs([folder / "perturb.json", folder / "perturb.png"], [*decoders, *autoencoder],
                   overwrite, data)

    def echo_row(row: dict) -> None:
        click.echo(f"{printable(row['layer'])}: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in row["errors"].items()))

    result = perturbation_study(decoders, data, limit, names, seed, autoencoder, device,
                                on_error=lambda m: click.echo(f"Error: {printable(m)}", err=True),
                                on_layer=echo_row)
    # moved in together: a signal between the two writes paired a new JSON with the old chart
    with written_together(folder) as stage:
        _write_json(result, stage / "perturb.json")
        perturbation_chart(result, stage / "perturb.png")
    for name in ("perturb.json", "perturb.png"):
        _echo_path(folder / name)


@analyze.command("layers")
@click.argument("image")
@click.option("--network", "-n", help="Network whose layers to show, e.g. squeezenet (default: "
              "the only network with shipped layer decoders).")
@click.option("--size", type=SIDE, help="Side of the photo's centred square (default: the "
              "first layer decoder's training size).")
@click.option("--out", "-o", default="layers.png", show_default=True, type=click.Path())
@overwrite_option
@device_option
def layers_cmd(image, network, size, out, overwrite, device) -> None:
    """The photo and its reconstruction from every shipped layer of a network, labelled (the
    paper's Figure 5 row); prints each reconstruction's RMS pixel error."""
    from ..analysis.layers import layer_strip
    from ..io.images import save_png

    _check_outputs([out], [image], overwrite, suffix=".png")
    picture, result = layer_strip(image, network, size, device)
    for row in result["layers"]:
        click.echo(f"{printable(row['layer'])}: RMS error {row['rmse']:.3f}")
    _echo_path(save_png(picture, Path(out)))


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
    from ..analysis.figures import interpolation_strip
    from ..io.images import load_square, save_png

    _check_outputs([out], [decoder, image_a, image_b], overwrite, suffix=".png")
    extractor, dec = _load(decoder, device)
    a, b = (load_square(p, dec.config["image_size"]) for p in (image_a, image_b))
    _echo_path(save_png(interpolation_strip(extractor, dec, a, b, steps), Path(out)))


@analyze.command("sample")
@click.argument("decoder")
@click.option("--data", required=True, type=click.Path(),
              help="Images whose features the sampler imitates.")
@click.option("--limit", type=POSITIVE, default=256, show_default=True)
@click.option("--method", type=click.Choice(SAMPLERS), default="histogram",
              show_default=True, help="Per-dimension histograms, or one truncated Gaussian.")
@click.option("--n", "count", type=PICTURES, default=8, show_default=True, help="Samples drawn.")
@click.option("--contrast", type=Finite(MIN_CONTRAST, 100), default=2.0, show_default=True,
              help="Factor the samples are multiplied by (the paper's alpha).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", "-o", default="samples.png", show_default=True, type=click.Path())
@overwrite_option
@device_option
def sample_cmd(decoder, data, limit, method, count, contrast, seed, out, overwrite,
               device) -> None:
    """Images decoded from random feature vectors."""
    from ..analysis.figures import sampled_images
    from ..io.images import save_png

    _check_outputs([out], [decoder], overwrite, data, suffix=".png")
    extractor, dec = _load(decoder, device)
    picture = sampled_images(extractor, dec, data, limit, method, count, contrast, seed,
                             on_error=lambda m: click.echo(f"Error: {printable(m)}", err=True))
    _echo_path(save_png(picture, Path(out)))


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
    from ..analysis.figures import topk_strip
    from ..io.images import load_square, save_png
    from ..io.outputs import plan_inputs

    folder = Path(out)
    inputs = plan_inputs(images)
    targets = {item.path: folder / f"{item.stem}.topk.png" for item in inputs}
    _check_outputs([*targets.values(), folder / "topk.json"],
                   [decoder, *(item.path for item in inputs)], overwrite)
    extractor, dec = _load(decoder, device)
    rows = {}
    for path in targets:
        strip, rows[str(path)] = topk_strip(extractor, dec,
                                            load_square(path, dec.config["image_size"]), k)
        _echo_path(save_png(strip, targets[path]))
    _write_json({"k": k, "decoder": decoder, "distance": rows}, folder / "topk.json")


@analyze.command("unit")
@click.argument("decoder")
@click.option("--unit", "-u", "units", type=int, multiple=True, required=True,
              help="Channel (or vector entry) to activate; repeat for several.")
@click.option("--value", type=Finite(-1e6, 1e6), help="Activation (default: 4 std above the "
              "unit's mean).")
@click.option("--out", "-o", default="units.png", show_default=True, type=click.Path())
@overwrite_option
@device_option
def unit_cmd(decoder, units, value, out, overwrite, device) -> None:
    """Images generated from one active unit, all others zero (one per --unit)."""
    from ..analysis.figures import unit_images
    from ..io.images import save_png

    if len(units) > MAX_PICTURES:
        raise click.UsageError(f"at most {MAX_PICTURES} --unit options, got {len(units)}.")
    repeated = sorted({u for u in units if units.count(u) > 1})
    if repeated:  # the same picture twice, as if it were another unit's
        raise click.UsageError(f"--unit {repeated[0]} is given {units.count(repeated[0])} times; "
                               "give each unit once.")
    if value is not None and value != 0 and abs(value) < 1e-30:
        raise click.UsageError(f"--value {value:g} is 0 in float32 (no activation at all); give "
                               "0 or a value of at least 1e-30 in size, e.g. 10.")
    _check_outputs([out], [decoder], overwrite, suffix=".png")
    _, dec = _load(decoder, device)
    _echo_path(save_png(unit_images(dec, units, value), Path(out)))

