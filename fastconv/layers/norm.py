"""BatchNorm layers over fastconv.functional.batch_norm_*."""
from __future__ import annotations

import numpy as np

from .. import _checks
from .. import functional as F
from .base import Layer


class _BatchNorm(Layer):
    _params = ("gamma", "beta")
    _buffers = ("running_mean", "running_var")
    _ndim = 4
    _layout = "(N, C, H, W)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, dtype=np.float32, backend=None):
        super().__init__(backend)
        self.num_features = _checks.positive_int(num_features, "num_features")
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.dtype = np.dtype(dtype)
        self.gamma = np.ones(num_features, self.dtype)
        self.beta = np.zeros(num_features, self.dtype)
        self.d_gamma = np.zeros_like(self.gamma)
        self.d_beta = np.zeros_like(self.beta)
        self.running_mean = np.zeros(num_features, self.dtype)
        self.running_var = np.ones(num_features, self.dtype)
        self._cache = None
        # set by fastconv.distributed.DataParallel(sync_batchnorm=True): sums
        # the statistics over every process (not saved with the model)
        self.reduce = None

    def get_config(self):
        return dict(num_features=self.num_features, eps=self.eps, momentum=self.momentum,
                    dtype=self.dtype.name)

    def forward(self, x):
        x = self._input(x, self._ndim, self._layout, self.dtype)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self!r} expects {self.num_features} channels, got input of shape {x.shape}")
        out, self._cache = F.batch_norm_forward(
            x, self.gamma, self.beta, self.running_mean, self.running_var, training=self.training,
            momentum=self.momentum, eps=self.eps, reduce=self.reduce, backend=self.backend)
        return out

    def backward(self, d_out):
        cache = self._need_cache(self._cache)
        d_x, d_gamma, d_beta = F.batch_norm_backward(np.asarray(d_out, dtype=self.dtype), cache)
        self.d_gamma[...] = d_gamma
        self.d_beta[...] = d_beta
        return d_x


class BatchNorm2D(_BatchNorm):
    """Per-channel BatchNorm of (N, C, H, W) input; batch statistics in
    training, running statistics in eval."""


class BatchNorm1D(_BatchNorm):
    """Per-feature BatchNorm of (N, C) input (e.g. after Dense)."""

    _ndim = 2
    _layout = "(N, C)"
