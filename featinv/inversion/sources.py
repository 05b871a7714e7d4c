"""What a decoder reference means, decided in one place for every caller (``invert``,
``evaluate``, ``analyze``, ``train --init-from``, ``load_decoder``).

A reference is exactly one of:

- ``hf-hub:ORG/NAME[@REVISION]``: a decoder shared on the Hugging Face Hub (cache first);
- ``local-dir:PATH``: a packed folder (``model.safetensors``) or a training run's folder;
- ``zoo:NAME[.VARIANT]``: a shipped decoder, also where a path is expected (``-c``);
- a path: a ``Path`` object, or text that looks like one (it holds ``/`` or ``\\``, starts
  with ``.`` or ``~``, or ends in ``.safetensors``);
- otherwise a shipped name, ``NAME`` or ``NAME.VARIANT`` (``featinv zoo``), never looked up on
  disk: a folder ``hog/`` in the current folder does not replace the shipped HOG decoder
  (write ``./hog`` for it).

``-c``/``--checkpoint`` (and the SOURCE of ``pack`` and ``push``) takes paths:
``checkpoint_ref`` makes its bare words paths.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import (CheckpointError, FeatinvError, UnknownFeatureError, command_options,
                      printable, quoted)
from ..io import hub
from ..io.hub import MODEL_FILE

HUB, LOCAL, ZOO = hub.PREFIX, "local-dir:", "zoo:"
SCHEMES = (HUB, LOCAL, ZOO)
# the decoder of a training run's folder: io.checkpoint.DECODER_FILE, spelled out because
# this module loads without PyTorch (and checkpoint imports it)
RUN_FILE = "decoder.safetensors"
RUN_STATE, RUN_REPLACED = "train_state.safetensors", ".featinv-replaced"  # the same, likewise
Ref = str | os.PathLike


def has_scheme(ref: Ref | None) -> bool:
    return isinstance(ref, str) and ref.startswith(SCHEMES)


def looks_like_path(text: str) -> bool:
    """Text that can only be meant as a path (see the module docstring)."""
    return ("/" in text or "\\" in text or text.startswith((".", "~"))
            or text.lower().endswith(".safetensors"))


def checkpoint_ref(value: Ref) -> Ref:
    """A ``-c``/``--checkpoint`` value: a reference with a scheme as it is, anything else a
    path (``-c hog`` is the file or folder ``hog``)."""
    return value if has_scheme(value) else Path(value)


def shipped_ref(feature: str) -> str:
    """The reference of the decoder shipped for ``feature`` (``-f NAME`` without ``-c``)."""
    return ZOO + feature


def describe_ref(ref: Ref) -> str:
    """The reference as a user would write it again (for messages and reports)."""
    return printable(os.fspath(ref))


def split_variant(name: str, decoder: str | None = None) -> tuple[str, str | None]:
    """``("hog", "realistic")`` for the shipped name ``"hog.realistic"`` (when ``decoder`` is
    None); ``(name, decoder)`` otherwise."""
    if decoder is None:
        from ..representation.plugins import shipped_decoders

        for entry in shipped_decoders().entries.values():
            if entry.key == name.lower() and entry.key != entry.feature:
                return entry.feature, entry.variant
        dotted = variant_spelling(name)
        if dotted is not None:
            return dotted
    elif isinstance(name, str) and not has_scheme(decoder) and variant_spelling(name):
        raise FeatinvError(f"{printable(name)} names a decoder variant already; drop "
                           f"--decoder {printable(decoder)}, or give the representation's "
                           "name alone.")
    return name, decoder


def variant_spelling(name: str) -> tuple[str, str] | None:
    """``("hog", "default")`` for ``"hog.default"`` (or ``("hog", "nosuch")`` for
    ``"hog.nosuch"``): ``NAME.VARIANT`` where NAME is a representation and the whole name is
    not, so that a variant that is not shipped is reported as such (with the variants that are),
    not as an unknown representation. None for anything else (names hold dots themselves:
    ``squeezenet.fire5`` is a representation)."""
    from ..representation.registry import get_spec

    feature, dot, variant = str(name).rpartition(".")
    if not dot or not feature or not variant.strip():
        return None
    try:
        get_spec(name)
        return None  # a representation's own name
    except UnknownFeatureError:
        pass
    try:
        return get_spec(feature).name, variant.strip().lower()
    except UnknownFeatureError:
        return None


def feature_of(name: Ref, decoder: str) -> str:
    """The representation asked for when ``decoder`` (``--decoder``) is a reference with a
    scheme: ``name`` must then be a representation's name (``-f``), not a file."""
    text = os.fspath(name)
    if isinstance(name, os.PathLike) or looks_like_path(text) or text.startswith((HUB, LOCAL)):
        raise FeatinvError(f"--decoder {printable(decoder)} names a decoder itself; pass it or "
                           f"--checkpoint {printable(text)}, not both.")
    return text[len(ZOO):] if text.startswith(ZOO) else text


