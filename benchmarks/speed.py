"""Training throughput, inversion latency, memory peak and the optimisation baseline, per representation.

    python benchmarks/speed.py                       # hog, lbp, sift, alexnet.conv5, squeezenet.fire5
    python benchmarks/speed.py --features hog --threads 2 --json docs/speed_cpu.json
    python benchmarks/speed.py --device cuda         # on a GPU machine

Each representation is measured in a fresh process (so memory peaks do not mix), at its own image
size (128 px for the classical features, 227 px for AlexNet and SqueezeNet), with a decoder of
the compact preset (random weights: speed does not depend on training):

- features: the representation alone, ms/image at batch 64;
- decoder forward: ms/image at batch 1 and 64 (fp32), and at 64 in bf16 + channels_last;
- inversion: features + decoder, ms/image at batch 1 and 64;
- training: images/s of one full Adam step on a batch of 64 (features computed inside the step,
  as ``featinv train`` does; image loading excluded), fp32 and bf16 + channels_last;
- memory: the process's peak resident memory (CPU) or peak allocated GPU memory after the
  inversion measurements and after the training ones;
- optimisation baseline (differentiable representations): seconds to invert one image with
  ``--method optimize`` at the same size, against the decoder's batch-1 inversion of that image.

Prints a table and, with ``--json``, writes every number with the machine it was measured on.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import time

DEFAULT_FEATURES = "hog,lbp,sift,alexnet.conv5,squeezenet.fire5"
TARGETS = {"decoder_ms_per_image_b64_hog_cpu": 1.0, "train_images_per_s_hog_cpu": 300.0,
           "optimize_over_decoder": 1000.0}


def _timed(fn, repeats: int, sync) -> float:
    """Seconds per call of ``fn`` (after one warm-up call)."""
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(feature: str, device_name: str, batch: int, repeats: int, size: int | None,
            optimize_steps: int) -> dict:
    """Every number for one representation, in this process."""
    import torch

    from featinv.decoders.networks import build_decoder
    from featinv.inversion.optimize import OptimizeConfig, invert_by_optimization
    from featinv.representation.registry import get_feature
    from featinv.precision import autocast
    from featinv.training.loop import DEFAULT_IMAGE_SIZE, EncoderDecoder, optimizer_step

    device = torch.device(device_name)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    params = {"weights": "random"} if "." in feature else {}
    extractor = get_feature(feature, **params).to(device)
    size = size or extractor.spec.image_size or DEFAULT_IMAGE_SIZE
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device)
    decoder = build_decoder(extractor.spec, extractor.layout(size, size), size, "compact")
    decoder = decoder.to(device)
    with torch.no_grad():
        feats = extractor(x)
    decoder.set_feature_stats(feats)
    decoder.eval()
    row = {"feature": feature, "image_size": size, "batch": batch, "device": str(device),
           "decoder_parameters": sum(p.numel() for p in decoder.parameters()),
           "feature_shape": list(feats.shape[1:])}
    per_image = lambda seconds, n: seconds / n * 1000  # noqa: E731

    with torch.no_grad():
        row["features_ms_per_image"] = per_image(_timed(lambda: extractor(x), repeats, sync), batch)
        for n in (1, batch):
            f = feats[:n]
            row[f"decoder_ms_per_image_b{n}"] = per_image(
                _timed(lambda: decoder(f, size=(size, size)), repeats * (4 if n == 1 else 1),
                       sync), n)
            xs = x[:n]
            row[f"inversion_ms_per_image_b{n}"] = per_image(
                _timed(lambda: decoder(extractor(xs), size=(size, size)),
                       repeats * (4 if n == 1 else 1), sync), n)
        fast = decoder.to(memory_format=torch.channels_last)
        f_cl = feats.contiguous(memory_format=torch.channels_last) if feats.dim() == 4 else feats
        with autocast(device, "bf16"):
            row[f"decoder_ms_per_image_b{batch}_bf16_cl"] = per_image(
                _timed(lambda: fast(f_cl, size=(size, size)), repeats, sync), batch)
        decoder.to(memory_format=torch.contiguous_format)
    row["peak_mb_after_inversion"] = _peak_mb(device)

    decoder.train()
    for label, precision, fmt in (("fp32", "fp32", torch.contiguous_format),
                                  ("bf16_cl", "bf16", torch.channels_last)):
        decoder.to(memory_format=fmt)
        opt = torch.optim.Adam(decoder.parameters(), lr=1e-4)
        model = EncoderDecoder(extractor, decoder, None, precision, fmt)  # what featinv train runs
        step = functools.partial(optimizer_step, model, opt, x)

        row[f"train_images_per_s_{label}"] = batch / _timed(step, repeats, sync)
    row["peak_mb_after_training"] = _peak_mb(device)

    if extractor.spec.differentiable and optimize_steps:
        decoder.eval().to(memory_format=torch.contiguous_format)
        cfg = OptimizeConfig(steps=optimize_steps)
        t0 = time.perf_counter()
        invert_by_optimization(extractor, x[:1], cfg)
        sync()
        row["optimize_steps"] = optimize_steps
        row["optimize_s_per_image"] = time.perf_counter() - t0
        # against one image through the decoder, and against an image's share of a batch
        row["optimize_over_decoder"] = (row["optimize_s_per_image"] * 1000
                                        / row["inversion_ms_per_image_b1"])
        row[f"optimize_over_decoder_b{batch}"] = (row["optimize_s_per_image"] * 1000
                                                  / row[f"inversion_ms_per_image_b{batch}"])
    return row


def machine(device: str) -> dict:
    import torch

    info = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


COLUMNS = [("feature", "{:>18}"), ("image_size", "{:>5}"), ("features_ms_per_image", "{:>9.2f}"),
           ("decoder_ms_per_image_b1", "{:>9.2f}"), ("decoder_ms_per_image_b{b}", "{:>9.3f}"),
           ("decoder_ms_per_image_b{b}_bf16_cl", "{:>9.3f}"), ("inversion_ms_per_image_b1", "{:>9.2f}"),
           ("inversion_ms_per_image_b{b}", "{:>9.2f}"), ("train_images_per_s_fp32", "{:>9.1f}"),
           ("train_images_per_s_bf16_cl", "{:>9.1f}"), ("peak_mb_after_training", "{:>8.0f}"),
           ("optimize_s_per_image", "{:>8.2f}"), ("optimize_over_decoder", "{:>8.0f}"),
           ("optimize_over_decoder_b{b}", "{:>8.0f}")]
HEADERS = ["feature", "px", "feat ms", "dec b1", "dec b{b}", "dec bf16", "inv b1", "inv b{b}",
           "train/s", "bf16/s", "peak MB", "opt s", "opt/b1", "opt/b{b}"]


WIDTHS = [len(fmt.format(0 if "f}" in fmt else "x")) for _, fmt in COLUMNS]


def print_header(batch: int) -> None:
    print(" ".join(h.format(b=batch).rjust(w) for h, w in zip(HEADERS, WIDTHS)), flush=True)


def print_row(row: dict, batch: int) -> None:
    cells = []
    for (key, fmt), w in zip(COLUMNS, WIDTHS):
        value = row.get(key.format(b=batch))
        cells.append(fmt.format(value) if value is not None else "-".rjust(w))
    print(" ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default=DEFAULT_FEATURES, help="Comma-separated names.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, help="Override every representation's size.")
    parser.add_argument("--optimize-steps", type=int, default=800,
                        help="Steps of the optimisation baseline (its default schedule); 0: skip.")
    parser.add_argument("--json", help="Also write the results to this file.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # measure one feature, print JSON
    args = parser.parse_args(argv)

    import torch

    if args.worker:
        if args.threads:
            torch.set_num_threads(args.threads)
        row = measure(args.worker, args.device, args.batch_size, args.repeats, args.image_size,
                      args.optimize_steps)
        print(json.dumps(row))
        return row

    rows = []
    print_header(args.batch_size)
    for feature in [f.strip() for f in args.features.split(",") if f.strip()]:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", feature,
               "--device", args.device, "--batch-size", str(args.batch_size),
               "--repeats", str(args.repeats), "--optimize-steps", str(args.optimize_steps)]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        cmd += ["--image-size", str(args.image_size)] if args.image_size else []
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{feature}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print_row(rows[-1], args.batch_size)
    result = {"machine": machine(args.device), "settings": {
        "device": args.device, "threads": args.threads or torch.get_num_threads(),
        "batch_size": args.batch_size, "repeats": args.repeats, "preset": "compact",
        "optimize_steps": args.optimize_steps, "command": " ".join([
            "python benchmarks/speed.py", *(argv if argv is not None else sys.argv[1:])])},
        "rows": rows, "targets": TARGETS}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
