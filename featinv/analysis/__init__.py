"""Analysis.

Evaluation, metrics, perturbation analyses, plots, perceptual comparisons, visualisation.
"""
