"""``featinv audit``: what one or more representations leak, as JSON and a self-contained HTML
report (no torch at import)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .common import echo_error, echo_json, feature_params, parse_params
from .options import POSITIVE, SEED, SIDE, decoder_option, device_option
from ..errors import FeatinvError, printable
from ..limits import MAX_BOOTSTRAP

REPORT, RESULT = "audit.html", "audit.json"


def _names(features: tuple[str, ...]) -> list[str]:
    """``-f hog,lbp -f sift`` -> ``["hog", "lbp", "sift"]``."""
    return [name.strip() for item in features for name in item.split(",") if name.strip()]


def _train_missing(names: list[str], checkpoints: list[str], train_data: str | None,
                   folder: Path, epochs: int, limit: int, image_size: int | None, device: str,
                   decoder_name: str | None, params: dict) -> list[str]:
    """Checkpoints for ``names``: given ones, else the shipped decoder, else one trained on
    ``train_data`` into ``folder/decoders/NAME`` (reused when it is there already)."""
    if checkpoints or not names:
        return checkpoints
    from ..inversion.load import shipped_decoder_path
    from ..io.checkpoint import DECODER_FILE
    from ..training.loop import TrainConfig, train

    from ..inversion.sources import split_variant
    from ..representation.hookspecs import DEFAULT_VARIANT
    from ..representation.plugins import shipped_decoder, shipped_decoders
    from ..representation.registry import get_spec

    out = []
    for name in names:
        feature, variant = split_variant(name, decoder_name)  # hog.realistic, hog.default
        get_spec(feature)  # an unknown name: the error with a suggestion
        shipped = shipped_decoder_path(feature, variant)
        if shipped is None and variant not in (None, DEFAULT_VARIANT) and \
                any(f == get_spec(feature).name for f, _ in shipped_decoders().entries):
            shipped_decoder(get_spec(feature).name, variant)  # no such variant: it lists them
        trained = folder / "decoders" / name / DECODER_FILE
        if shipped is not None:
            out.append(str(shipped))
        elif trained.is_file():
            click.echo(f"using the decoder trained earlier: {printable(trained)}", err=True)
            out.append(str(trained))
        elif train_data:
            click.echo(f"no shipped decoder for '{printable(name)}': training one on "
                       f"{printable(train_data)} first", err=True)
            train(TrainConfig(feature=name, data=train_data, out=str(trained.parent),
                              epochs=epochs, limit=limit, val=None, device=device,
                              image_size=image_size, workers=0, params=params),
                  log=lambda m: click.echo(printable(m), err=True))
            out.append(str(trained))
        else:
            raise FeatinvError(f"No shipped decoder for '{name}': pass -c FILE (a decoder "
                               "trained for it) or --train-data DIR to train one first.")
    return out


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
@click.option("--overwrite", is_flag=True, help="Replace an earlier audit's files in --out.")
@click.option("--json", "as_json", is_flag=True, help="Also print the JSON report.")
@click.option("--open", "open_report", is_flag=True, help="Open the HTML report in a browser.")
@device_option
def audit_cmd(features, checkpoints, decoder_name, data, train_data, epochs, train_limit, params,
              image_size, limit, batch_size, reid_feature, reid_params, perceptual_weights,
              bootstrap, seed, show, out, overwrite, as_json, open_report, device) -> None:
    """Reconstruct photos from each representation's features and report what leaks: error,
    perceptual distance and whether the originals can be re-identified."""
    from ..io.outputs import check_targets, with_data_images

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
                                 image_size, str(dev), decoder_name, params)
    methods = make_methods("decoder", names, checkpoints, dev,
                           decoder_name=None if checkpoints else decoder_name)
    probe = make_probe(perceptual_weights, dev)
    space = independent_space(reid_feature, parse_params(reid_params, "--reid-param"), probe, dev, batch_size)
    report = audit(methods, data, limit, image_size, batch_size, probe, space, bootstrap, seed,
                   show, on_error=lambda m: echo_error(m),
                   log=lambda m: click.echo(printable(m), err=True))
    result = report.result
    text = json.dumps(result, indent=2) + "\n"
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
