"""Re-identification: can a reconstruction be matched to its original among N photos?

For embeddings of the N originals ``g (N, D)`` and of their reconstructions ``q (N, D)`` (row i
of ``q`` reconstructs row i of ``g``), the rank of reconstruction i is

    rank_i = 1 + #{k != i : d(q_i, g_k) <= d(q_i, g_i)}

(ties count against the match, so that a constant reconstruction ranks N, not 1), with ``d``
the Euclidean distance, or the cosine distance (rows scaled to unit norm first). The top-k rate
is the fraction of reconstructions whose rank is at most k; guessing gives ``min(k / N, 1)``.
Intervals are percentile bootstraps over the reconstructions (the gallery stays the N photos).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import DataError, FeatinvError
from ..limits import MAX_BOOTSTRAP

TOP_K = (1, 5)


def check_gallery(n: int) -> None:
    """Refuse fewer than 2 photos: with one, every reconstruction is trivially "re-identified"."""
    if n < 2:
        raise DataError(f"Re-identification ranks each reconstruction among the photos, and "
                        f"needs at least 2 of them (got {n}); pass a folder with more photos "
                        "(or a larger --limit).")


@torch.no_grad()
def ranks(gallery: torch.Tensor, queries: torch.Tensor, cosine: bool = False,
          chunk: int = 256) -> torch.Tensor:
    """The rank (1 = best) of each query's own original, ``(N,)`` int64; see the module
    docstring. ``gallery``, ``queries``: ``(N, ...)``, flattened to ``(N, D)``."""
    g, q = gallery.flatten(1).double(), queries.flatten(1).double()
    if g.shape != q.shape:
        raise ValueError(f"gallery {tuple(g.shape)} and queries {tuple(q.shape)} differ")
    check_gallery(len(g))
    if cosine:
        g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = []
    for start in range(0, len(q), chunk):  # (chunk, N) distances at a time
        d = torch.cdist(q[start:start + chunk], g)
        idx = torch.arange(start, start + len(d))
        own = d[torch.arange(len(d)), idx]
        ahead = (d <= own[:, None]).sum(1) - 1  # every k != i at least as close
        out.append(ahead + 1)
    return torch.cat(out).long()


def top_k_rate(r: torch.Tensor, k: int) -> float:
    return float((r <= k).double().mean())


def bootstrap_interval(r: torch.Tensor, k: int, samples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the top-``k`` rate, resampling the reconstructions
    (``samples`` from 1 to ``MAX_BOOTSTRAP``, drawn in chunks: memory stays bounded)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or \
            not 1 <= samples <= MAX_BOOTSTRAP:
        raise FeatinvError(f"--bootstrap {samples!r}: give a whole number of samples from 1 to "
                           f"{MAX_BOOTSTRAP}.")
    hits = (r <= k).double()
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, 2**22 // max(1, len(hits)))  # the same draws as one call, 32 MB at a time
    rates = torch.cat([hits[torch.randint(len(hits), (min(chunk, samples - done), len(hits)),
                                          generator=gen)].mean(1)
                       for done in range(0, samples, chunk)])
    lo, hi = torch.quantile(rates, torch.tensor([(1 - level) / 2, (1 + level) / 2],
                                                dtype=torch.float64)).tolist()
    return lo, hi


def summary(r: torch.Tensor, ks: Sequence[int] = TOP_K, samples: int = 1000,
            seed: int = 0) -> dict[str, Any]:
    """Top-k rates with chance levels and bootstrap intervals, median and mean rank, the
    cumulative match curve ``cmc[k-1]`` = top-k rate for k = 1..N, and the ranks themselves."""
    n = len(r)
    check_gallery(n)
    out: dict[str, Any] = {"n": n, "median_rank": float(r.double().median()),
                           "mean_rank": float(r.double().mean())}
    for k in ks:
        out[f"top{k}"] = top_k_rate(r, k)
        out[f"top{k}_chance"] = min(k / n, 1.0)
        out[f"top{k}_interval"] = list(bootstrap_interval(r, k, samples, seed))
    counts = torch.bincount(r, minlength=n + 1)[1:n + 1]
    out["cmc"] = (counts.cumsum(0).double() / n).tolist()
    out["ranks"] = r.tolist()
    return out
