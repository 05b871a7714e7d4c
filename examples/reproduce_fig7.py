"""The paper's Figure 7 here: reconstruction error per SqueezeNet layer, with and without
perturbed features, with the ImageNet-trained SqueezeNet weights of ../shared.

    python examples/reproduce_fig7.py --data ../shared/data --runs runs/fig7 --out docs

For each layer it trains a decoder (``featinv train``, resumable: an interrupted run picks up
where it stopped), optionally an autoencoder (``--autoencoder``: the encoder fine-tuned too),
then measures the normalized error on val photos under each perturbation of section 5.4
(``featinv.analysis.figures.perturbation_study``, as ``featinv analyze perturb``). Writes
``fig7.json`` and ``images/fig7_squeezenet.png`` (the chart) and
``images/fig7_reconstructions.png`` (one photo reconstructed from every layer). The defaults fit
a 2-core CPU (96 px, 4,000 photos, 3 epochs per layer: about 2 hours); the paper used AlexNet at
227 px and 1.2 M photos.

With ``--shipped`` nothing is trained: the decoders that ship with featinv (``featinv zoo``,
128 px, trained by ``examples/train_squeezenet_decoders.sh``) are measured, and
``--autoencoders FILE,...`` adds decoders trained with ``--finetune-encoder``:

    python examples/reproduce_fig7.py --shipped --val-limit 500 --out docs
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from featinv.analysis.evaluate import load_square_images
from featinv.analysis.figures import perturbation_study, reconstruction_strip
from featinv.analysis.plots import perturbation_chart
from featinv.io.images import save_png
from featinv.training.loop import TrainConfig, train

LAYERS = ("conv1", "fire3", "fire5", "fire7", "fire9", "conv10", "pool10")
WEIGHTS = "weights/squeezenet1_0_deepcompression_caffe.npz"


def train_layer(layer: str, args, finetune: bool) -> Path:
    out = Path(args.runs) / (f"{layer}_autoencoder" if finetune else layer)
    cfg = TrainConfig(feature=f"squeezenet.{layer}",
                      params={"weights": str(Path(args.data) / WEIGHTS)},
                      data=str(Path(args.data) / "train"), out=str(out),
                      val=str(Path(args.data) / "val"), val_limit=100,
                      image_size=args.image_size, epochs=args.epochs, limit=args.limit,
                      preset="compact", schedule="cosine", workers=1, save_every=100,
                      finetune_encoder=finetune, precision=args.precision,
                      channels_last=args.precision == "bf16")
    train(cfg, resume=True, log=lambda m: print(f"[{layer}] {m}", flush=True))
    return out / "decoder.safetensors"


def shipped_size(name: str) -> int:
    """The training image side of the shipped decoder for ``name``."""
    from featinv.inversion.load import load_decoder

    return int(load_decoder(name).config["image_size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--runs", default="runs/fig7")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=4000, help="training photos")
    parser.add_argument("--val-limit", type=int, default=200, help="photos measured")
    parser.add_argument("--autoencoder", action="store_true",
                        help="also train each layer with the encoder fine-tuned")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--shipped", action="store_true",
                        help="measure the shipped decoders (at their own 128 px) instead of training")
    parser.add_argument("--autoencoders", default="",
                        help="with --shipped: decoder files trained with --finetune-encoder")
    args = parser.parse_args()
    layers = args.layers.split(",")

    if args.shipped:
        decoders = [f"squeezenet.{layer}" for layer in layers]  # names of shipped decoders
        autoencoders = [a for a in args.autoencoders.split(",") if a]
        args.image_size = shipped_size(decoders[0])
        args.limit = args.epochs = None
    else:
        decoders = [train_layer(layer, args, finetune=False) for layer in layers]
        autoencoders = [train_layer(layer, args, finetune=True) for layer in layers
                        if args.autoencoder]
    x = load_square_images(Path(args.data) / "val", args.image_size, args.val_limit)[0]
    study = perturbation_study(decoders, x, autoencoders=autoencoders, on_layer=lambda row: print(
        row["layer"].split(".")[-1], json.dumps({k: round(v, 4) for k, v in row["errors"].items()}),
        flush=True))
    result = {"network": "SqueezeNet 1.0 (Deep Compression Caffe weights)",
              "decoders": "shipped" if args.shipped else "trained here",
              "image_size": args.image_size, "train_photos": args.limit,
              "epochs_per_layer": args.epochs, "n_images": len(x), "layers": study["layers"],
              "autoencoder": study["autoencoder"]}
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "fig7.json").write_text(json.dumps(result, indent=2) + "\n")
    perturbation_chart(result, out / "images" / "fig7_squeezenet.png")
    save_png(reconstruction_strip(decoders, x[0]), out / "images" / "fig7_reconstructions.png")
    print(out / "fig7.json")


if __name__ == "__main__":
    main()
