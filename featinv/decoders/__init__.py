"""Decoders.

Decoder networks and the generic decoder builder (a built-in plugin).
"""
