"""Where the code runs: the device and its number formats, torchrun's processes, the seed,
files written whole (never half), and how fast the machine computes.

The bottom layer, under everything but ``errors``; a learner need not read it.
"""
