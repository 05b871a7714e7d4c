"""Datasets.

Image folders, crops and batches for training and evaluation, and the feature cache.
"""
