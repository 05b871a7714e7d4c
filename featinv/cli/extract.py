"""``featinv extract``: compute the features of images and save them with their layout."""
from __future__ import annotations

import click

from .common import echo_error as _echo_error
from .options import SIDE, device_option, feature_params, max_side_option, overwrite_option
from ..errors import FeatinvError, printable


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
