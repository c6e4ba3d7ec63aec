"""Pooling layers over fastconv.functional."""
from __future__ import annotations

import numpy as np

from .. import _checks
from .. import functional as F
from .base import Layer


def plane_major(x):
    """``(array, swapped)``: x itself if C-contiguous, else its (C, N, H, W)
    transpose if *that* is contiguous (a Conv2D output is), else a copy.
    Pooling is per (H, W) plane, so it runs on either layout unchanged."""
    if x.flags.c_contiguous:
        return x, False
    t = x.transpose(1, 0, 2, 3)
    if t.flags.c_contiguous:
        return t, True
    return np.ascontiguousarray(x), False


def _swap(a, swapped):
    return a.transpose(1, 0, 2, 3) if swapped else a


class _Pool(Layer):
    """Shared by the pooling layers: NCHW float input."""

    def _images(self, x):
        x = self._input(x, 4, "(N, C, H, W)")
        return x if x.dtype.kind == "f" else x.astype("float32")


class _WindowPool(_Pool):
    """A pooling window: pool_size, stride (default: pool_size), padding."""

    def __init__(self, pool_size=2, stride=None, padding=0, *, backend=None):
        super().__init__(backend)
        self.pool_size = _checks.int_pair(pool_size, "pool_size")
        self.stride = self.pool_size if stride is None else _checks.int_pair(stride, "stride")
        self.padding = _checks.int_pair(padding, "padding", minimum=0)
        self._cache = None

    def get_config(self):
        return dict(pool_size=list(self.pool_size), stride=list(self.stride), padding=list(self.padding))


class MaxPool2D(_WindowPool):
    """Max pooling; keeps the winners' indices to route gradients back.
    ceil_mode: round the output size up (PyTorch's ``ceil_mode``)."""

    def __init__(self, pool_size=2, stride=None, padding=0, *, ceil_mode=False, backend=None):
        super().__init__(pool_size, stride, padding, backend=backend)
        if not isinstance(ceil_mode, bool):
            raise TypeError(f"ceil_mode must be True or False, got {ceil_mode!r}")
        self.ceil_mode = ceil_mode

    def get_config(self):
        # only when set: files of floor-mode models stay as they were
        return {**super().get_config(), **({"ceil_mode": True} if self.ceil_mode else {})}

    def forward(self, x):
        x = self._images(x)
        xp, swapped = plane_major(x)
        out, indices = F.max_pool2d(xp, self.pool_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                                    backend=self.backend)
        self._cache = (indices, xp.shape, swapped)
        # The pooled output is small: hand it on C-contiguous, so the next
        # elementwise layers and im2col run on plain NCHW memory.
        return np.ascontiguousarray(_swap(out, swapped))

    def backward(self, d_out):
        indices, xp_shape, swapped = self._need_cache(self._cache)
        d_out = _swap(np.asarray(d_out), swapped)
        return _swap(F.max_pool2d_backward(d_out, indices, xp_shape, backend=self.backend), swapped)


class AvgPool2D(_WindowPool):
    """Average pooling (zero padding counted in the divisor)."""

    def forward(self, x):
        x = self._images(x)
        self._cache = x.shape
        return F.avg_pool2d(x, self.pool_size, self.stride, self.padding, backend=self.backend)

    def backward(self, d_out):
        x_shape = self._need_cache(self._cache)
        return F.avg_pool2d_backward(d_out, x_shape, self.pool_size, self.stride, self.padding,
                                     backend=self.backend)


class GlobalAvgPool2D(_Pool):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""

    def __init__(self, *, backend=None):
        super().__init__(backend)
        self._x_shape = None

    def forward(self, x):
        x = self._images(x)
        self._x_shape = x.shape
        return F.global_avg_pool2d(x, backend=self.backend)

    def backward(self, d_out):
        return F.global_avg_pool2d_backward(d_out, self._need_cache(self._x_shape), backend=self.backend)


class AdaptiveAvgPool2D(_Pool):
    """Average over PyTorch's adaptive bins to a fixed output size."""

    def __init__(self, output_size, *, backend=None):
        super().__init__(backend)
        self.output_size = _checks.int_pair(output_size, "output_size")
        self._x_shape = None

    def get_config(self):
        return dict(output_size=list(self.output_size))

    def forward(self, x):
        x = self._images(x)
        self._x_shape = x.shape
        return F.adaptive_avg_pool2d(x, self.output_size, backend=self.backend)

    def backward(self, d_out):
        x_shape = self._need_cache(self._x_shape)
        d_out = np.asarray(d_out)
        expected = (*x_shape[:2], *self.output_size)
        if d_out.shape != expected:
            raise ValueError(f"{self!r}: d_out has shape {d_out.shape}, but the forward output was {expected}")
        return F.adaptive_avg_pool2d_backward(d_out, x_shape, backend=self.backend)
