"""``featinv show-features``: draw what a representation sees in an image."""
from __future__ import annotations

import click

from .options import SIDE, feature_params, max_side_option, overwrite_option
from ..errors import FeatinvError, printable


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
