"""Elementwise layers: ReLU, LeakyReLU, Sigmoid, Softmax, Dropout, Dropout2D."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._random import get_rng
from .base import Layer


class ReLU(Layer):
    def __init__(self):
        super().__init__()
        self._out = None

    def forward(self, x):
        out, self._out = F.relu(x, backend=self.backend)
        return out

    def backward(self, d_out):
        return F.relu_backward(d_out, self._need_cache(self._out), backend=self.backend)


class ReLU6(Layer):
    """min(max(x, 0), 6) (MobileNet's activation)."""

    def __init__(self):
        super().__init__()
        self._out = None

    def forward(self, x):
        x = np.asarray(x)
        self._out = np.clip(x, x.dtype.type(0), x.dtype.type(6))
        return self._out

    def backward(self, d_out):
        out = self._need_cache(self._out)
        return np.asarray(d_out) * ((out > 0) & (out < 6))


class LeakyReLU(Layer):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)
        self._mask = None

    def get_config(self):
        return dict(negative_slope=self.negative_slope)

    def forward(self, x):
        x = np.asarray(x)
        self._mask = x > 0
        return np.where(self._mask, x, x * x.dtype.type(self.negative_slope))

    def backward(self, d_out):
        d_out = np.asarray(d_out)
        return np.where(self._need_cache(self._mask), d_out, d_out * d_out.dtype.type(self.negative_slope))


class Sigmoid(Layer):
    def __init__(self):
        super().__init__()
        self._out = None

    def forward(self, x):
        x = np.asarray(x)
        # split by sign: exp never overflows
        e = np.exp(-np.abs(x))
        self._out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self._out

    def backward(self, d_out):
        s = self._need_cache(self._out)
        return d_out * s * (1 - s)


class Softmax(Layer):
    """Softmax over the last axis.  backward is the exact Jacobian-vector
    product, so dL/dprobs passed through it gives dL/dlogits."""

    def __init__(self):
        super().__init__()
        self._out = None

    def forward(self, x):
        x = np.asarray(x)
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        self._out = e / e.sum(axis=-1, keepdims=True)
        return self._out

    def backward(self, d_out):
        p = self._need_cache(self._out)
        return p * (d_out - (d_out * p).sum(axis=-1, keepdims=True))


class Dropout(Layer):
    """Inverted dropout: in training zero each value with probability p and
    scale the rest by 1/(1-p); identity in eval."""

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = get_rng(rng)
        self._mask = None

    def get_config(self):
        return dict(p=self.p)

    def _mask_shape(self, x):
        return x.shape

    def forward(self, x):
        x = np.asarray(x)
        if not self.training or self.p == 0:
            self._mask = None
            return x
        keep = self.rng.random(self._mask_shape(x)) >= self.p
        self._mask = (keep / (1 - self.p)).astype(x.dtype)
        return x * self._mask

    def backward(self, d_out):
        return d_out if self._mask is None else d_out * self._mask


class Dropout2D(Dropout):
    """Drops whole channels of (N, C, H, W) input."""

    def _mask_shape(self, x):
        if x.ndim != 4:
            raise ValueError(f"Dropout2D expects (N, C, H, W) input, got shape {x.shape}")
        return x.shape[:2] + (1, 1)


class Normalize(Layer):
    """(x - mean) / std with fixed constants: input normalisation kept inside
    the model, so a saved model takes raw [0, 1] images.  ``mean`` and ``std``
    are numbers, or one per channel of (N, C, H, W) input (CIFAR-10's)."""

    def __init__(self, mean=0.0, std=1.0):
        super().__init__()
        mean_a, std_a = np.atleast_1d(np.asarray(mean, dtype=np.float64)), np.atleast_1d(np.asarray(std, dtype=np.float64))
        if mean_a.ndim != 1 or std_a.ndim != 1 or len(mean_a) != len(std_a) and 1 not in (len(mean_a), len(std_a)):
            raise ValueError(f"mean and std must be numbers or one per channel, got {mean!r} and {std!r}")
        if not (std_a > 0).all():
            raise ValueError(f"std must be positive, got {std}")
        self.mean = float(mean_a[0]) if mean_a.size == 1 else [float(v) for v in mean_a]
        self.std = float(std_a[0]) if std_a.size == 1 else [float(v) for v in std_a]

    def get_config(self):
        return dict(mean=self.mean, std=self.std)

    def _per_channel(self, v, x):
        if isinstance(v, float):
            return v
        if x.ndim != 4 or x.shape[1] != len(v):
            raise ValueError(f"{self!r} has {len(v)} per-channel constants; the input has shape {x.shape}")
        return np.asarray(v)[None, :, None, None]

    def forward(self, x):
        x = np.asarray(x)
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
        self._x_ndim = x.ndim
        return ((x - self._per_channel(self.mean, x)) / self._per_channel(self.std, x)).astype(dtype, copy=False)

    def backward(self, d_out):
        d_out = np.asarray(d_out)
        return (d_out / self._per_channel(self.std, d_out)).astype(d_out.dtype, copy=False)
