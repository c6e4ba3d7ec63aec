"""One seedable source of randomness for weight init and dropout.

``fastconv.seed(n)`` makes everything created afterwards deterministic;
layers with randomness also take an explicit ``rng=`` (a NumPy Generator or
an int seed) that overrides it.
"""
from __future__ import annotations

import numpy as np

_global = np.random.default_rng()


def seed(n: int) -> None:
    """Reseed fastconv's global generator (weight init, dropout masks)."""
    global _global
    _global = np.random.default_rng(n)


def get_rng(rng=None) -> np.random.Generator:
    """``rng`` as a Generator: itself, a new one from an int seed, or a child
    of the global generator (so layers built after seed(n) are reproducible)."""
    if rng is None:
        return np.random.default_rng(_global.integers(2**63))
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)
