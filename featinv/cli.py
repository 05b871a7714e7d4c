"""The ``featinv`` command line: a thin layer over the Python API.

Errors a user can fix are one line on stderr and exit code 1 (2 for usage errors); ``--debug``
shows the traceback instead.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from .cli_analyze import analyze
from .cli_compare import compare_cmd, echo_metrics, realism_options
from .cli_train import train_cmd
from .cli_common import echo_json as _echo_json, feature_params, parse_params as _parse_params  # noqa: F401
from .cli_options import POSITIVE, SIDE, SIDE_OR_NATIVE, device_option
from .errors import FeatinvError, Interrupted, printable
from .limits import DEFAULT_MAX_SIDE


def _echo_error(message, path=None) -> None:
    """``Error: MESSAGE`` on stderr, on one line; prefixed by ``path`` unless it names it."""
    text = printable(message)
    if path is not None and printable(path) not in text:
        text = f"{printable(path)}: {text}"
    click.echo(f"Error: {text}", err=True)


overwrite_option = click.option("--overwrite", is_flag=True, help="Replace output files that "
                                "exist already (inputs are never replaced).")


def method_options(command):
    """``--method decoder|optimize`` and the optimisation baseline's settings, handed on as
    ``method`` and ``optimize`` (an ``OptimizeConfig``)."""
    from .optimize import OptimizeConfig

    defaults = OptimizeConfig()

    @functools.wraps(command)
    def wrapper(*args, steps, step_size, lambda_tv, lambda_alpha, **kwargs):
        cfg = OptimizeConfig(steps=steps, lr=step_size, lambda_tv=lambda_tv,
                             lambda_alpha=lambda_alpha)
        return command(*args, optimize=cfg, **kwargs)

    options = [
        click.option("--method", type=click.Choice(["decoder", "optimize"]), default="decoder",
                     show_default=True, help="decoder: a trained decoder, one forward pass; "
                     "optimize: the optimisation baseline (Mahendran & Vedaldi), no training, "
                     "differentiable representations only."),
        click.option("--steps", type=POSITIVE, default=defaults.steps, show_default=True,
                     help="optimize: gradient steps."),
        click.option("--step-size", type=float, default=defaults.lr, show_default=True,
                     help="optimize: step size (per pixel)."),
        click.option("--lambda-tv", type=float, default=defaults.lambda_tv, show_default=True,
                     help="optimize: weight of the total-variation prior."),
        click.option("--lambda-alpha", type=float, default=defaults.lambda_alpha,
                     show_default=True, help="optimize: weight of the alpha-norm prior."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
                     show_default=True, help="decoder: run it in mixed precision (bf16: 2-3x "
                     "faster on CPUs with AVX-512 BF16; fp16: CUDA only)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _optimize_progress(cfg, name: str):
    """The optimisation baseline's progress: a bar on a terminal, a line now and then in logs."""
    from .progress import StepProgress

    return StepProgress(cfg.steps, f"optimising {name}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="featinv")
def cli(debug: bool) -> None:
    """Reconstruct images from feature representations with trained decoders."""


@cli.command("list-features")
@click.argument("pattern", default="*")
@click.option("--image-size", type=SIDE, default=128, show_default=True,
              help="Show each layout for a square image of this size.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_features_cmd(pattern: str, image_size: int, as_json: bool) -> None:
    """List the registered representations (optionally matching a glob PATTERN)."""
    from .listing import rows as listing_rows

    rows, problems = listing_rows(pattern, image_size)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("No representations registered." if pattern == "*" else
                   f"No representation matches '{pattern}'.")
        return
    header = ("name", "plugin", "input", f"layout@{image_size}", "diff.", "description")
    table = [header] + [(r["name"], r["plugin"], r["input"],
                         _layout_text(r["layout"]) if r["layout"] else "too small",
                         "yes" if r["differentiable"] else "no", r["description"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    for p in problems:
        click.echo(printable(f"Warning: plugin '{p['name']}' {p['error']}"), err=True)


def _layout_text(layout: dict) -> str:
    if layout["kind"] == "vector":
        return str(layout["channels"])
    return f"{layout['channels']}x{layout['height']}x{layout['width']}"


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins, their representations, and any that failed."""
    from .plugins import plugin_infos

    infos = plugin_infos()
    if as_json:
        _echo_json([p.to_json() for p in infos])
        return
    for p in infos:
        status = (f"ERROR: {p.error}" if p.error else ", ".join(p.features)
                  or f"(no representations; hooks: {', '.join(p.hooks) or 'none'})")
        click.echo(printable(f"{p.name}  [{p.source}]  {status}"))


@cli.command("describe")
@click.argument("name")
@click.option("--image-size", type=SIDE, default=128, show_default=True)
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="Show the layout for this parameter value (repeatable), e.g. -p cell_size=4.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def describe_cmd(name: str, image_size: int, params: tuple[str, ...], as_json: bool) -> None:
    """Parameters, layout formula, input, differentiability and backends of representation NAME."""
    from .listing import describe

    info = describe(name, image_size, _parse_params(params))
    if as_json:
        _echo_json(info)
        return
    click.echo(f"{info['name']}: {info['description']}")
    click.echo(f"  plugin:         {info['plugin']}")
    click.echo(f"  input:          {info['input']} image")
    click.echo(f"  differentiable: {'yes' if info['differentiable'] else 'no'}")
    click.echo(f"  layout:         {info['layout_formula']}  (H x W image)")
    click.echo(f"  {'at ' + str(image_size) + ' px:':<16}{_layout_text(info['layout'])}")
    click.echo(f"  smallest image: {info['min_size']} px")
    click.echo(f"  decoder family: {info['decoder']}")
    click.echo("  parameters:" + ("" if info["params"] else " none"))
    for p in info["params"]:
        choices = f" (one of {p['choices']})" if p["choices"] else ""
        value = info["values"][p["name"]]
        default = f" (default {p['default']!r})" if value != p["default"] else ""
        click.echo(f"    {p['name']} = {value!r}{default}  {p['help']}{choices}")
    if info["backends"]:
        click.echo("  backends (-p backend=NAME):")
        for backend, status in info["backends"].items():
            click.echo(f"    {backend}: {status}")


@cli.command("extract")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--feature", "-f", required=True, help="Representation to compute.")
@feature_params
@click.option("--out", "-o", required=True, type=click.Path(), help="Output .npz file.")
@click.option("--size", type=SIDE, help="Resize the shorter side to this many px first.")
@click.option("--crop", is_flag=True, help="With --size: centre square of that side.")
@overwrite_option
@device_option
def extract_cmd(images, feature, params, out, size, crop, overwrite, device) -> int:
    """Compute the features of IMAGES (files or folders) and save them with their layout."""
    from .extract import extract_files, save_features
    from .inversion import pick_device
    from .outputs import check_targets, plan_inputs
    from .registry import get_feature

    if crop and size is None:
        raise click.UsageError("--crop needs --size.")
    paths = [item.path for item in plan_inputs(images)]
    check_targets([out], paths, overwrite)
    extractor = get_feature(feature, **params)
    errors = []

    def on_error(message: str) -> None:
        errors.append(message)
        _echo_error(message)

    result = extract_files(extractor, paths, size, crop, pick_device(device), on_error)
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


@cli.command("invert")
@click.argument("images", nargs=-1, required=True)
@click.option("--feature", "-f", multiple=True, help="Representation (its shipped decoder is "
              "used without --checkpoint). Repeat it or separate names by commas to compare "
              "several side by side.")
@click.option("--checkpoint", "-c", multiple=True, type=click.Path(),
              help="Decoder checkpoint (.safetensors); may be repeated.")
@click.option("--out", "-o", default=".", show_default=True, type=click.Path(),
              help="Output folder (or a .png file for a single image).")
@click.option("--size", type=SIDE, help="Shorter image side to work at (default: the image's "
              "own size for grid layouts such as HOG, SIFT, LBP; the decoder's training size for "
              "vector layouts and --method optimize). --size 128: the shipped decoders' training "
              "scale.")
@click.option("--max-side", type=SIDE, default=DEFAULT_MAX_SIDE, show_default=True,
              help="Shrink images whose longer side (after --size) exceeds this many px.")
@click.option("--side-by-side", is_flag=True, help="Write input | reconstruction(s) in one PNG.")
@overwrite_option
@method_options
@device_option
def invert_cmd(images, feature, checkpoint, out, size, max_side, side_by_side, overwrite, method,
               optimize, precision, device) -> int:
    """Reconstruct each image from its features; writes PNGs.

    IMAGES are files, folders, or skimage:NAME for a photo bundled with scikit-image
    (skimage:astronaut, skimage:coffee, ...).
    """
    import torch

    from .errors import ImageError
    from .images import check_side, make_grid, save_png
    from .inversion import pick_device, prepare
    from .methods import decoder_method, optimize_method
    from .outputs import check_targets, plan_inputs, unique_labels

    features = [name for item in feature for name in item.split(",") if name]
    dev = pick_device(device)
    if method == "optimize":
        if checkpoint or not features:
            raise FeatinvError("--method optimize takes --feature NAME and no --checkpoint "
                               "(it inverts by gradient descent, with no decoder).")
        if precision != "fp32":
            raise FeatinvError("--precision applies to decoders; the optimisation baseline runs "
                               "in fp32.")
        inverters = [optimize_method(name, cfg=optimize, device=dev,
                                     progress=_optimize_progress(optimize, name))
                     for name in features]
    else:
        if not features and not checkpoint:
            raise FeatinvError("Pass --feature NAME (shipped decoder) or --checkpoint FILE.")
        if checkpoint and features and len(features) != len(checkpoint):
            raise FeatinvError(f"{len(features)} --feature names for {len(checkpoint)} "
                               "--checkpoint files: give one name per checkpoint, or none.")
        sources = list(checkpoint) or features
        inverters = [decoder_method(src, features[i] if features else None, dev, precision)
                     for i, src in enumerate(sources)]
    names = unique_labels([m.label for m in inverters])  # two hog checkpoints: hog, hog-2
    if size is None and not any(m.any_size for m in inverters):  # else: each image's own size
        size = check_side(inverters[0].image_size)
    inputs = plan_inputs(images)
    labels = ["-".join(names)] if side_by_side else names
    single_file = out.lower().endswith(".png")
    if single_file and len(inputs) * len(labels) > 1:
        raise FeatinvError(f"-o {printable(out)} names one PNG, but {len(inputs) * len(labels)} "
                           "pictures will be written; pass a folder instead (or --side-by-side).")
    targets = {(item.path, label): Path(out) if single_file else
               Path(out) / f"{item.stem}.{label}.png" for item in inputs for label in labels}
    check_targets(list(targets.values()), [item.path for item in inputs] + list(checkpoint),
                  overwrite)
    failures = 0
    for item in inputs:
        path = item.path
        try:
            x = prepare(path, size, max_side)
            ys = [m.run(x[None])[0].cpu() for m in inverters]
        except (ImageError, FeatinvError) as exc:
            failures += 1
            _echo_error(exc, path)
            continue
        if side_by_side:
            pictures = [make_grid([torch.stack([x, *ys])])]
        else:
            pictures = ys
        for picture, label in zip(pictures, labels):
            click.echo(printable(save_png(picture, targets[path, label])))
    if failures:
        click.echo(f"{failures} of {len(inputs)} images failed.", err=True)
    return 1 if failures else 0


@cli.command("evaluate")
@click.option("--feature", "-f", help="Representation (uses its shipped decoder without --checkpoint).")
@click.option("--data", required=True, type=click.Path(), help="Folder of test images.")
@click.option("--checkpoint", "-c", type=click.Path(), help="Decoder checkpoint (.safetensors).")
@click.option("--image-size", type=SIDE_OR_NATIVE, help="Side of the centre squares the test "
              "images are cropped and resized to (default: the decoder's training size); "
              "native: each photo's own shorter side, not resized (all must share it).")
@click.option("--limit", type=POSITIVE, help="Use only the first N images.")
@click.option("--batch-size", type=POSITIVE, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@method_options
@realism_options("auto", None)
@device_option
def evaluate_cmd(feature, data, checkpoint, image_size, limit, batch_size, as_json, method,
                 optimize, precision, comparator, comparator_params, perceptual_weights,
                 device) -> int:
    """Normalized reconstruction error, PSNR, SSIM (and feature error, perceptual distance,
    class agreement) over a folder of images."""
    from .evaluate import evaluate

    if method == "optimize" and checkpoint:
        raise FeatinvError("--method optimize reads no --checkpoint; pass --feature NAME.")
    result = evaluate(data, feature=feature, checkpoint=checkpoint, image_size=image_size,
                      limit=limit, batch_size=batch_size, device=device,
                      on_error=_echo_error,
                      method=method, optimize=optimize,
                      progress=_optimize_progress(optimize, feature) if method == "optimize"
                      else None, precision=precision, comparator=comparator,
                      comparator_params=comparator_params,
                      perceptual_weights=perceptual_weights)
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"{result['feature']} ({result['method']}) on {result['n_images']} images at "
                   f"{result['image_size']} px ({result['device']}):")
        echo_metrics(result)
        click.echo(f"  time per image    {result['seconds_per_image'] * 1000:.2f} ms")
    return 1 if result["failed"] else 0


@cli.command("demo")
@click.option("--train-data", type=click.Path(), help="Folder of photos to train a small "
              "decoder on when no shipped decoder exists.")
@click.option("--out", "-o", default="demo", show_default=True, type=click.Path())
@click.option("--feature", "-f", default="hog", show_default=True)
@click.option("--epochs", type=POSITIVE, default=3, show_default=True)
@click.option("--limit", type=POSITIVE, default=3000, show_default=True, help="Training images used.")
@device_option
def demo_cmd(train_data, out, feature, epochs, limit, device) -> None:
    """Invert bundled example images (training a small decoder first if none is shipped)."""
    from .demo import run_demo

    for path in run_demo(feature, Path(out), train_data, epochs, limit, device,
                         log=lambda m: click.echo(printable(m), err=True)):
        click.echo(printable(path))


@cli.command("zoo")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def zoo_cmd(as_json: bool) -> None:
    """List the decoders shipped with featinv (used when no --checkpoint is given)."""
    from .listing import zoo

    entries = zoo()
    if as_json:
        _echo_json(entries)
        return
    if not entries:
        click.echo("No decoders are shipped with this installation.")
        return
    header = ("feature", "MB", "decoder", "params", "size", "val error", "PSNR", "SSIM")
    rows = [header]
    for e in entries:
        if "error" in e:
            _echo_error(e["error"])
            continue
        rows.append((e["feature"], f"{e['megabytes']:.1f}", f"{e['preset']} x{e['width']:g}",
                     f"{(e['parameters'] or 0) / 1e6:.2f} M", f"{e['image_size']} px",
                     _fmt(e["val_normalized_error"], ".3f"), _fmt(e["val_psnr"], ".2f"),
                     _fmt(e["val_ssim"], ".3f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@cli.command("pack")
@click.argument("source", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="Output .safetensors file.")
@click.option("--recipe", help="The command that trained it (stored in the metadata).")
@click.option("--float32", "full", is_flag=True, help="Keep float32 weights (default: float16).")
@click.option("--no-size-limit", "unlimited", is_flag=True,
              help="Allow a file over the 8 MiB a shipped decoder may take (to share it).")
@overwrite_option
def pack_cmd(source, out, recipe, full, unlimited, overwrite) -> None:
    """Pack a trained decoder (checkpoint or training folder) for sharing or shipping."""
    from .shipped import MAX_SHIPPED_BYTES, pack

    path = pack(source, out, recipe=recipe, half=not full, overwrite=overwrite,
                max_bytes=None if unlimited else MAX_SHIPPED_BYTES)
    click.echo(f"{printable(path)} ({path.stat().st_size / 1e6:.2f} MB)")


@cli.command("show-features")
@click.argument("image", type=click.Path())
@click.option("--feature", "-f", required=True, help="Representation to draw.")
@feature_params
@click.option("--out", "-o", required=True, type=click.Path(), help="Output .png file.")
@click.option("--size", type=SIDE,
              help="Resize the shorter side to this many px first (default: as is).")
@overwrite_option
def show_features_cmd(image, feature, params, out, size, overwrite) -> None:
    """Draw what FEATURE sees in IMAGE, beside or on the image; writes a PNG."""
    import torch

    from .images import open_rgb, pil_to_tensor, resize_shorter_side, save_png
    from .outputs import check_targets
    from .registry import get_feature
    from .visualize import show_features

    if not out.lower().endswith(".png"):
        raise FeatinvError(f"-o {printable(out)}: the picture is written as PNG; give a path "
                           "ending in .png.")
    check_targets([out], [image], overwrite)
    extractor = get_feature(feature, **params)
    img = open_rgb(image)
    if size:
        img = resize_shorter_side(img, size, printable(image))
    smallest = extractor.rule.smallest_side
    if min(img.size) < smallest:
        raise FeatinvError(f"{printable(image)}: {img.width}x{img.height} px is too small for "
                           f"'{feature}', which needs at least {smallest} px on each side; pass "
                           f"--size {smallest} or more.")
    picture = torch.from_numpy(show_features(extractor, pil_to_tensor(img))).permute(2, 0, 1)
    click.echo(printable(save_png(picture, out)))


cli.add_command(analyze)
cli.add_command(compare_cmd)
cli.add_command(train_cmd)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors unless ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FEATINV_DEBUG", "") not in ("", "0")
    try:
        code = cli.main(args=args, prog_name="featinv", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except FeatinvError as exc:
        if debug:
            raise
        _echo_error(exc)
        sys.exit(1)
    except Exception as exc:  # a bug or an environment problem: still one line by default
        if debug:
            raise
        _echo_error(f"{type(exc).__name__}: {exc} (run 'featinv --debug ...' for the "
                    "traceback)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
