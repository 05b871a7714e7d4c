"""``featinv audit``: what one or more representations leak, as JSON and a self-contained HTML
report (no torch at import)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .common import echo_error, echo_json, feature_params, parse_params
from .options import POSITIVE, SEED, SIDE, decoder_option, device_option, refuse_idle
from ..errors import FeatinvError, printable
from ..io import json_text
from ..limits import MAX_BOOTSTRAP

REPORT, RESULT = "audit.html", "audit.json"


def _names(features: tuple[str, ...]) -> list[str]:
    """``-f hog,lbp -f sift`` -> ``["hog", "lbp", "sift"]``."""
    return [name.strip() for item in features for name in item.split(",") if name.strip()]


def _normal(spec, params: dict) -> dict:
    """``params`` over ``spec``'s defaults, as JSON values (a stored decoder's are JSON)."""
    return json.loads(json.dumps(spec.resolve_params(params), default=str))


def _same_path(a, b) -> bool:
    return a == b or (a is not None and b is not None
                      and Path(str(a)).resolve() == Path(str(b)).resolve())


def _differences(path: Path, spec, want: dict, training: bool) -> list[str]:
    """What the decoder in ``path`` was trained for that differs from ``want`` (its ``params``;
    with ``training``, also whether that run was finished and, when ``want["data"]`` names the
    training photos, the photos, side, epochs, photos used and preset of the run this audit
    would make), as ``what there, not what asked``."""
    from ..io.checkpoint import read_meta

    meta = read_meta(path)
    feature, run = meta.get("feature") or {}, meta.get("training") or {}
    out = []
    try:
        have = _normal(spec, dict(feature.get("params") or {}))
    except FeatinvError:
        have = dict(feature.get("params") or {})
    for key in sorted(set(have) | set(want["params"])):
        if have.get(key) != want["params"].get(key):
            out.append(f"{key}={have.get(key)!r}, not {want['params'].get(key)!r}")
    if str(feature.get("name", spec.name)) != spec.name:
        out.insert(0, f"feature '{feature.get('name')}', not '{spec.name}'")
    if not training:
        return out
    progress = meta.get("progress") or {}
    step, total = progress.get("step"), progress.get("total_steps")
    if isinstance(step, int) and isinstance(total, int) and step < total:
        out.append(f"its training stopped at step {step} of {total}")
    if want["data"] is None:  # no --train-data: the training options ask for nothing
        return out
    if not _same_path(run.get("data"), want["data"]):
        out.append(f"--train-data {run.get('data')}, not {want['data']}")
    for key, option, asked in (("image_size", "--image-size", want["image_size"]),
                               ("epochs", "--epochs", want["epochs"]),
                               ("limit", "--train-limit", want["limit"]),
                               ("preset", "preset", want["preset"])):
        there = meta.get("image_size") if key == "image_size" else run.get(key)
        if there != asked:
            out.append(f"{option} {there}, not {asked}")
    return out


def _train_missing(names: list[str], checkpoints: list[str], train_data: str | None,
                   folder: Path, epochs: int, limit: int, image_size: int | None, device: str,
                   decoder_name: str | None, params: dict, overwrite: bool = False) -> list[str]:
    """Checkpoints for ``names``: given ones, else the shipped decoder, else one trained on
    ``train_data`` into ``folder/decoders/NAME`` (reused when it is there already).

    A decoder is used only for what this audit asks: a shipped one or a ``-c`` file only when
    the ``-p`` given match its parameters; one trained earlier only when it was trained, to the
    end, for these parameters and (with ``--train-data``) as this audit would train it (photos,
    side, epochs, photos used, preset).
    Else a new one is trained in its place with ``--overwrite`` (and ``--train-data``), or the
    audit is refused saying what differs: reporting an old decoder's numbers for a new request
    would be a wrong result."""
    from ..inversion.sources import split_variant
    from ..representation.registry import get_spec

    if checkpoints or not names:
        if params:  # -c FILE -p ...: the file must be a decoder for those parameters
            for i, path in enumerate(checkpoints):
                meta_feature = _checkpoint_feature(path, names[i] if i < len(names) else None)
                if meta_feature is None:
                    continue
                spec = get_spec(meta_feature)
                differ = _differences(Path(path), spec, {"params": _normal(spec, params)},
                                      training=False)
                if differ:
                    raise FeatinvError(f"{printable(path)}: a decoder trained with "
                                       f"{'; '.join(differ)} (-p); pass a decoder trained with "
                                       "those parameters, or leave -p out.")
        return checkpoints
    from ..inversion.load import shipped_decoder_path
    from ..io.checkpoint import DECODER_FILE
    from ..training.config import DEFAULT_IMAGE_SIZE, DEFAULT_TRAIN_PRESET
    from ..training.loop import TrainConfig, train

    from ..representation.hookspecs import DEFAULT_VARIANT
    from ..representation.plugins import shipped_decoder, shipped_decoders

    out = []
    for name in names:
        feature, variant = split_variant(name, decoder_name)  # hog.realistic, hog.default
        spec = get_spec(feature)  # an unknown name: the error with a suggestion
        want = {"params": _normal(spec, params), "data": train_data, "epochs": epochs,
                "limit": limit, "preset": DEFAULT_TRAIN_PRESET,
                "image_size": image_size or spec.image_size or DEFAULT_IMAGE_SIZE}
        shipped = shipped_decoder_path(feature, variant)
        if shipped is None and variant not in (None, DEFAULT_VARIANT) and \
                any(f == spec.name for f, _ in shipped_decoders().entries):
            shipped_decoder(spec.name, variant)  # no such variant: it lists them
        if shipped is not None and params:
            differ = _differences(Path(shipped), spec, want, training=False)
            if differ and not train_data:
                raise FeatinvError(f"The decoder shipped for '{printable(name)}' was trained with "
                                   f"{'; '.join(differ)} (-p): pass --train-data DIR to train "
                                   "one with these parameters, or -c FILE (a decoder trained "
                                   "with them).")
            if differ:
                click.echo(f"the decoder shipped for '{printable(name)}' was trained with "
                           f"{'; '.join(differ)} (-p)", err=True)
                shipped = None
        trained = folder / "decoders" / name / DECODER_FILE
        replace = False
        if shipped is not None:
            out.append(str(shipped))
            continue
        if trained.is_file():
            differ = _differences(trained, spec, want, training=True)
            if not differ:
                click.echo(f"using the decoder trained earlier: {printable(trained)}", err=True)
                out.append(str(trained))
                continue
            if not (overwrite and train_data):
                todo = ("pass --overwrite to train a new one in its place" if train_data else
                        "pass --train-data DIR and --overwrite to train a new one in its place")
                raise FeatinvError(f"{printable(trained)}: the decoder trained there earlier is "
                                   f"not the one this audit asks for ({'; '.join(differ)}); "
                                   f"{todo}, or choose another -o.")
            click.echo(f"the decoder trained earlier in {printable(trained.parent)} is not the "
                       f"one asked for ({'; '.join(differ)}): training a new one in its place",
                       err=True)
            replace = True
        if not train_data:
            raise FeatinvError(f"No shipped decoder for '{name}': pass -c FILE (a decoder "
                               "trained for it) or --train-data DIR to train one first.")
        if not replace:
            click.echo(f"no shipped decoder for '{printable(name)}'"
                       f"{' with these parameters' if params else ''}: training one on "
                       f"{printable(train_data)} first", err=True)
        train(TrainConfig(feature=name, data=train_data, out=str(trained.parent),
                          epochs=epochs, limit=limit, val=None, device=device,
                          image_size=image_size, workers=0, params=params,
                          overwrite=overwrite or replace),
              log=lambda m: click.echo(printable(m), err=True))
        out.append(str(trained))
    return out


def _checkpoint_feature(path: str, name: str | None) -> str | None:
    """The representation a ``-c`` decoder file was trained for (None for a reference that is
    no file here: its own loading checks it)."""
    from ..inversion.sources import split_variant
    from ..io.checkpoint import read_meta

    if not Path(path).is_file():
        return None
    feature = (read_meta(path).get("feature") or {}).get("name")
    if isinstance(feature, str):
        return feature
    return split_variant(name)[0] if name else None


@click.command("audit")
@click.option("--feature", "-f", "features", multiple=True,
              help="Representation(s) to audit, comma-separated or repeated: their shipped "
              "decoders, or those given with -c (one per name, in order).")
@click.option("--checkpoint", "-c", "checkpoints", multiple=True, type=click.Path(),
              help="Decoder file(s) to audit (repeatable).")
@decoder_option
@click.option("--data", required=True, type=click.Path(), help="Folder of photos to reconstruct "
              "and re-identify (at least 2).")
@click.option("--train-data", type=click.Path(), help="Folder of photos to train a decoder on "
              "for each -f name without a shipped one (saved in OUT/decoders/NAME), with the "
              "representation parameters of -p/--weights.")
@click.option("--epochs", type=POSITIVE, default=3, show_default=True,
              help="With --train-data: training passes.")
@click.option("--train-limit", type=POSITIVE, default=3000, show_default=True,
              help="With --train-data: training photos used.")
@feature_params
@click.option("--image-size", type=SIDE, help="Side the photos are resized to (default: each "
              "decoder's training size); also the training size with --train-data.")
@click.option("--limit", type=POSITIVE, help="Use only the first N photos (N is the gallery "
              "each reconstruction is ranked in).")
@click.option("--batch-size", type=POSITIVE, default=32, show_default=True)
@click.option("--reid-feature", default="auto", show_default=True, metavar="NAME|auto|none",
              help="Independent space for re-identification: auto (SqueezeNet 1.0 fire9), any "
              "representation name, or none.")
@click.option("--reid-param", "reid_params", multiple=True, metavar="NAME=VALUE",
              help="Parameter of --reid-feature (repeatable), e.g. weights=PATH.")
@click.option("--perceptual-weights", default="auto", show_default=True,
              metavar="PATH|auto|none", help="SqueezeNet 1.0 weights for the perceptual "
              "distance, class agreement and the auto re-identification space; auto: as for "
              "evaluate (the copy shipped with featinv), left out when none is found.")
@click.option("--bootstrap", type=click.IntRange(1, MAX_BOOTSTRAP), default=1000,
              show_default=True,
              help="Bootstrap samples of the top-k intervals.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--show", type=click.IntRange(0, 200), default=12, show_default=True,
              help="Photo/reconstruction pairs per representation in the report.")
@click.option("--out", "-o", default="audit", show_default=True, type=click.Path(),
              help=f"Output folder: {RESULT} and {REPORT}.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier audit's files in --out, and "
              "with --train-data a decoder trained there earlier for another request "
              "(parameters, side, epochs, photos).")
@click.option("--json", "as_json", is_flag=True, help="Also print the JSON report.")
@click.option("--open", "open_report", is_flag=True, help="Open the HTML report in a browser.")
@device_option
def audit_cmd(features, checkpoints, decoder_name, data, train_data, epochs, train_limit, params,
              image_size, limit, batch_size, reid_feature, reid_params, perceptual_weights,
              bootstrap, seed, show, out, overwrite, as_json, open_report, device) -> None:
    """Reconstruct photos from each representation's features and report what leaks: error,
    perceptual distance and whether the originals can be re-identified."""
    from ..io.outputs import check_targets, with_data_images

    if not train_data:
        refuse_idle({"epochs": "--epochs", "train_limit": "--train-limit"},
                    "training missing decoders with --train-data PHOTOS")
    names, checkpoints = _names(features), list(checkpoints)
    if not names and not checkpoints:
        raise FeatinvError("Pass -f NAME[,NAME...] (shipped decoders) or -c FILE.")
    folder = Path(out)
    check_targets([folder / RESULT, folder / REPORT], [*checkpoints, *with_data_images(data)],
                  overwrite)
    from ..analysis.audit import audit, independent_space, make_probe
    from ..analysis.reidentify import check_gallery
    from ..datasets.folders import scan_folder
    from ..analysis.plots import reidentification_chart
    from ..analysis.report_html import write_report
    from ..inversion.device import pick_device
    from ..inversion.methods import make_methods
    from ..io.files import write_output, written_together

    files = scan_folder(data, None)  # fewer than 2 photos: refused before any work
    check_gallery(len(files[:limit] if limit else files))
    dev = pick_device(device)
    checkpoints = _train_missing(names, checkpoints, train_data, folder, epochs, train_limit,
                                 image_size, str(dev), decoder_name, params, overwrite)
    methods = make_methods("decoder", names, checkpoints, dev,
                           decoder_name=None if checkpoints else decoder_name)
    probe = make_probe(perceptual_weights, dev)
    space = independent_space(reid_feature, parse_params(reid_params, "--reid-param"), probe, dev, batch_size)
    report = audit(methods, data, limit, image_size, batch_size, probe, space, bootstrap, seed,
                   show, on_error=lambda m: echo_error(m),
                   log=lambda m: click.echo(printable(m), err=True))
    result = report.result
    text = json_text.dumps(result, indent=2) + "\n"  # strict JSON: NaN -> null
    chart = reidentification_chart(result)
    # both files are moved in together: a signal between the two writes paired the new JSON
    # with the old report. With --json, stdout is the JSON alone (the paths were printed
    # before it: 'audit --json | jq' failed); the paths go to stderr
    with written_together(folder) as stage:
        write_output(stage / RESULT, lambda t: Path(t).write_text(text))
        write_report(stage / REPORT, result, report.pictures, chart)
    html_path = folder / REPORT
    for written in (folder / RESULT, html_path):
        click.echo(printable(written), err=as_json)
    if as_json:
        echo_json(result)
    else:
        _echo_table(result)
    if open_report:
        import webbrowser

        webbrowser.open(html_path.resolve().as_uri())


def _echo_table(result: dict) -> None:
    n = result["n_images"]
    click.echo(f"{n} photos; independent space: {result['independent_space'] or 'none'}; "
               f"chance: top-1 {1 / n:.1%}, top-5 {min(5 / n, 1):.1%}")
    header = ("leak", "representation", "norm. error", "perceptual", "top-1 ind.",
              "top-5 ind.", "top-1 own", "top-5 own", "same class")
    rows = [header]
    for row in result["representations"]:
        ind = row["independent"] or {}
        pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
        rows.append((str(row["leak_rank"]), printable(row["label"]),
                     f"{row['normalized_error']:.3f}",
                     "-" if row["perceptual_distance"] is None
                     else f"{row['perceptual_distance']:.3f}",
                     pct(ind.get("top1")), pct(ind.get("top5")), pct(row["own"]["top1"]),
                     pct(row["own"]["top5"]), pct(row["class_agreement"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
