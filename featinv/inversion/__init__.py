"""Inversion.

Inverting features: loading decoders, the inversion methods, optimisation, shipped decoders.
"""
