"""Training.

Training decoders: the loop, its configuration, steps, data, losses and distributed runs.
"""
