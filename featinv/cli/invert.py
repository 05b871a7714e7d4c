"""``featinv extract``, ``invert``, ``evaluate``, ``pack`` and ``show-features``: the commands
that compute features, reconstruct images or pack decoders (the group is in ``featinv.cli.main``)."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from .common import echo_error as _echo_error, echo_json as _echo_json, feature_params
from .compare import echo_metrics, realism_options
from .options import POSITIVE, SIDE, SIDE_OR_NATIVE, device_option
from ..errors import FeatinvError, printable
from ..limits import DEFAULT_MAX_SIDE


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
        click.option("--method", type=click.Choice(["decoder", "optimize"]), default="decoder",
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
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
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
@overwrite_option
@device_option
def extract_cmd(images, feature, params, out, size, crop, overwrite, device) -> int:
    """Compute the features of IMAGES (files or folders) and save them with their layout."""
    from ..representation.extract import extract_files, save_features
    from ..inversion.load import pick_device
    from ..io.outputs import check_targets, plan_inputs
    from ..representation.registry import get_feature

    if crop and size is None:
        raise click.UsageError("--crop needs --size.")
    paths = [item.path for item in plan_inputs(images)]
    check_targets([out], paths, overwrite)
    extractor = get_feature(feature, **params)
    errors = []

    def on_error(message: str) -> None:
        errors.append(message)
        _echo_error(message)

    result = extract_files(extractor, paths, size, crop, pick_device(device), on_error)
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
@click.option("--out", "-o", default=".", show_default=True, type=click.Path(),
              help="Output folder (or a .png file for a single image).")
@click.option("--size", type=SIDE, help="Shorter image side to work at (default: the image's "
              "own size for grid layouts such as HOG, SIFT, LBP; the decoder's training size for "
              "vector layouts and --method optimize). --size 128: the shipped decoders' training "
              "scale.")
@click.option("--max-side", type=SIDE, default=DEFAULT_MAX_SIDE, show_default=True,
              help="Shrink images whose longer side (after --size) exceeds this many px.")
@click.option("--side-by-side", is_flag=True, help="Write input | reconstruction(s) in one PNG.")
@overwrite_option
@method_options
@device_option
def invert_cmd(images, feature, checkpoint, out, size, max_side, side_by_side, overwrite, method,
               optimize, precision, device) -> int:
    """Reconstruct each image from its features; writes PNGs.

    IMAGES are files, folders, or skimage:NAME for a photo bundled with scikit-image
    (skimage:astronaut, skimage:coffee, ...).
    """
    import torch

    from ..errors import ImageError
    from ..io.images import check_side, make_grid, save_png
    from ..inversion.load import pick_device, prepare
    from ..inversion.methods import decoder_method, optimize_method
    from ..io.outputs import check_targets, plan_inputs, unique_labels

    features = [name for item in feature for name in item.split(",") if name]
    dev = pick_device(device)
    if method == "optimize":
        if checkpoint or not features:
            raise FeatinvError("--method optimize takes --feature NAME and no --checkpoint "
                               "(it inverts by gradient descent, with no decoder).")
        if precision != "fp32":
            raise FeatinvError("--precision applies to decoders; the optimisation baseline runs "
                               "in fp32.")
        inverters = [optimize_method(name, cfg=optimize, device=dev,
                                     progress=_optimize_progress(optimize, name))
                     for name in features]
    else:
        if not features and not checkpoint:
            raise FeatinvError("Pass --feature NAME (shipped decoder) or --checkpoint FILE.")
        if checkpoint and features and len(features) != len(checkpoint):
            raise FeatinvError(f"{len(features)} --feature names for {len(checkpoint)} "
                               "--checkpoint files: give one name per checkpoint, or none.")
        sources = list(checkpoint) or features
        inverters = [decoder_method(src, features[i] if features else None, dev, precision)
                     for i, src in enumerate(sources)]
    names = unique_labels([m.label for m in inverters])  # two hog checkpoints: hog, hog-2
    if size is None and not any(m.any_size for m in inverters):  # else: each image's own size
        size = check_side(inverters[0].image_size)
    inputs = plan_inputs(images)
    labels = ["-".join(names)] if side_by_side else names
    single_file = out.lower().endswith(".png")
    if single_file and len(inputs) * len(labels) > 1:
        raise FeatinvError(f"-o {printable(out)} names one PNG, but {len(inputs) * len(labels)} "
                           "pictures will be written; pass a folder instead (or --side-by-side).")
    targets = {(item.path, label): Path(out) if single_file else
               Path(out) / f"{item.stem}.{label}.png" for item in inputs for label in labels}
    check_targets(list(targets.values()), [item.path for item in inputs] + list(checkpoint),
                  overwrite)
    failures = 0
    for item in inputs:
        path = item.path
        try:
            x = prepare(path, size, max_side)
            ys = [m.run(x[None])[0].cpu() for m in inverters]
        except (ImageError, FeatinvError) as exc:
            failures += 1
            _echo_error(exc, path)
            continue
        if side_by_side:
            pictures = [make_grid([torch.stack([x, *ys])])]
        else:
            pictures = ys
        for picture, label in zip(pictures, labels):
            click.echo(printable(save_png(picture, targets[path, label])))
    if failures:
        click.echo(f"{failures} of {len(inputs)} images failed.", err=True)
    return 1 if failures else 0


@click.command("evaluate")
@click.option("--feature", "-f", help="Representation (uses its shipped decoder without --checkpoint).")
@click.option("--data", required=True, type=click.Path(), help="Folder of test images.")
@click.option("--checkpoint", "-c", type=click.Path(), help="Decoder checkpoint (.safetensors).")
@click.option("--image-size", type=SIDE_OR_NATIVE, help="Side of the centre squares the test "
              "images are cropped and resized to (default: the decoder's training size); "
              "native: each photo's own shorter side, not resized (all must share it).")
@click.option("--limit", type=POSITIVE, help="Use only the first N images.")
@click.option("--batch-size", type=POSITIVE, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@method_options
@realism_options("auto", None)
@device_option
def evaluate_cmd(feature, data, checkpoint, image_size, limit, batch_size, as_json, method,
                 optimize, precision, comparator, comparator_params, perceptual_weights,
                 device) -> int:
    """Normalized reconstruction error, PSNR, SSIM (and feature error, perceptual distance,
    class agreement) over a folder of images."""
    from ..analysis.evaluate import evaluate

    if method == "optimize" and checkpoint:
        raise FeatinvError("--method optimize reads no --checkpoint; pass --feature NAME.")
    result = evaluate(data, feature=feature, checkpoint=checkpoint, image_size=image_size,
                      limit=limit, batch_size=batch_size, device=device,
                      on_error=_echo_error,
                      method=method, optimize=optimize,
                      progress=_optimize_progress(optimize, feature) if method == "optimize"
                      else None, precision=precision, comparator=comparator,
                      comparator_params=comparator_params,
                      perceptual_weights=perceptual_weights)
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
@click.option("--out", "-o", required=True, type=click.Path(), help="Output .safetensors file.")
@click.option("--recipe", help="The command that trained it (stored in the metadata).")
@click.option("--float32", "full", is_flag=True, help="Keep float32 weights (default: float16).")
@click.option("--no-size-limit", "unlimited", is_flag=True,
              help="Allow a file over the 8 MiB a shipped decoder may take (to share it).")
@overwrite_option
def pack_cmd(source, out, recipe, full, unlimited, overwrite) -> None:
    """Pack a trained decoder (checkpoint or training folder) for sharing or shipping."""
    from ..inversion.shipped import MAX_SHIPPED_BYTES, pack

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
@overwrite_option
def show_features_cmd(image, feature, params, out, size, overwrite) -> None:
    """Draw what FEATURE sees in IMAGE, beside or on the image; writes a PNG."""
    import torch

    from ..io.images import open_rgb, pil_to_tensor, resize_shorter_side, save_png
    from ..io.outputs import check_targets
    from ..representation.registry import get_feature
    from ..analysis.visualize import show_features

    if not out.lower().endswith(".png"):
        raise FeatinvError(f"-o {printable(out)}: the picture is written as PNG; give a path "
                           "ending in .png.")
    check_targets([out], [image], overwrite)
    extractor = get_feature(feature, **params)
    img = open_rgb(image)
    if size:
        img = resize_shorter_side(img, size, printable(image))
    smallest = extractor.rule.smallest_side
    if min(img.size) < smallest:
        raise FeatinvError(f"{printable(image)}: {img.width}x{img.height} px is too small for "
                           f"'{feature}', which needs at least {smallest} px on each side; pass "
                           f"--size {smallest} or more.")
    picture = torch.from_numpy(show_features(extractor, pil_to_tensor(img))).permute(2, 0, 1)
    click.echo(printable(save_png(picture, out)))
