"""Sharing decoders: a packed folder with a model card, and its upload to the Hugging Face Hub.

``pack_folder`` writes, into one folder, what a shared model holds on the Hub:

- ``model.safetensors``: the decoder, packed as ``pack`` packs a single file;
- ``config.json``: representation and parameters, layout, decoder, training recipe, metrics,
  featinv version (the same facts as the file's metadata, for people and the Hub);
- ``README.md``: the model card (front matter ``library_name: featinv``, licence, tags);
- ``reconstruction.png``: photos bundled with scikit-image over their reconstructions.

``push`` packs a run into a temporary folder and uploads it (``featinv.io.hub.upload``).
Loading goes through ``featinv.inversion.sources`` (``hf-hub:ORG/NAME``, ``local-dir:DIR``).
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import FeatinvError, printable, quoted
from ..io import hub
from ..io.checkpoint import DECODER_FILE, STATE_FILE
from ..io.files import atomic_write, written_together
from ..io.hub import CARD_FILE, CONFIG_FILE, MODEL_FILE, PICTURE_FILE, SHARED_FILES
from ..io.images import EXAMPLES, IMAGE_EXTENSIONS, example_image, make_grid, pil_to_tensor, \
    save_png
from .load import load_decoder
from .pipeline import Inverter
from .sizing import prepare
from .shipped import describe, pack
from .sources import LOCAL, source_file

_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")


def is_folder_target(out: str | Path) -> bool:
    """``pack -o OUT`` writes a folder unless OUT ends in ``.safetensors``; a name that ends
    like an image or another file (``photo.jpg``) is refused rather than made a folder."""
    suffix = Path(out).suffix.lower()
    if suffix == ".safetensors":
        return False
    if suffix in IMAGE_EXTENSIONS or suffix in (".pt", ".pth", ".bin", ".ckpt", ".npz", ".json",
                                                 ".md", ".txt", ".zip"):
        raise FeatinvError(f"-o {printable(out)}: pack writes a .safetensors file or a folder; "
                           "give a path ending in .safetensors, or a folder name.")
    return True


def pack_folder(source: str | Path, out: str | Path, recipe: str | None = None,
                half: bool = True, notes: str | None = None, overwrite: bool = False,
                license: str = "mit", name: str | None = None) -> Path:
    """Write ``source`` (a checkpoint, a training run's folder or a packed folder) as a shared
    folder ``out`` (see the module docstring). ``name``: the reference the card tells users to
    load it by (default ``local-dir:OUT``). Existing files are refused unless ``overwrite``;
    an input is never replaced. Returns ``out``."""
    license = _check_license(license)
    out = Path(out)
    src = source_file(source)
    from ..io.outputs import check_targets

    if (out / DECODER_FILE).exists():  # -c OUT would then have two decoders to choose from
        raise FeatinvError(f"-o {printable(out)} holds a training run ({DECODER_FILE}); give "
                           "the packed folder a folder of its own.")

    check_targets([out / f for f in SHARED_FILES], [src, src.parent / STATE_FILE],
                  overwrite)
    # the four files are moved in together once all are written: a failure or signal on the
    # way (the picture takes a decoding) left a new model beside the old card, config, picture
    with written_together(out) as stage:
        model = pack(src, stage / MODEL_FILE, recipe=recipe, half=half, notes=notes,
                     max_bytes=None)
        info = describe(model)
        decoder = load_decoder(model)
        save_png(_picture(decoder), stage / PICTURE_FILE)
        _write_text(stage / CONFIG_FILE, json.dumps(config(decoder.meta, info), indent=2) + "\n")
        _write_text(stage / CARD_FILE, card(decoder.meta, info, name or f"{LOCAL}{out}",
                                            license))
    return out


def push(source: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         recipe: str | None = None, half: bool = True, license: str = "mit") -> hub.HubRef:
    """Pack ``source`` into a temporary folder and upload it to ``repo_id`` (see
    ``featinv.io.hub.upload``); returns the reference to load it by."""
    ref = hub.HubRef(hub.parse_repo_id(repo_id), revision)
    if revision is not None:
        hub.parse_ref(str(ref))
    if hub.offline():
        raise FeatinvError(f"Cannot upload to {ref}: HF_HUB_OFFLINE is set; unset it to push.")
    with tempfile.TemporaryDirectory(prefix="featinv-push-") as tmp:
        folder = pack_folder(source, Path(tmp) / "decoder", recipe=recipe, half=half,
                             license=license, name=str(ref))
        feature = describe(folder / MODEL_FILE)["feature"]
        return hub.upload(folder, ref.repo_id, private=private, revision=revision,
                          message=f"Upload a featinv decoder for {feature}")


def config(meta: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """``config.json``: the facts of the decoder's metadata, for people and the Hub."""
    packed = meta.get("packed") or {}
    names = ("val_normalized_error", "val_psnr", "val_ssim", "val_images")
    metrics = {k[len("val_"):]: info[k] for k in names if info.get(k) is not None}
    return {"library_name": "featinv", "featinv_version": meta.get("featinv_version"),
            "format": meta.get("format"), "format_version": meta.get("format_version"),
            "feature": meta["feature"], "layout": meta["layout"],
            "image_size": meta["image_size"], "decoder": meta["decoder"],
            "parameters": packed.get("parameters"), "dtype": packed.get("dtype"),
            "training": meta.get("training") or {}, "recipe": packed.get("recipe"),
            "metrics": metrics}


def card(meta: dict[str, Any], info: dict[str, Any], name: str, license: str) -> str:
    """The model card (``README.md``): front matter, use, training, metrics, recipe, picture,
    licence."""
    feature = meta["feature"]
    tags = ["featinv", "feature-inversion", "image-reconstruction", _tag(feature["name"])]
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(feature["params"].items())) or "defaults"
    training = meta.get("training") or {}

    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    rows = [("representation", f"`{_md(feature['name'])}` ({_md(params)})"),
            ("plugin", _md(feature.get("plugin") or "-")),
            ("network", f"{_md(meta['decoder'].get('preset'))}, width "
                        f"{_md(meta['decoder'].get('width'))}, "
                        f"{fmt(info.get('parameters'), ',')} parameters"),
            ("image size", f"{meta['image_size']} px"),
            ("training data", _md(training.get("data") or "-")),
            ("epochs", _md(info.get("epochs") or "-")),
            ("losses", _md(training.get("loss") or "pixel")),
            ("weights", _md((meta.get("packed") or {}).get("dtype") or "float32")),
            ("featinv", _md(meta.get("featinv_version") or "-"))]
    recipe = (meta.get("packed") or {}).get("recipe")
    return "\n".join([
        "---", "library_name: featinv", f"license: {license}", "tags:",
        *(f"- {t}" for t in tags), "---", "",
        f"# featinv decoder for {_md(feature['name'])}", "",
        f"An up-convolutional network that reconstructs an image from its "
        f"`{_md(feature['name'])}` features, trained with featinv (after Dosovitskiy & Brox, "
        "*Inverting Visual Representations with Convolutional Networks*, CVPR 2016). Loading "
        "it needs featinv and the representation it inverts.", "",
        "## Use", "", "```bash", f"featinv invert -c {name} photo.jpg", "```", "",
        "```python", "import featinv", f'decoder = featinv.load_decoder("{name}")',
        f'images = featinv.invert(["photo.jpg"], checkpoint="{name}")', "```", "",
        "## Training", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
        "## Metrics", "",
        f"On {fmt(info.get('val_images'), 'd')} validation images at {meta['image_size']} px "
        "(normalized error: mean distance to the original over mean distance between photos; "
        "lower is better):", "",
        "| normalized error | PSNR (dB) | SSIM |", "|---|---|---|",
        f"| {fmt(info.get('val_normalized_error'), '.3f')} | {fmt(info.get('val_psnr'), '.2f')} "
        f"| {fmt(info.get('val_ssim'), '.3f')} |", "",
        "## Recipe", "", "```bash", _fence(recipe) if recipe else
        "# not recorded (featinv pack --recipe stores the training command)", "```", "",
        "## Reconstructions", "",
        f"![photos and their reconstructions]({PICTURE_FILE})", "",
        "Top: photos bundled with scikit-image; bottom: their reconstructions from "
        f"`{_md(feature['name'])}` features at {meta['image_size']} px.", "",
        "## Licence", "",
        f"The weights are released under the `{license}` licence. The terms of the training "
        "data may apply as well.", ""])


