"""Representations.

Feature representations: specs, layouts, the plugin machinery, the registry and extraction.
"""
