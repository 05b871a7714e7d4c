"""``featinv invert``: reconstruct images with one or more methods (the group is in
``featinv.cli.main``; ``extract``, ``evaluate``, ``pack`` and ``show-features`` have modules of
their own)."""
from __future__ import annotations

import functools

import click

from .common import echo_error as _echo_error, optimize_progress as _optimize_progress
from .options import (SIDE, decoder_option, device_option, max_side_option, method_options,
                      overwrite_option)
from ..errors import printable


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
