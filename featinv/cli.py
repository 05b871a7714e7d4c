"""The ``featinv`` command line: a thin layer over the Python API.

Errors a user can fix are one line on stderr and exit code 1 (2 for usage errors); ``--debug``
shows the traceback instead.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from .cli_analyze import analyze
from .cli_options import device_option
from .errors import FeatinvError


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def _parse_params(items: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def feature_params(command):
    """``--param NAME=VALUE`` (repeatable) and ``--weights``, handed on as one ``params`` dict."""

    @functools.wraps(command)
    def wrapper(*args, params=(), weights=None, **kwargs):
        parsed = _parse_params(params)
        if weights is not None:
            parsed["weights"] = weights
        return command(*args, params=parsed, **kwargs)

    wrapper = click.option("--weights", metavar="PATH|imagenet|random",
                           help="Network weights of a CNN representation: a .safetensors/.npz "
                           "file, imagenet (download/cache) or random; same as -p weights=...")(wrapper)
    return click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                        help="Representation parameter (repeatable), e.g. -p cell_size=8.")(wrapper)



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
        click.option("--steps", type=int, default=defaults.steps, show_default=True,
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


def _optimize_progress(step: int, objective: float) -> None:
    sys.stderr.write(f"\roptimising: step {step}, objective {objective:.4f} ")
    sys.stderr.flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="featinv")
def cli(debug: bool) -> None:
    """Reconstruct images from feature representations with trained decoders."""


@cli.command("list-features")
@click.argument("pattern", default="*")
@click.option("--image-size", type=int, default=128, show_default=True,
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
        click.echo(f"Warning: plugin '{p['name']}' {p['error']}", err=True)


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
        status = f"ERROR: {p.error}" if p.error else ", ".join(p.features) or "(no representations)"
        click.echo(f"{p.name}  [{p.source}]  {status}")


@cli.command("describe")
@click.argument("name")
@click.option("--image-size", type=int, default=128, show_default=True)
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
@click.option("--size", type=int, help="Resize the shorter side to this many px first.")
@click.option("--crop", is_flag=True, help="With --size: centre square of that side.")
@device_option
def extract_cmd(images, feature, params, out, size, crop, device) -> int:
    """Compute the features of IMAGES (files or folders) and save them with their layout."""
    from .extract import extract_files, save_features
    from .images import iter_paths
    from .inversion import pick_device
    from .registry import get_feature

    if crop and size is None:
        raise click.UsageError("--crop needs --size.")
    extractor = get_feature(feature, **params)
    paths = iter_paths(images)
    errors = []

    def on_error(message: str) -> None:
        errors.append(message)
        click.echo(f"Error: {message}", err=True)

    result = extract_files(extractor, paths, size, crop, pick_device(device), on_error)
    for i, (info, feats) in enumerate(zip(result.images, result.features)):
        stats = "".join(f", {k} {v[i]}" for k, v in result.report.items())
        click.echo(f"{info['path']}: {'x'.join(map(str, feats.shape))}{stats}", err=True)
    if errors:
        click.echo(f"{len(errors)} of {len(paths)} images failed.", err=True)
    if not result.features:
        raise FeatinvError(f"every image failed; nothing written to {out}.")
    target = save_features(result, out)
    click.echo(f"wrote {target} ({len(result.features)} images, {feature})")
    return 1 if errors else 0


@cli.command("train")
@click.option("--feature", "-f", required=True, help="Representation to invert.")
@feature_params
@click.option("--data", required=True, type=click.Path(), help="Folder of training images.")
@click.option("--val", type=click.Path(), help="Folder of validation images.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output folder.")
@click.option("--image-size", type=int, help="Training image side (default: the "
              "representation's own, e.g. 227 for AlexNet and SqueezeNet, else 128).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--schedule", type=click.Choice(["step", "cosine", "constant"]), default="step",
              show_default=True, help="Learning-rate decay towards the end.")
@click.option("--preset", default="compact", show_default=True, help="Decoder preset: paper, compact or residual.")
@click.option("--width", type=float, help="Width multiplier (overrides the preset's).")
@click.option("--crop-scale", type=float, default=1.0, show_default=True,
              help="Smallest random-crop side as a fraction of the shorter image side.")
@click.option("--limit", type=int, help="Use only the first N training images.")
@click.option("--val-limit", type=int, default=500, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Data-loading processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--save-every", type=int, default=0, help="Also checkpoint every N steps.")
@click.option("--resume", is_flag=True, help="Continue from OUT/train_state.safetensors.")
@click.option("--finetune-encoder", is_flag=True, help="Train the representation's parameters "
              "too (an autoencoder, paper section 5.2); saved with the decoder.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
              show_default=True, help="Mixed precision for the decoder (bf16: about 2x faster on "
              "CPUs with AVX-512 BF16 and on recent GPUs; fp16: CUDA only).")
@click.option("--channels-last", is_flag=True, help="Channels-last (NHWC) decoder activations.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the training step.")
@click.option("--feature-cache", type=click.Path(), help="Folder caching the features of each "
              "crop on disk, for representations slower than reading them back (SIFT, LBP).")
@click.option("--cache-variants", type=int, default=4, show_default=True, help="With "
              "--feature-cache: random crops per image, cycled over the epochs.")
@click.option("--cache-dtype", type=click.Choice(["float16", "float32"]), default="float16",
              show_default=True, help="With --feature-cache: how features are stored.")
@device_option
def train_cmd(feature, params, data, val, out, image_size, epochs, batch_size, lr, schedule,
              preset, width, crop_scale, limit, val_limit, workers, seed, save_every, resume,
              finetune_encoder, precision, channels_last, compile_, feature_cache,
              cache_variants, cache_dtype, device) -> None:
    """Train a decoder that inverts FEATURE; writes OUT/decoder.safetensors.

    Under torchrun (torchrun --nproc_per_node N -m featinv train ...) the processes train one
    decoder together; --batch-size is the global batch, split over the processes.
    """
    from .distributed import world_from_env
    from .train import TrainConfig, train

    cfg = TrainConfig(feature=feature, params=params, data=data, val=val, out=out,
                      image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
                      schedule=schedule, preset=preset, width=width,
                      crop_scale=(crop_scale, 1.0), limit=limit, val_limit=val_limit,
                      workers=workers, seed=seed, save_every=save_every, device=device,
                      finetune_encoder=finetune_encoder, precision=precision,
                      channels_last=channels_last, compile=compile_, feature_cache=feature_cache,
                      cache_variants=cache_variants, cache_dtype=cache_dtype)
    metrics = train(cfg, resume=resume, log=lambda m: click.echo(m, err=True))
    if world_from_env().is_main:  # under torchrun, one process reports
        click.echo(f"wrote {Path(out) / 'decoder.safetensors'}")
        if metrics:
            _echo_json(metrics)


@cli.command("invert")
@click.argument("images", nargs=-1, required=True)
@click.option("--feature", "-f", multiple=True, help="Representation (its shipped decoder is "
              "used without --checkpoint). Repeat it or separate names by commas to compare "
              "several side by side.")
@click.option("--checkpoint", "-c", multiple=True, type=click.Path(),
              help="Decoder checkpoint (.safetensors); may be repeated.")
@click.option("--out", "-o", default=".", show_default=True, type=click.Path(),
              help="Output folder (or a .png file for a single image).")
@click.option("--size", type=int, help="Shorter image side to work at (default: the decoder's training size).")
@click.option("--side-by-side", is_flag=True, help="Write input | reconstruction(s) in one PNG.")
@method_options
@device_option
def invert_cmd(images, feature, checkpoint, out, size, side_by_side, method, optimize,
               precision, device) -> int:
    """Reconstruct each image from its features; writes PNGs.

    IMAGES are files, folders, or skimage:NAME for a photo bundled with scikit-image
    (skimage:astronaut, skimage:coffee, ...).
    """
    import torch

    from .errors import ImageError
    from .images import image_stem, iter_paths, make_grid, save_png
    from .inversion import pick_device, prepare
    from .methods import decoder_method, optimize_method

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
                                     progress=_optimize_progress) for name in features]
    else:
        if not features and not checkpoint:
            raise FeatinvError("Pass --feature NAME (shipped decoder) or --checkpoint FILE.")
        if checkpoint and features and len(features) != len(checkpoint):
            raise FeatinvError(f"{len(features)} --feature names for {len(checkpoint)} "
                               "--checkpoint files: give one name per checkpoint, or none.")
        sources = list(checkpoint) or features
        inverters = [decoder_method(src, features[i] if features else None, dev, precision)
                     for i, src in enumerate(sources)]
    names = [m.label for m in inverters]
    size = size or inverters[0].image_size
    paths = iter_paths(images)
    per_image = 1 if side_by_side else len(inverters)
    single_file = out.lower().endswith(".png")
    if single_file and len(paths) * per_image > 1:
        raise FeatinvError(f"-o {out} names one PNG, but {len(paths) * per_image} pictures will "
                           "be written; pass a folder instead (or --side-by-side).")
    failures = 0
    for path in paths:
        try:
            x = prepare(path, size)
            ys = [m.run(x[None])[0].cpu() for m in inverters]
            if method == "optimize":
                sys.stderr.write("\n")
        except (ImageError, FeatinvError) as exc:
            failures += 1
            click.echo(f"Error: {exc}", err=True)
            continue
        if side_by_side:
            pictures = [(make_grid([torch.stack([x, *ys])]), "-".join(names))]
        else:
            pictures = list(zip(ys, names))
        for picture, label in pictures:
            target = Path(out) if single_file else Path(out) / f"{image_stem(path)}.{label}.png"
            click.echo(str(save_png(picture, target)))
    if failures:
        click.echo(f"{failures} of {len(paths)} images failed.", err=True)
    return 1 if failures else 0


@cli.command("evaluate")
@click.option("--feature", "-f", help="Representation (uses its shipped decoder without --checkpoint).")
@click.option("--data", required=True, type=click.Path(), help="Folder of test images.")
@click.option("--checkpoint", "-c", type=click.Path(), help="Decoder checkpoint (.safetensors).")
@click.option("--image-size", type=int, help="Test image size (default: the decoder's).")
@click.option("--limit", type=int, help="Use only the first N images.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@method_options
@device_option
def evaluate_cmd(feature, data, checkpoint, image_size, limit, batch_size, as_json, method,
                 optimize, precision, device) -> int:
    """Normalized reconstruction error, PSNR and SSIM over a folder of images."""
    from .evaluate import evaluate

    if method == "optimize" and checkpoint:
        raise FeatinvError("--method optimize reads no --checkpoint; pass --feature NAME.")
    result = evaluate(data, feature=feature, checkpoint=checkpoint, image_size=image_size,
                      limit=limit, batch_size=batch_size, device=device,
                      on_error=lambda msg: click.echo(f"Error: {msg}", err=True),
                      method=method, optimize=optimize,
                      progress=_optimize_progress if method == "optimize" else None,
                      precision=precision)
    if method == "optimize":
        sys.stderr.write("\n")
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"{result['feature']} ({result['method']}) on {result['n_images']} images at "
                   f"{result['image_size']} px ({result['device']}):")
        click.echo(f"  normalized error  {result['normalized_error']:.4f}")
        click.echo(f"  PSNR              {result['psnr']:.2f} dB")
        click.echo(f"  SSIM              {result['ssim']:.4f}")
        click.echo(f"  time per image    {result['seconds_per_image'] * 1000:.2f} ms")
    return 1 if result["failed"] else 0


@cli.command("demo")
@click.option("--train-data", type=click.Path(), help="Folder of photos to train a small "
              "decoder on when no shipped decoder exists.")
@click.option("--out", "-o", default="demo", show_default=True, type=click.Path())
@click.option("--feature", "-f", default="hog", show_default=True)
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--limit", type=int, default=3000, show_default=True, help="Training images used.")
@device_option
def demo_cmd(train_data, out, feature, epochs, limit, device) -> None:
    """Invert bundled example images (training a small decoder first if none is shipped)."""
    from .demo import run_demo

    for path in run_demo(feature, Path(out), train_data, epochs, limit, device,
                         log=lambda m: click.echo(m, err=True)):
        click.echo(str(path))


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
            click.echo(f"Error: {e['error']}", err=True)
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
def pack_cmd(source, out, recipe, full) -> None:
    """Pack a trained decoder (checkpoint or training folder) for sharing or shipping."""
    from .shipped import pack

    path = pack(source, out, recipe=recipe, half=not full)
    click.echo(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")


@cli.command("show-features")
@click.argument("image", type=click.Path())
@click.option("--feature", "-f", required=True, help="Representation to draw.")
@feature_params
@click.option("--out", "-o", required=True, type=click.Path(), help="Output .png file.")
@click.option("--size", type=click.IntRange(min=1),
              help="Resize the shorter side to this many px first (default: as is).")
def show_features_cmd(image, feature, params, out, size) -> None:
    """Draw what FEATURE sees in IMAGE, beside or on the image; writes a PNG."""
    import torch

    from .images import open_rgb, pil_to_tensor, resize_shorter_side, save_png
    from .registry import get_feature
    from .visualize import show_features

    if not out.lower().endswith(".png"):
        raise FeatinvError(f"-o {out}: the picture is written as PNG; give a path ending in .png.")
    extractor = get_feature(feature, **params)
    img = open_rgb(image)
    if size:
        img = resize_shorter_side(img, size)
    smallest = extractor.rule.smallest_side
    if min(img.size) < smallest:
        raise FeatinvError(f"{image}: {img.width}x{img.height} px is too small for '{feature}', "
                           f"which needs at least {smallest} px on each side; pass --size "
                           f"{smallest} or more.")
    picture = torch.from_numpy(show_features(extractor, pil_to_tensor(img))).permute(2, 0, 1)
    click.echo(str(save_png(picture, out)))


cli.add_command(analyze)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors unless ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FEATINV_DEBUG", "") not in ("", "0")
    try:
        code = cli.main(args=args, prog_name="featinv", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except FeatinvError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug or an environment problem: still one line by default
        if debug:
            raise
        click.echo(f"Error: {type(exc).__name__}: {exc} (run 'featinv --debug ...' for the "
                   "traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
