"""Data augmentation for NCHW image batches, and a seeded mini-batch iterator."""
from __future__ import annotations

import numpy as np


def _images(x):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {x.shape}")
    return x


def random_shift(x, max_shift=2, rng=None):
    """Translate each image by up to ``max_shift`` pixels in x and y (the
    guides' random_shift); uncovered pixels are zero."""
    x = _images(x)
    rng = np.random.default_rng(rng)
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy = rng.integers(0, 2 * max_shift + 1, n)
    dx = rng.integers(0, 2 * max_shift + 1, n)
    # gather each image's window in one fancy-indexing step
    rows = dy[:, None] + np.arange(h)[None, :]  # (N, H)
    cols = dx[:, None] + np.arange(w)[None, :]  # (N, W)
    return padded[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def random_crop(x, padding=4, rng=None):
    """Zero-pad by ``padding`` then crop back to the original size at a
    random offset (the CIFAR recipe); the same as random_shift(max_shift=padding)."""
    return random_shift(x, padding, rng)


def horizontal_flip(x, p=0.5, rng=None):
    """Mirror each image left-right with probability ``p``."""
    x = _images(x)
    rng = np.random.default_rng(rng)
    flip = rng.random(len(x)) < p
    out = x.copy()
    out[flip] = x[flip, :, :, ::-1]
    return out


def batches(x, y, batch_size, shuffle=True, rng=None, drop_last=False):
    """Yield (x_batch, y_batch) pairs; with ``shuffle`` a new permutation per
    call, reproducible through ``rng`` (a seed or Generator)."""
    n = len(x)
    if len(y) != n:
        raise ValueError(f"{n} inputs but {len(y)} labels")
    order = np.random.default_rng(rng).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
