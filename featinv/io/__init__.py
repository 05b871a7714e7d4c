"""Input and output.

File formats, safe writes and image reading.
"""
