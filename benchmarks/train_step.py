"""Decoder training-step speed under each precision and memory format (features excluded).

    python benchmarks/train_step.py --feature hog --preset residual --threads 1

prints a table and a JSON line: milliseconds per image for one Adam step (forward, loss,
backward, update) at batch 64, 128 px, in fp32 and bf16, contiguous and channels_last.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from featinv.decoders.networks import build_decoder
from featinv.representation.registry import get_feature
from featinv.training.loop import EncoderDecoder, optimizer_step


def step_ms(feature: str, preset: str, width, precision: str, channels_last: bool,
            batch: int, size: int, repeats: int) -> float:
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size)
    extractor = get_feature(feature)
    feats = extractor(x)
    decoder = build_decoder(extractor.spec, extractor.layout(size, size), size, preset, width)
    decoder.set_feature_stats(feats)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    decoder.to(memory_format=fmt)
    if feats.dim() == 4:
        feats = feats.contiguous(memory_format=fmt)
    opt = torch.optim.Adam(decoder.parameters())
    model = EncoderDecoder(extractor, decoder, None, precision, fmt)

    def step():
        optimizer_step(model, opt, x, feats)

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t0) / repeats / batch * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature", default="hog")
    parser.add_argument("--preset", default="residual")
    parser.add_argument("--width", type=float)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for precision in ("fp32", "bf16"):
        for channels_last in (False, True):
            ms = step_ms(args.feature, args.preset, args.width, precision, channels_last,
                         args.batch_size, args.image_size, args.repeats)
            rows.append({"precision": precision, "channels_last": channels_last,
                         "ms_per_image": round(ms, 3)})
            print(f"{precision:5s} channels_last={str(channels_last):5s} {ms:7.2f} ms/image",
                  flush=True)
    print(json.dumps({"feature": args.feature, "preset": args.preset, "threads": args.threads,
                      "batch_size": args.batch_size, "image_size": args.image_size,
                      "rows": rows}))


if __name__ == "__main__":
    main()
