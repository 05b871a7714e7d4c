"""``featinv demo``: invert example images that ship with scikit-image.

Uses the representation's shipped decoder when there is one; otherwise trains a small decoder
first (a few minutes on a CPU) on a folder of photos the user points to. PyTorch is imported
only when the command runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from .options import POSITIVE, device_option
from ..errors import FeatinvError, printable

if TYPE_CHECKING:
    import torch


@click.command("demo")
@click.option("--train-data", type=click.Path(), help="Folder of photos to train a small "
              "decoder on when no shipped decoder exists.")
@click.option("--out", "-o", default="demo", show_default=True, type=click.Path())
@click.option("--feature", "-f", default="hog", show_default=True)
@click.option("--epochs", type=POSITIVE, default=3, show_default=True)
@click.option("--limit", type=POSITIVE, default=3000, show_default=True, help="Training images used.")
@device_option
def demo_cmd(train_data, out, feature, epochs, limit, device) -> None:
    """Invert bundled example images (training a small decoder first if none is shipped)."""
    for path in run_demo(feature, Path(out), train_data, epochs, limit, device,
                         log=lambda m: click.echo(printable(m), err=True)):
        click.echo(printable(path))


def example_images() -> dict[str, torch.Tensor]:
    """A few photos bundled with scikit-image, as ``(3, H, W)`` tensors in [0, 1]."""
    from ..io.images import EXAMPLES, example_image, pil_to_tensor

    return {name: pil_to_tensor(example_image(name)) for name in EXAMPLES}


def run_demo(feature: str, out: Path, train_data: str | None, epochs: int, limit: int,
             device: str, log: Callable[[str], None] = print) -> list[Path]:
    """Invert the example images with a ``feature`` decoder; returns the PNGs written."""
    import torch

    from ..inversion.device import pick_device
    from ..inversion.load import shipped_decoder_path
    from ..inversion.pipeline import Inverter
    from ..inversion.sizing import prepare
    from ..io.checkpoint import DECODER_FILE
    from ..io.images import make_grid, save_png
    from ..io.outputs import check_targets
    from ..io.images import EXAMPLES
    from ..representation.registry import get_spec
    from ..training.loop import TrainConfig, train

    # an unknown name was 'No shipped decoder for NAME yet: pass --train-data', and 'HOG' missed
    # the shipped 'hog' decoder
    feature = get_spec(feature).name
    # demo rewrites its own pictures; an -o that is a file or holds folders of those names is not
    check_targets([out / f"{name}.{feature}.png" for name in (*EXAMPLES, "examples")],
                  overwrite=True)
    dev = pick_device(device)
    trained = out / f"model-{feature}" / DECODER_FILE
    shipped = shipped_decoder_path(feature)
    if shipped is not None:
        checkpoint = str(shipped)
    elif trained.exists():
        log(f"using the decoder trained earlier: {trained}")
        checkpoint = str(trained)
    elif train_data:
        log(f"no shipped decoder for '{feature}': training a small one on {train_data} first")
        train(TrainConfig(feature=feature, data=train_data, out=str(trained.parent),
                          epochs=epochs, limit=limit, val=None, device=str(dev)), log=log)
        checkpoint = str(trained)
    else:
        raise FeatinvError(f"No shipped decoder for '{feature}' yet: pass --train-data DIR (a "
                           "folder of photos) to train a small one first.")
    inverter = Inverter.load(checkpoint, feature=feature, device=dev)
    size = inverter.image_size
    originals, recons, written = [], [], []
    for name, image in example_images().items():
        x = prepare(image, size)
        y = inverter.reconstruct(x[None])[0].cpu()
        written.append(save_png(make_grid([torch.stack([x, y])]), out / f"{name}.{feature}.png"))
        originals.append(_center_square(x))
        recons.append(_center_square(y))
    overview = make_grid([torch.stack(originals), torch.stack(recons)])
    written.append(save_png(overview, out / f"examples.{feature}.png"))
    return written


def _center_square(image: torch.Tensor) -> torch.Tensor:
    """The largest centred square of ``(3, H, W)``."""
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[:, top:top + side, left:left + side]
