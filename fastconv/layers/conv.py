"""Conv2D: im2col + one BLAS GEMM per group forward, GEMMs + col2im backward."""
from __future__ import annotations

import numpy as np

from .. import _checks
from .._random import get_rng
from ..functional import col2im, im2col
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

    def _geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, backend=self.backend)

    def forward(self, x):
        x = self._input(x, 4, "(N, C, H, W)", self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self!r} expects {self.in_channels} input channels, got input of shape {x.shape}"
            )
        n = x.shape[0]
        kh, kw = self.kernel_size
        col = im2col(x, kh, kw, **self._geometry())  # (C*KH*KW, N*OH*OW)
        oh, ow = _checks.conv_output_size(*x.shape[2:], kh, kw, self.stride, self.padding, self.dilation)
        g = self.groups
        w_mat = self.weights.reshape(g, self.out_channels // g, -1)
        col_g = col.reshape(g, -1, col.shape[1])  # group g's input channels are a row block
        out = np.matmul(w_mat, col_g).reshape(self.out_channels, n * oh * ow)
        if self.bias is not None:
            out += self.bias[:, None]
        self._cache = (x.shape, col)
        # An NCHW *view* of the (F, N, OH, OW) GEMM result: no transpose copy.
        # Elementwise layers keep this layout, pooling works on it in place
        # (see MaxPool2D), and backward gets d_out in it for free.
        return out.reshape(self.out_channels, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, d_out):
        d_mat = self._param_grads(d_out)
        x_shape, col = self._cache
        g, f = self.groups, self.out_channels
        w_mat = self.weights.reshape(g, f // g, -1)
        d_col = np.matmul(w_mat.transpose(0, 2, 1), d_mat).reshape(col.shape)
        kh, kw = self.kernel_size
        return col2im(d_col, x_shape, kh, kw, **self._geometry())

    def backward_params_only(self, d_out):
        """d_weights and d_bias without the input gradient (first layer)."""
        self._param_grads(d_out)

    def _param_grads(self, d_out):
        """Fill d_weights/d_bias; return d_out as (groups, F/groups, N*OH*OW)."""
        x_shape, col = self._need_cache(self._cache)
        d_out = np.asarray(d_out, dtype=self.dtype)
        n, f = x_shape[0], self.out_channels
        if d_out.ndim != 4 or d_out.shape[:2] != (n, f) or d_out.shape[0] * d_out.shape[2] * d_out.shape[3] != col.shape[1]:
            raise ValueError(f"{self!r}: d_out has shape {d_out.shape}, but the forward output was "
                             f"({n}, {f}, OH, OW) with N*OH*OW = {col.shape[1]}")
        g = self.groups
        d_mat = np.ascontiguousarray(d_out.transpose(1, 0, 2, 3)).reshape(g, f // g, -1)
        col_g = col.reshape(g, -1, col.shape[1])
        np.matmul(d_mat, col_g.transpose(0, 2, 1), out=self.d_weights.reshape(g, f // g, -1))
        if self.bias is not None:
            self.d_bias[...] = d_mat.reshape(f, -1).sum(axis=1)
        return d_mat
