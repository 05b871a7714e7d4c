"""``featinv extract``, ``invert``, ``evaluate``, ``pack`` and ``show-features``: the commands
that compute features, reconstruct images or pack decoders (the group is in ``featinv.cli.main``)."""
from __future__ import annotations

import functools

import click

from .common import echo_error as _echo_error, echo_json as _echo_json, feature_params
from .compare import echo_metrics, realism_options
from .options import POSITIVE, SIDE, SIDE_OR_NATIVE, decoder_option, device_option
from ..choices import METHODS, PRECISIONS
from ..errors import FeatinvError, printable
from ..limits import DEFAULT_MAX_SIDE


max_side_option = click.option(
    "--max-side", type=SIDE, default=DEFAULT_MAX_SIDE, show_default=True,
    help="Shrink images whose longer side (after --size) exceeds this many px: the work stays "
    "bounded for big photos.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace output files that "
                                "exist already (inputs are never replaced).")


def method_options(command):
    """``--method decoder|optimize`` and the optimisation baseline's settings, handed on as
    ``method`` and ``optimize`` (an ``OptimizeConfig``)."""
    from ..inversion.optimize import OptimizeConfig

    defaults = OptimizeConfig()

    @functools.wraps(command)
    def wrapper(*args, steps, step_size, lambda_tv, lambda_alpha, **kwargs):
        cfg = OptimizeConfig(steps=steps, lr=step_size, lambda_tv=lambda_tv,
                             lambda_alpha=lambda_alpha)
        return command(*args, optimize=cfg, **kwargs)

    options = [
        click.option("--method", type=click.Choice(METHODS), default="decoder",
                     show_default=True, help="decoder: a trained decoder, one forward pass; "
                     "optimize: the optimisation baseline (Mahendran & Vedaldi), no training, "
                     "differentiable representations only."),
        click.option("--steps", type=POSITIVE, default=defaults.steps, show_default=True,
                     help="optimize: gradient steps."),
        click.option("--step-size", type=float, default=defaults.lr, show_default=True,
                     help="optimize: step size (per pixel)."),
        click.option("--lambda-tv", type=float, default=defaults.lambda_tv, show_default=True,
                     help="optimize: weight of the total-variation prior."),
        click.option("--lambda-alpha", type=float, default=defaults.lambda_alpha,
                     show_default=True, help="optimize: weight of the alpha-norm prior."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="fp32",
                     show_default=True, help="decoder: run it in mixed precision (bf16: 2-3x "
                     "faster on CPUs with AVX-512 BF16; fp16: CUDA only)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _optimize_progress(cfg, name: str):
    """The optimisation baseline's progress: a bar on a terminal, a line now and then in logs."""
    from ..progress import StepProgress

    return StepProgress(cfg.steps, f"optimising {name}")


@click.command("extract")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--feature", "-f", required=True, help="Representation to compute.")
@feature_params
@click.option("--out", "-o", required=True, type=click.Path(), help="Output .npz file.")
@click.option("--size", type=SIDE, help="Resize the shorter side to this many px first.")
@click.option("--crop", is_flag=True, help="With --size: centre square of that side.")
@max_side_option
@overwrite_option
@device_option
def extract_cmd(images, feature, params, out, size, crop, max_side, overwrite, device) -> int:
    """Compute the features of IMAGES (files or folders) and save them with their layout."""
    from ..representation.extract import extract_files, save_features
    from ..inversion.device import pick_device
    from ..io.outputs import check_targets, plan_inputs
    from ..representation.registry import get_feature

    if crop and size is None:
        raise click.UsageError("--crop needs --size.")
    paths = [item.path for item in plan_inputs(images)]
    check_targets([out], paths, overwrite, suffix=".npz")
    extractor = get_feature(feature, **params)
    errors = []

    def on_error(message: str) -> None:
        errors.append(message)
        _echo_error(message)

    result = extract_files(extractor, paths, size, crop, pick_device(device), on_error,
                           max_side)
    for i, (info, feats) in enumerate(zip(result.images, result.features)):
        stats = "".join(f", {k} {v[i]}" for k, v in result.report.items())
        click.echo(f"{printable(info['path'])}: {'x'.join(map(str, feats.shape))}{stats}",
                   err=True)
    if errors:
        click.echo(f"{len(errors)} of {len(paths)} images failed.", err=True)
    if not result.features:
        raise FeatinvError(f"every image failed; nothing written to {printable(out)}.")
    target = save_features(result, out)
    click.echo(f"wrote {printable(target)} ({len(result.features)} images, {feature})")
    return 1 if errors else 0


@click.command("invert")
@click.argument("images", nargs=-1, required=True)
@click.option("--feature", "-f", multiple=True, help="Representation (its shipped decoder is "
              "used without --checkpoint). Repeat it or separate names by commas to compare "
              "several side by side.")
@click.option("--checkpoint", "-c", multiple=True, type=click.Path(),
              help="Decoder checkpoint (.safetensors); may be repeated.")
@decoder_option
@click.option("--out", "-o", default=".", show_default=True, type=click.Path(),
              help="Output folder (or a .png file for a single image).")
@click.option("--size", type=SIDE, help="Shorter image side to work at (default: the image's "
              "own size for grid layouts such as HOG, SIFT, LBP; the decoder's training size for "
              "vector layouts and --method optimize). --size 128: the shipped decoders' training "
              "scale.")
@max_side_option
@click.option("--side-by-side", is_flag=True, help="Write input | reconstruction(s) in one PNG.")
@click.option("--weights", metavar="NAME|PATH", help="Compute the features with these network "
              "weights (e.g. imagenet, deepcompression, a .safetensors/.npz file) instead of "
              "those each decoder was trained against; a warning says so when they differ.")
@overwrite_option
@method_options
@device_option
def invert_cmd(images, feature, checkpoint, decoder_name, out, size, max_side, side_by_side,
               weights, overwrite, method, optimize, precision, device) -> int:
    """Reconstruct each image from its features; writes PNGs.

    IMAGES are files, folders, or skimage:NAME for a photo bundled with scikit-image
    (skimage:astronaut, skimage:coffee, ...).
    """
    from ..inversion.batch import invert_files
    from ..inversion.device import pick_device
    from ..inversion.methods import make_methods

    features = [name for item in feature for name in item.split(",") if name]
    inverters = make_methods(method, features, checkpoint, pick_device(device), optimize,
                             functools.partial(_optimize_progress, optimize), precision,
                             decoder_name, weights)
    report = invert_files(images, inverters, out, size, max_side, side_by_side, overwrite,
                          protect=checkpoint, on_written=lambda p: click.echo(printable(p)),
                          on_error=lambda exc, path: _echo_error(exc, path))
    if report.failed:
        click.echo(f"{len(report.failed)} of {report.n_inputs} images failed.", err=True)
    return 1 if report.failed else 0


@click.command("evaluate")
@click.option("--feature", "-f", help="Representation (uses its shipped decoder without --checkpoint).")
@click.option("--data", required=True, type=click.Path(), help="Folder of test images.")
@click.option("--checkpoint", "-c", type=click.Path(), help="Decoder checkpoint (.safetensors).")
@decoder_option
@click.option("--image-size", type=SIDE_OR_NATIVE, help="Side of the centre squares the test "
              "images are cropped and resized to (default: the decoder's training size); "
              "native: each photo's own shorter side, not resized (all must share it).")
@click.option("--limit", type=POSITIVE, help="Use only the first N images.")
@click.option("--batch-size", type=POSITIVE, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@method_options
@realism_options("auto", None)
@device_option
def evaluate_cmd(feature, data, checkpoint, decoder_name, image_size, limit, batch_size,
                 as_json, method, optimize, precision, comparator, comparator_params,
                 perceptual_weights, device) -> int:
    """Normalized reconstruction error, PSNR, SSIM (and feature error, perceptual distance,
    class agreement) over a folder of images."""
    from ..analysis.evaluate import evaluate

    result = evaluate(data, feature=feature, checkpoint=checkpoint, image_size=image_size,
                      limit=limit, batch_size=batch_size, device=device,
                      on_error=_echo_error,
                      method=method, optimize=optimize,
                      progress=_optimize_progress(optimize, feature) if method == "optimize"
                      else None, precision=precision, comparator=comparator,
                      comparator_params=comparator_params,
                      perceptual_weights=perceptual_weights, decoder=decoder_name)
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"{result['feature']} ({result['method']}) on {result['n_images']} images at "
                   f"{result['image_size']} px ({result['device']}):")
        echo_metrics(result)
        click.echo(f"  time per image    {result['seconds_per_image'] * 1000:.2f} ms")
    return 1 if result["failed"] else 0


@click.command("pack")
@click.argument("source", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="Output: a .safetensors "
              "file, or a folder to share (model.safetensors, config.json, README.md model "
              "card, reconstruction.png).")
@click.option("--recipe", help="The command that trained it (stored in the metadata).")
@click.option("--float32", "full", is_flag=True, help="Keep float32 weights (default: float16).")
@click.option("--no-size-limit", "unlimited", is_flag=True,
              help="Allow a file over the 8 MiB a shipped decoder may take (to share it; "
              "folders have no limit).")
@click.option("--license", "license_", default="mit", show_default=True,
              help="Folder: the licence of the weights in the model card (a Hub identifier).")
@overwrite_option
def pack_cmd(source, out, recipe, full, unlimited, license_, overwrite) -> None:
    """Pack a trained decoder (checkpoint, training folder or packed folder) as one file for
    shipping, or as a folder with a model card for sharing ('featinv push' uploads one)."""
    from ..inversion.share import is_folder_target, pack_folder
    from ..inversion.shipped import MAX_SHIPPED_BYTES, pack

    if is_folder_target(out):
        folder = pack_folder(source, out, recipe=recipe, half=not full, overwrite=overwrite,
                             license=license_)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        click.echo(f"{printable(folder)} ({size / 1e6:.2f} MB; load it with -c "
                   f"local-dir:{printable(folder)})")
        return
    path = pack(source, out, recipe=recipe, half=not full, overwrite=overwrite,
                max_bytes=None if unlimited else MAX_SHIPPED_BYTES)
    click.echo(f"{printable(path)} ({path.stat().st_size / 1e6:.2f} MB)")


@click.command("show-features")
@click.argument("image", type=click.Path())
@click.option("--feature", "-f", required=True, help="Representation to draw.")
@feature_params
@click.option("--out", "-o", required=True, type=click.Path(), help="Output .png file.")
@click.option("--size", type=SIDE,
              help="Resize the shorter side to this many px first (default: as is).")
@max_side_option
@overwrite_option
def show_features_cmd(image, feature, params, out, size, max_side, overwrite) -> None:
    """Draw what FEATURE sees in IMAGE, beside or on the image; writes a PNG."""
    from ..analysis.visualize import feature_picture
    from ..io.images import save_png
    from ..io.outputs import check_targets
    from ..representation.registry import get_feature

    if not out.lower().endswith(".png"):
        raise FeatinvError(f"-o {printable(out)}: the picture is written as PNG; give a path "
                           "ending in .png.")
    check_targets([out], [image], overwrite)
    extractor = get_feature(feature, **params)
    picture = feature_picture(extractor, image, size, feature, max_side)
    click.echo(printable(save_png(picture, out)))
