"""Command line.

The ``featinv`` command line, a thin layer over the Python API.
"""
