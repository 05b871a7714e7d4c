"""The built-in zoo: the decoders in ``featinv/zoo``, shipped through the
``featinv_shipped_decoders`` hook like any plugin's (plugin name ``featinv.zoo``).

File names: ``NAME.safetensors`` is the default decoder of representation ``NAME``;
``NAME.VARIANT.safetensors`` (e.g. ``hog.realistic.safetensors``) is its decoder ``VARIANT``.
Names may hold dots themselves (``alexnet.conv1``), so the representation is read from the
file's metadata (its header only); a damaged file is listed under its file name, and
``featinv zoo`` reports the damage.
"""
from __future__ import annotations

from pathlib import Path

from ..representation.hookspecs import DEFAULT_DECODER, ShippedDecoder, hookimpl

ZOO_DIR = Path(__file__).parent.parent / "zoo"


def zoo_entry(path: Path) -> ShippedDecoder:
    """The ``ShippedDecoder`` a file of the zoo stands for, by the convention above."""
    from ..errors import FeatinvError
    from ..io.checkpoint import read_meta

    stem = path.name[: -len(".safetensors")]
    try:
        meta = read_meta(path)
        feature = str(meta["feature"]["name"]).lower()
    except (FeatinvError, KeyError, TypeError):
        meta, feature = {}, stem  # damaged: listed, and refused when described or loaded
    if stem.startswith(feature + "."):
        try:
            return ShippedDecoder(feature, path, stem[len(feature) + 1:], _losses(meta))
        except ValueError:  # not a decoder name: listed under the file name
            pass
    return ShippedDecoder(stem, path, DEFAULT_DECODER)


@hookimpl
def featinv_shipped_decoders() -> list[ShippedDecoder]:
    return [zoo_entry(path) for path in sorted(ZOO_DIR.glob("*.safetensors"))]


def _losses(meta: dict) -> str:
    """"losses pixel,feature=0.1 (comparator NAME)" for a decoder trained with more than the
    pixel loss; "" otherwise."""
    training = meta.get("training")
    if not isinstance(training, dict) or training.get("loss", "pixel") in ("pixel", None):
        return ""
    comparator = training.get("comparator")
    return f"losses {training['loss']}" + (f" (comparator {comparator})" if comparator else "")