@torch.no_grad()
def _picture(decoder) -> torch.Tensor:
    """Photos bundled with scikit-image (top row) over their reconstructions (bottom row),
    centre squares at the decoder's training size."""
    inverter = Inverter(decoder)
    size = inverter.image_size
    originals, recons = [], []
    for example in EXAMPLES:
        x = prepare(pil_to_tensor(example_image(example)), size)
        y = inverter.reconstruct(x[None])[0].cpu()
        originals.append(_centre(x, size))
        recons.append(_centre(y, size))
    return make_grid([torch.stack(originals), torch.stack(recons)])


def _centre(image: torch.Tensor, side: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return image[:, top:top + side, left:left + side]


def _check_license(license: str) -> str:
    if not isinstance(license, str) or not _LICENSE.fullmatch(license):
        raise FeatinvError(f"--license {quoted(license)}: give a licence identifier as the "
                           "Hub spells them, e.g. mit, apache-2.0, cc-by-4.0 or other.")
    return license


def _tag(name: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-") or "representation"


def _md(value: Any) -> str:
    """A metadata value as one line of Markdown table text (no pipes, no line breaks)."""
    return printable(value).replace("|", "\\|").replace("`", "'")


def _fence(text: str) -> str:
    return printable(text).replace("```", "'''")


def _write_text(path: Path, text: str) -> Path:
    try:
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise FeatinvError(f"Cannot write {printable(path)} ({exc.strerror or exc}); check that "
                           "its folder is writable and has free space.") from None
