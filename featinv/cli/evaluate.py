"""``featinv evaluate``: reconstruction metrics of a decoder (or the optimisation baseline) over a
folder of images."""
from __future__ import annotations

import click

from .common import echo_error as _echo_error, echo_json as _echo_json, optimize_progress
from .compare import echo_metrics
from .options import (POSITIVE, SIDE_OR_NATIVE, decoder_option, device_option, method_options,
                      realism_options)


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
                      progress=optimize_progress(optimize, feature) if method == "optimize"
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
