"""Charts of analysis results (matplotlib, written to PNG)."""
from __future__ import annotations

from pathlib import Path


def perturbation_chart(result: dict, path: str | Path) -> Path:
    """The Figure 7-style chart: normalized error per layer, one curve per perturbation, plus
    the autoencoder curve when ``result["autoencoder"]`` has entries.

    ``result``: as written by ``featinv analyze perturb`` (``layers``: ``[{"layer", "errors":
    {perturbation: error}}]``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [row["layer"].split(".")[-1] for row in result["layers"]]
    names = list(result["layers"][0]["errors"]) if result["layers"] else []
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(layers) + 2), 3.6), dpi=120)
    for name in names:
        ax.plot(layers, [row["errors"][name] for row in result["layers"]], marker="o",
                label="no perturbation" if name == "none" else name,
                linewidth=2.2 if name == "none" else 1.4)
    auto = {row["layer"].split(".")[-1]: row["error"] for row in result.get("autoencoder", [])}
    if auto:
        xs = [layer for layer in layers if layer in auto]
        ax.plot(xs, [auto[x] for x in xs], marker="s", linestyle="--", color="black",
                label="autoencoder")
    ax.set_xlabel("layer")
    ax.set_ylabel("normalized reconstruction error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    from ..io.files import write_output

    try:
        return write_output(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
