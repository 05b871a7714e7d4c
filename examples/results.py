"""Measure the shipped decoders on validation photos and draw the figures of docs/results.md.

    python examples/results.py --val ../shared/data/val --out docs

writes ``results.json`` (metrics of each shipped decoder, of two baselines and of the brightness
check) and, under ``images/``, ``fig3_reconstructions.png`` (input | HOG | SIFT | LBP, like the
paper's Figure 3), ``training_curves.png`` and ``brightness_hog.png``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from featinv.datasets.folders import scan_folder  # noqa: E402
from featinv.analysis.evaluate import evaluate  # noqa: E402
from featinv.io.images import load_square  # noqa: E402
from featinv.inversion.load import extractor_for, load_decoder  # noqa: E402
from featinv.inversion.pipeline import reconstruct  # noqa: E402
from featinv.analysis.metrics import normalized_error, psnr, ssim  # noqa: E402
from featinv.inversion.shipped import shipped  # noqa: E402
from featinv.inversion.zoo import images_seen  # noqa: E402

FEATURES = ("hog", "sift", "lbp")
SHOWN = (3, 17, 42, 77, 120, 205)  # val photos in the figures (indices in sorted order)


def load_val(folder: str, size: int) -> torch.Tensor:
    files = scan_folder(folder)
    return torch.stack([load_square(f, size) for f in files])


def metrics(x: torch.Tensor, y: torch.Tensor) -> dict:
    return {"normalized_error": normalized_error(x, y), "psnr": float(psnr(x, y).mean()),
            "ssim": float(ssim(x, y).mean())}


def baselines(x: torch.Tensor) -> dict:
    """Predicting the mean image, and the exact grayscale of each photo (colour is lost)."""
    mean = x.mean(0, keepdim=True).expand_as(x)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None].expand_as(x)
    return {"mean image": metrics(x, mean), "true grayscale": metrics(x, gray)}


def shown(n: int) -> list[int]:
    """The photos drawn: fixed ones, or the first few of a small folder."""
    return [i for i in SHOWN if i < n] if n > max(SHOWN) else list(range(min(n, len(SHOWN))))


def figure3(x: torch.Tensor, recons: dict[str, torch.Tensor], path: Path) -> None:
    """Rows: the photos ``x`` (N, 3, H, W); columns: input, then each decoder's ``recons``."""
    cols = ["input"] + list(recons)
    fig, axes = plt.subplots(len(x), len(cols), figsize=(1.6 * len(cols), 1.6 * len(x)),
                             squeeze=False)
    for r in range(len(x)):
        for c, name in enumerate(cols):
            img = x[r] if name == "input" else recons[name][r]
            axes[r, c].imshow(img.permute(1, 2, 0).numpy())
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name.upper() if name != "input" else name, fontsize=10)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def low_res_end(training: dict) -> float:
    """Images seen when a ``--low-res-first`` run's validations start to mean something (see
    featinv.training.loop.Run._settled; runs trained before it validated during that phase)."""
    from featinv.training.loop import BN_SETTLE

    plan, budget = str(training.get("low_res_first") or "off"), training.get("budget")
    if plan == "off" or not budget:
        return 0.0
    fraction = 0.5 if plan == "auto" else float(plan.partition(":")[2])
    return fraction * budget + BN_SETTLE * training["batch_size"]


def curves(entries: list[dict], path: Path) -> None:
    from featinv.io import checkpoint

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for e in entries:
        meta = checkpoint.read_meta(e["file"])
        batch = meta["training"]["batch_size"]
        history = meta["packed"]["history"]
        seen = [images_seen(h, batch) / 1000 for h in history]
        settled = low_res_end(meta["training"]) / 1000
        scored = [(s, h["val_normalized_error"]) for s, h in zip(seen, history)
                  if "val_normalized_error" in h and s >= settled]
        a.plot(seen, [h["train_loss"] for h in history], label=e["feature"].upper())
        b.plot(*zip(*scored), marker=".", label=e["feature"].upper())
    a.set(xlabel="training images seen (thousands)", ylabel="training loss (MSE)", yscale="log")
    b.set(xlabel="training images seen (thousands)", ylabel="val normalized error")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def brightness(x: torch.Tensor, path: Path) -> dict:
    """The paper's check: scale the input by 10 or 0.1 before HOG; reconstructions barely move."""
    decoder = load_decoder("hog")
    hog = extractor_for(decoder)
    base = reconstruct(hog, decoder, x)
    out, rows = {}, {"x1": base}
    for factor in (10.0, 0.1):
        y = reconstruct(hog, decoder, x * factor)
        rows[f"x{factor:g}"] = y
        out[f"x{factor:g}"] = {"vs_photo": metrics(x, y),
                               "change_vs_unscaled": normalized_error(base, y),
                               "feature_change": float((hog(x * factor) - hog(x)).norm()
                                                       / hog(x).norm())}
    out["x1"] = {"vs_photo": metrics(x, base)}
    idx = shown(len(x))[:3]
    fig, axes = plt.subplots(2, 3, figsize=(7.5, 5))
    for c, (name, factor) in enumerate((("x1", 1.0), ("x10", 10.0), ("x0.1", 0.1))):
        grid_in = torch.cat(list((x[idx] * factor).clamp(0, 1)), 2)
        grid_out = torch.cat(list(rows[name][idx]), 2)
        axes[0, c].imshow(grid_in.permute(1, 2, 0).numpy())
        axes[1, c].imshow(grid_out.permute(1, 2, 0).numpy())
        axes[0, c].set_title(f"input × {factor:g}", fontsize=10)
        axes[1, c].set_title(f"from HOG of input × {factor:g}", fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.4)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", default="../shared/data/val")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries = [e for e in shipped() if e["feature"] in FEATURES and e["decoder"] == "default"]
    size = entries[0]["image_size"]
    x = load_val(args.val, size)
    results = {"val": args.val, "n_images": len(x), "image_size": size,
               "baselines": baselines(x), "decoders": {}}
    rows, recons = x[shown(len(x))], {}
    for e in entries:
        name = e["feature"]
        ev = evaluate(args.val, feature=name)  # the CLI's own numbers, timing included
        decoder = load_decoder(name)
        recons[name] = reconstruct(extractor_for(decoder), decoder, rows)
        results["decoders"][name] = {**{k: ev[k] for k in ("normalized_error", "psnr", "ssim")},
                                     "seconds_per_image": ev["seconds_per_image"],
                                     "parameters": e["parameters"], "megabytes": e["megabytes"],
                                     "preset": e["preset"], "width": e["width"],
                                     "recipe": e["recipe"]}
        print(f"{name}: {results['decoders'][name]['normalized_error']:.4f}")
    figure3(rows, {n: recons[n] for n in FEATURES if n in recons},
            out / "images" / "fig3_reconstructions.png")
    curves(entries, out / "images" / "training_curves.png")
    if "hog" in recons:
        results["brightness_hog"] = brightness(x, out / "images" / "brightness_hog.png")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
