"""``featinv compare``, and ``echo_metrics`` (the metrics as ``evaluate`` prints them too); no
torch at import."""
from __future__ import annotations

import click

from .common import echo_error as _echo_error, echo_json
from .options import POSITIVE, SIDE, device_option, realism_options
from ..errors import printable


def echo_metrics(result: dict) -> None:
    """The metric lines of ``evaluate``/``compare``'s text output: quality, then the realism
    metrics that were computed."""
    click.echo(f"  normalized error  {result['normalized_error']:.4f}")
    click.echo(f"  PSNR              {result['psnr']:.2f} dB")
    click.echo(f"  SSIM              {result['ssim']:.4f}")
    if result["feature_error"] is not None:
        click.echo(f"  feature error     {result['feature_error']:.4f} ({result['comparator']})")
    if result["perceptual_distance"] is not None:
        click.echo(f"  perceptual dist.  {result['perceptual_distance']:.4f} (SqueezeNet "
                   f"{', '.join(result['perceptual_layers'])}; unlearned weights)")
        click.echo(f"  class agreement   {result['class_agreement']:.4f} (SqueezeNet top-1)")


@click.command("compare")
@click.argument("originals", type=click.Path())
@click.argument("reconstructions", type=click.Path())
@click.option("--image-size", type=SIDE, default=128, show_default=True,
              help="Side of the square both images of a pair are cropped and resized to.")
@click.option("--suffix", help="Reconstructions are named <original stem><suffix>.<ext>, e.g. "
              "--suffix .hog for invert's photo.hog.png (default: tried by name).")
@click.option("--limit", type=POSITIVE, help="Use only the first N pairs.")
@click.option("--batch-size", type=POSITIVE, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@realism_options("none", "auto")
@device_option
def compare_cmd(originals, reconstructions, image_size, suffix, limit, batch_size, as_json,
                comparator, comparator_params, perceptual_weights, device) -> int:
    """Score existing reconstructions against their originals (paired by relative name)."""
    from ..analysis.compare import compare_folders

    result = compare_folders(originals, reconstructions, image_size, limit, suffix, comparator,
                             comparator_params, perceptual_weights, batch_size, device,
                             on_error=_echo_error)
    unmatched = result["unmatched"]
    if unmatched:
        more = f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else ""
        click.echo(f"skipping {len(unmatched)} reconstruction(s) with no original of that name "
                   f"in {printable(originals)}: {', '.join(map(printable, unmatched[:3]))}{more}.",
                   err=True)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{result['n_images']} pairs at {result['image_size']} px "
                   f"({result['device']}):")
        echo_metrics(result)
    return 1 if result["failed"] else 0
