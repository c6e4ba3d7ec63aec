"""Dense (fully connected) and Flatten."""
from __future__ import annotations

import numpy as np

from .. import _checks
from .. import functional as F
from .._random import get_rng
from .base import Layer


class Dense(Layer):
    """out = x @ weights + bias; weights (in_features, out_features), He init."""

    _params = ("weights", "bias")

    def __init__(self, in_features, out_features, bias=True, *, rng=None, dtype=np.float32, backend=None):
        super().__init__(backend)
        self.in_features = _checks.positive_int(in_features, "in_features")
        self.out_features = _checks.positive_int(out_features, "out_features")
        self.dtype = np.dtype(dtype)
        self.weights = (get_rng(rng).standard_normal((in_features, out_features))
                        * np.sqrt(2.0 / in_features)).astype(self.dtype)
        self.bias = np.zeros(out_features, self.dtype) if bias else None
        self.d_weights = np.zeros_like(self.weights)
        self.d_bias = np.zeros_like(self.bias) if bias else None
        self._x = None

    def get_config(self):
        return dict(in_features=self.in_features, out_features=self.out_features,
                    bias=self.bias is not None, dtype=self.dtype.name)

    def forward(self, x):
        x = self._input(x, 2, "(N, features)", self.dtype)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"{self!r} expects {self.in_features} input features, got input of shape {x.shape} "
                f"({x.shape[1]} features); check the layer before it (a Flatten after a conv/pool "
                f"gives C*H*W features)"
            )
        out, self._x = F.linear(x, self.weights, self.bias, backend=self.backend)
        return out

    def backward(self, d_out):
        return self._backward(d_out, input_grad=True)

    def backward_params_only(self, d_out):
        """d_weights and d_bias without the input gradient (first layer)."""
        self._backward(d_out, input_grad=False)

    def _backward(self, d_out, input_grad):
        cache = self._need_cache(self._x)
        d_x, self.d_weights[...], d_b = F.linear_backward(d_out, cache, input_grad=input_grad)
        if self.bias is not None:
            self.d_bias[...] = d_b
        return d_x


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"Flatten expects a batch (N, ...), got shape {x.shape}")
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, d_out):
        return np.asarray(d_out).reshape(self._need_cache(self._shape))
