"""Feature perturbations of the paper's section 5.4, applied to each image's feature vector.

Every function takes features ``(B, ...)`` (any layout) and returns the same shape; each row
(one image's features, flattened) is treated as one vector.

    binarize      keep the signs, give every non-zero entry one magnitude so the L2 norm is kept
    dropout       zero 50 % random entries, rescale to keep the L2 norm
    drop-least    zero the 50 % smallest non-zero entries (by magnitude), rescale likewise
    dropout+binarize, drop-least+binarize   drop first, then binarize to the original norm
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import FeatinvError


def _rows(features: torch.Tensor) -> torch.Tensor:
    if features.ndim < 2:
        raise FeatinvError(f"perturbations need a batch of features (B, ...), got shape "
                           f"{tuple(features.shape)}")
    return features.flatten(1)


def _norms(rows: torch.Tensor) -> torch.Tensor:
    return rows.norm(dim=1, keepdim=True)


def rescale(rows: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Rows scaled to L2 norm ``norm`` ``(B, 1)``; all-zero rows stay zero."""
    return rows * (norm / _norms(rows).clamp_min(1e-12))


def binarize(features: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """``sign(f) * c`` with ``c`` per image so that the L2 norm is ``norm`` (default: kept)."""
    rows = _rows(features)
    target = _norms(rows) if norm is None else norm
    return rescale(torch.sign(rows), target).view_as(features)


def dropout(features: torch.Tensor, p: float = 0.5,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a random fraction ``p`` of the entries of each vector, keeping its L2 norm."""
    rows = _rows(features)
    keep = torch.rand(rows.shape, generator=generator).to(rows.device) >= p
    return rescale(rows * keep, _norms(rows)).view_as(features)


def drop_least(features: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Zero the fraction ``p`` of each vector's non-zero entries with the smallest magnitude,
    keeping its L2 norm."""
    rows = _rows(features)
    out = rows.clone()
    magnitude = rows.abs()
    for i in range(rows.shape[0]):  # the number of non-zero entries differs per image
        nonzero = magnitude[i].nonzero().squeeze(1)
        n_drop = int(p * nonzero.numel())
        if n_drop:
            order = magnitude[i, nonzero].argsort()
            out[i, nonzero[order[:n_drop]]] = 0
    return rescale(out, _norms(rows)).view_as(features)


def _then_binarize(drop: Callable[[torch.Tensor], torch.Tensor]):
    def perturb(features: torch.Tensor) -> torch.Tensor:
        return binarize(drop(features), norm=_norms(_rows(features)))
    return perturb


def perturbations(seed: int = 0) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The named perturbations (``none`` included), random ones seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "none": lambda f: f,
        "binarize": binarize,
        "dropout": lambda f: dropout(f, generator=gen),
        "drop-least": drop_least,
        "dropout+binarize": _then_binarize(lambda f: dropout(f, generator=gen)),
        "drop-least+binarize": _then_binarize(drop_least),
    }


NAMES = tuple(perturbations())
