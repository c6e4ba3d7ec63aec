"""Conv2D: holds the weights and calls functional.conv2d / conv2d_backward."""
from __future__ import annotations

import numpy as np

from .. import _checks
from .._random import get_rng
from .. import functional as F
from .base import Layer


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as PyTorch), NCHW.

    weights: (out_channels, in_channels // groups, KH, KW), He-initialised;
    bias: (out_channels,) or None.  ``groups=in_channels`` is a depthwise
    convolution.  Gradients land in ``d_weights``/``d_bias``.
    """

    _params = ("weights", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, rng=None, dtype=np.float32, backend=None):
        super().__init__(backend)
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        self.out_channels = _checks.positive_int(out_channels, "out_channels")
        self.kernel_size = _checks.int_pair(kernel_size, "kernel_size")
        self.stride = _checks.int_pair(stride, "stride")
        self.padding = _checks.int_pair(padding, "padding", minimum=0)
        self.dilation = _checks.int_pair(dilation, "dilation")
        self.groups = _checks.positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        self.dtype = np.dtype(dtype)
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        self.weights = (get_rng(rng).standard_normal((out_channels, in_channels // groups, kh, kw))
                        * np.sqrt(2.0 / fan_in)).astype(self.dtype)
        self.bias = np.zeros(out_channels, self.dtype) if bias else None
        self.d_weights = np.zeros_like(self.weights)
        self.d_bias = np.zeros_like(self.bias) if bias else None
        self._cache = None

    def get_config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=list(self.padding), dilation=list(self.dilation), groups=self.groups,
                    bias=self.bias is not None, dtype=self.dtype.name)

    def _prepare(self, x):
        """x as a C-contiguous array of this layer's dtype, rank and channels
        checked (F.conv2d checks the geometry)."""
        x = self._input(x, 4, "(N, C, H, W)", self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self!r} expects {self.in_channels} input channels, got input of shape {x.shape}"
            )
        return np.ascontiguousarray(x)

    def forward(self, x):
        x = self._prepare(x)
        out, self._cache = F.conv2d(x, self.weights, self.bias, self.stride, self.padding, self.dilation,
                                    self.groups, backend=self.backend)
        return out

    def backward(self, d_out):
        return self._backward(d_out, input_grad=True)

    def backward_params_only(self, d_out):
        """d_weights and d_bias without the input gradient (first layer)."""
        self._backward(d_out, input_grad=False)

    def _backward(self, d_out, input_grad):
        cache = self._need_cache(self._cache)
        d_x, d_w, d_b = F.conv2d_backward(d_out, cache, input_grad=input_grad)
        self.d_weights[...] = d_w
        if self.bias is not None:
            self.d_bias[...] = d_b
        return d_x
