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


def reidentification_chart(result: dict, path: str | Path | None = None) -> bytes:
    """Cumulative match curves of an audit (``featinv audit``'s JSON): for each representation
    the fraction of reconstructions whose original ranks in the top k, against k, in the
    independent space (solid) and the representation's own (dashed), with chance (k / N,
    dotted). Returns the PNG's bytes (and writes them to ``path`` when given)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = result["n_images"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    ks = list(range(1, n + 1))
    for i, row in enumerate(result["representations"]):
        color = f"C{i % 10}"
        if row["independent"]:
            ax.plot(ks, row["independent"]["cmc"], color=color, linewidth=2,
                    label=f"{row['label']} (independent)")
        ax.plot(ks, row["own"]["cmc"], color=color, linestyle="--", linewidth=1.2,
                label=f"{row['label']} (own features)")
    ax.plot(ks, [k / n for k in ks], color="gray", linestyle=":", label="chance (k / N)")
    ax.set_xscale("log")
    ax.set_xlim(1, n)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"k (rank among N = {n} photos)")
    ax.set_ylabel("original ranked in top k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    data = buffer.getvalue()
    if path is not None:
        from ..io.files import write_output

        write_output(path, lambda tmp: Path(tmp).write_bytes(data))
    return data
