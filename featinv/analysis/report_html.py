"""The HTML report of an audit: one self-contained page (inline CSS, images as ``data:`` URIs,
no script, nothing fetched from a network) with the ranking table, the re-identification chart
and, per representation, photos beside their reconstructions with their ranks."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import torch

from ..io.files import write_output
from ..io.images import tensor_to_pil

THUMB = 128  # px: side of the pictures in the report
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff;max-width:1150px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #bbb;padding:4px 7px;text-align:right}
th{background:#eee}td.name,th.name{text-align:left}
.pairs{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;border:1px solid #ccc;padding:4px;background:#fafafa}
figure img{width:128px;height:128px;image-rendering:auto}
figcaption{font-size:.75em;max-width:260px}.file{word-break:break-all}
.hit{color:#a00;font-weight:bold}.note{color:#555;font-size:.9em;max-width:900px}
"""


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def image_uri(image: torch.Tensor, side: int = THUMB) -> str:
    """A ``(3, H, W)`` image in [0, 1] as a JPEG ``data:`` URI (quality 90), resized to at
    most ``side`` px."""
    picture = tensor_to_pil(image.clamp(0, 1))
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _rate(block: dict[str, Any] | None, k: int) -> str:
    if not block:
        return "–"
    lo, hi = block[f"top{k}_interval"]
    return f"{_pct(block[f'top{k}'])} <small>[{_pct(lo)}, {_pct(hi)}]</small>"


def _num(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _table(result: dict[str, Any]) -> str:
    n = result["n_images"]
    head = ("leak rank", "representation", "px", "normalized error", "perceptual distance",
            "re-ID top-1 (independent)", "re-ID top-5 (independent)", "re-ID top-1 (own)",
            "re-ID top-5 (own)", "class agreement")
    rows = [f"<tr><th>{'</th><th>'.join(head)}</th></tr>"]
    for row in result["representations"]:
        cells = (str(row["leak_rank"]), html.escape(row["label"]), str(row["image_size"]),
                 _num(row["normalized_error"]), _num(row["perceptual_distance"]),
                 _rate(row["independent"], 1), _rate(row["independent"], 5),
                 _rate(row["own"], 1), _rate(row["own"], 5), _pct(row["class_agreement"]))
        rows.append("<tr>" + "".join(f'<td class="name">{c}</td>' if i == 1 else f"<td>{c}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    chance = (f"<tr><td></td><td class=\"name\">chance (guessing)</td><td></td><td></td><td></td>"
              f"<td>{_pct(1 / n)}</td><td>{_pct(min(5 / n, 1))}</td><td>{_pct(1 / n)}</td>"
              f"<td>{_pct(min(5 / n, 1))}</td><td></td></tr>")
    return f'<table id="ranking">{"".join(rows)}{chance}</table>'


def _pairs(row: dict[str, Any], photos: torch.Tensor, recons: torch.Tensor) -> str:
    figures = []
    for i in range(len(photos)):
        info = row["images"][i]
        ind = info["independent_rank"]
        ranks = (f'<span class="{"hit" if ind == 1 else ""}">rank {ind}</span> independent, '
                 if ind is not None else "")
        caption = (f"<span class=\"file\">{html.escape(info['file'])}</span><br>{ranks}rank {info['own_rank']} own, "
                   f"error {info['normalized_error']:.3f}")
        figures.append(f'<figure><img src="{image_uri(photos[i])}" alt="photo {i + 1}">'
                       f'<img src="{image_uri(recons[i])}" alt="reconstruction {i + 1}">'
                       f"<figcaption>{caption}</figcaption></figure>")
    return f'<div class="pairs">{"".join(figures)}</div>'


def render(result: dict[str, Any], pictures: dict[str, tuple[torch.Tensor, torch.Tensor]],
           chart_png: bytes) -> str:
    """The report's HTML text. ``pictures``: label -> (photos, reconstructions), the first
    photos of the audit in order; ``chart_png``: the re-identification chart."""
    n = result["n_images"]
    sections = []
    for row in result["representations"]:
        photos, recons = pictures.get(row["label"], (torch.zeros(0), torch.zeros(0)))
        sections.append(f"<h2>{row['leak_rank']}. {html.escape(row['label'])}</h2>"
                        f"<p class=\"note\">Photos (left) beside their reconstructions from "
                        f"{html.escape(row['feature'])} features (right); rank 1 means the "
                        f"original was the closest of the {n} photos.</p>"
                        + _pairs(row, photos, recons))
    space = html.escape(result["independent_space"] or "none")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>featinv audit</title>
<style>{_CSS}</style></head><body>
<h1>featinv audit: what the features leak</h1>
<p class="note">{n} photos from <code>{html.escape(result['data'])}</code>. Each
reconstruction is ranked against all {n} photos: in the representation's own feature space
and in an independent model's ({space}). Top-k: the share of reconstructions whose original is
among the k closest; [brackets]: 95% bootstrap interval ({result['bootstrap_samples']} samples);
chance: k / N. Ranked by the independent top-1 rate, then top-5, then own top-1.</p>
{_table(result)}
<h2>Re-identification</h2>
<img id="chart" src="{png_data_uri(chart_png)}" alt="cumulative match curves">
{''.join(sections)}
</body></html>
"""


def write_report(path: str | Path, result: dict[str, Any],
                 pictures: dict[str, tuple[torch.Tensor, torch.Tensor]], chart_png: bytes) -> Path:
    """Write the report to ``path`` (atomically); returns the path."""
    text = render(result, pictures, chart_png)
    return write_output(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
