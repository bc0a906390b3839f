"""Pure domain: models, hashing, audit chain, bucketing, state machines, statistics.

Nothing here performs I/O, reads a clock or draws unseeded random numbers, and
nothing here imports another part of the project except :mod:`releaser.errors`.
"""