def decoder_file(ref: Ref, decoder: str | None = None) -> Path:
    """The ``.safetensors`` file that ``ref`` stands for. ``decoder`` picks one of the decoders
    shipped for a name (``"realistic"``); it is refused with anything else. Files are not
    opened here; loading checks them."""
    if decoder is not None and (not isinstance(decoder, str) or not decoder.strip()):
        raise FeatinvError(f"--decoder {quoted(decoder)}: give the name of a decoder shipped "
                           "for the representation ('featinv zoo' lists them), e.g. realistic.")
    if isinstance(ref, os.PathLike):
        return _path(Path(ref), decoder)
    text = str(ref)
    if not text.strip() or text in SCHEMES:
        raise FeatinvError(f"{quoted(text)} names no decoder; give a shipped decoder's name "
                           "('featinv zoo'), a path, local-dir:DIR or hf-hub:ORG/NAME.")
    if text.startswith(HUB):
        _no_variant(text, decoder)
        return _in_folder(hub.download(hub.parse_ref(text)), text)
    if text.startswith(LOCAL):
        _no_variant(text, decoder)
        folder = Path(text[len(LOCAL):]).expanduser()
        if not folder.is_dir():
            raise CheckpointError(f"{printable(text)}: '{printable(folder)}' is not a folder; "
                                  "local-dir: takes a folder made by 'featinv pack -o DIR' (or a "
                                  "training run's folder). Pass a file as a path.")
        return _in_folder(folder, text)
    if text.startswith(ZOO):
        return _shipped(text[len(ZOO):], decoder, hint=False)
    if looks_like_path(text):
        return _path(Path(text).expanduser(), decoder)
    return _shipped(text, decoder)


def source_file(source: Ref) -> Path:
    """The decoder file of ``pack``/``push``'s SOURCE, which is read as ``-c`` reads its value:
    a path (a file, a packed folder or a training run's folder) or a reference with a scheme."""
    return decoder_file(checkpoint_ref(source))


def _no_variant(text: str, decoder: str | None) -> None:
    if decoder is not None:
        raise FeatinvError(f"decoder={quoted(decoder)} (--decoder) picks one of the "
                           f"decoders shipped for a representation; {printable(text)} is "
                           "another decoder. Pass one or the other.")


def _in_folder(folder: Path, label: str) -> Path:
    """The decoder in a packed folder (``model.safetensors``) or in a training run's
    (``decoder.safetensors``); a folder holding both is refused, as neither is clearly meant."""
    def there(name: str) -> bool:  # a FIFO or device too: the reader then says what it is
        return (folder / name).exists() or (folder / name).is_symlink()

    if there(MODEL_FILE) and there(RUN_FILE):
        raise CheckpointError(f"'{printable(label)}' holds both {MODEL_FILE} (a packed decoder) "
                              f"and {RUN_FILE} (a training run); give the file you mean.")
    for name in (MODEL_FILE, RUN_FILE):
        if there(name):
            return folder / name
    if (folder / RUN_REPLACED / RUN_FILE).is_file():  # a killed --overwrite run's backup
        raise CheckpointError(f"'{printable(label)}' holds no {RUN_FILE}, but a previous run "
                              f"sits in {printable(folder / RUN_REPLACED)} (a run replacing it "
                              "was killed); the next 'featinv train' on this folder puts it "
                              f"back, or move its files back into '{printable(label)}' by hand.")
    if there(RUN_STATE):  # a run killed between writing its first checkpoint's two files
        raise CheckpointError(f"'{printable(label)}' holds {RUN_STATE} but no {RUN_FILE} (a run "
                              "killed while it saved); 'featinv train --resume' continues it and "
                              f"writes {RUN_FILE} at its next checkpoint.")
    raise CheckpointError(f"'{printable(label)}' is a folder, not a checkpoint: it holds no "
                          f"{MODEL_FILE} (a packed decoder) or {RUN_FILE} (a training run).")


def _path(path: Path, decoder: str | None) -> Path:
    if decoder is not None:
        raise FeatinvError(f"decoder={quoted(decoder)} (--decoder) picks one of the decoders "
                           f"shipped for a representation; {printable(path)} is a file.")
    if path.is_dir():
        return _in_folder(path, str(path))
    if not path.exists() and not looks_like_path(str(path)) and _is_shipped(str(path)):
        options = command_options()  # -c (invert, evaluate, audit), SOURCE (pack, push)
        who = "a checkpoint" if options is None else "-c" if "-c" in options else "SOURCE"
        also = f" (or -f {printable(path)})" if options is None or "-f" in options else ""
        raise CheckpointError(f"Checkpoint '{printable(path)}' not found: {who} takes a path. "
                              f"For the decoder shipped as '{printable(path)}' write "
                              f"{ZOO}{printable(path)}{also}.")
    return path


def _is_shipped(name: str) -> bool:
    from ..representation.plugins import shipped_decoders

    entries = shipped_decoders().entries
    dotted = variant_spelling(name)  # hog.default, as the other spellings of a shipped decoder
    return name.lower() in {e.key for e in entries.values()} or \
        (dotted is not None and dotted in entries)


def _shipped(name: str, decoder: str | None, hint: bool = True) -> Path:
    """The file of a shipped decoder: ``NAME`` (``decoder`` picks a variant) or
    ``NAME.VARIANT``."""
    from ..representation.plugins import shipped_decoder, shipped_decoders
    from ..representation.registry import get_spec

    if decoder is None:  # NAME.VARIANT, as the built-in zoo names its files
        by_key = {e.key: e for e in shipped_decoders().entries.values()}
        if name.lower() in by_key:
            return by_key[name.lower()].file
        dotted = variant_spelling(name)  # hog.default; hog.nosuch lists hog's variants
        if dotted is not None:
            return shipped_decoder(*dotted).file
    try:
        feature = get_spec(name).name  # unknown names fail here, with a suggestion
    except UnknownFeatureError as exc:
        if hint and name and os.path.lexists(name):
            options = command_options()
            also = " (or pass it with -c)" if options is not None and "-c" in options else ""
            raise UnknownFeatureError(f"{exc} A name means a shipped decoder; for the file or "
                                      f"folder '{printable(name)}' here, write ./{printable(name)}"
                                      f"{also}.") from None
        raise
    return shipped_decoder(feature, decoder).file
