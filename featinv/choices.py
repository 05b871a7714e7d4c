"""The names users can pass for settings with a fixed set of values, as plain data.

Importable without PyTorch, so the command line can offer them as choices (and refuse anything
else while parsing) before any heavy import. The modules that act on a name
(``featinv.decoders.networks``, ``featinv.representation.spec``, ``featinv.precision``, ``featinv.datasets.feature_cache``) take their tables from
here.
"""
from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"width": 1.0, "style": "paper",
              "help": "the paper's networks and channel widths (supplementary Tables 3-7)"},
    "compact": {"width": 0.25, "style": "paper",
                "help": "the paper's networks at a quarter of their widths; trains at a useful "
                        "speed on a laptop CPU"},
    "residual": {"width": 0.25, "style": "residual",
                 "help": "residual U-Net over the feature grid with batch norm and "
                         "resize-convolutions; the shipped decoders use it (v1 at x0.125 "
                         "and x0.25); the default of featinv train"},
    "residual_fine": {"width": 0.3125, "style": "residual",
                      "body": {"blocks": 6, "top": 512, "up": 3.0},
                      "help": "the residual U-Net with its capacity moved to fine scales: 6 "
                              "residual blocks at the grid, an up-sampling path 3x wider, the "
                              "coarse levels capped at 512 x width channels (closer to the "
                              "paper's widths near the image; about 3x the compute, and on LBP no better "
                              "per image seen than residual x0.25: results.md)"},
}
DEFAULT_PRESET = "compact"
# the decoder families of the generic builder, each with the layout kind it takes: the one list
# (``FeatureSpec.decoder_family`` accepts these or "auto"; featinv.decoders.networks builds them)
DECODER_FAMILIES: dict[str, str] = {"two_stream": "grid", "contract_expand": "grid",
                                    "conv_upconv": "grid", "fc_upconv": "vector"}
PRECISIONS = ("fp32", "bf16", "fp16")  # the decoder's compute dtype under autocast
SCHEDULES = ("linear", "onecycle", "cosine", "step", "constant")  # learning rate over a run
PIXEL_DISTANCES = ("l2", "l1")  # the pixel loss's distance (training only; scores stay l2)
DATA_STORES = ("auto", "memory", "files")  # where decoded training images live
CACHE_DTYPES = ("float16", "float32")  # how the feature cache stores features
# training loss terms and their default weights (featinv.training.losses)
LOSSES = {"pixel": 1.0, "feature": 0.05, "adversarial": 0.005}
# how ``invert``/``evaluate`` invert (featinv.inversion.methods)
METHODS = ("decoder", "optimize")
# feature perturbations of the paper's section 5.4 (featinv.analysis.perturb), "none" first
PERTURBATIONS = ("none", "binarize", "dropout", "drop-least", "dropout+binarize",
                 "drop-least+binarize")
# how ``analyze sample`` draws random features (featinv.analysis.analyses.FeatureSampler)
SAMPLERS = ("histogram", "gaussian")
