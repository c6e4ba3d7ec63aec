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

    # Largest column matrix (bytes) built at once.  Bigger batches are cut
    # into chunks of images: the full-batch im2col of a (128, 64, 32, 32)
    # input would take 302 MB; chunks keep the extra memory near 2x this,
    # with GEMMs still thousands of columns wide.
    max_col_bytes = 16 * 2**20

    def _chunk(self, x_shape, oh, ow):
        c, (kh, kw) = x_shape[1], self.kernel_size
        per_image = c * kh * kw * oh * ow * self.dtype.itemsize
        return max(1, min(x_shape[0], self.max_col_bytes // max(per_image, 1)))

    def _prepare(self, x):
        """x as a C-contiguous array of this layer's dtype, checked; and (OH, OW)."""
        x = self._input(x, 4, "(N, C, H, W)", self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self!r} expects {self.in_channels} input channels, got input of shape {x.shape}"
            )
        kh, kw = self.kernel_size
        oh, ow = _checks.conv_output_size(*x.shape[2:], kh, kw, self.stride, self.padding, self.dilation)
        return np.ascontiguousarray(x), oh, ow

    def _remember_input(self, x, oh, ow):
        """Cache for backward without the column matrix (rebuilt per chunk)."""
        self._cache = (x, None, self._chunk(x.shape, oh, ow), oh, ow)

    def forward(self, x):
        x, oh, ow = self._prepare(x)
        n = x.shape[0]
        kh, kw = self.kernel_size
        g, f, L = self.groups, self.out_channels, oh * ow
        w_mat = self.weights.reshape(g, f // g, -1)
        chunk = self._chunk(x.shape, oh, ow)
        out = np.empty((f, n * L), dtype=self.dtype)  # (F, N*OH*OW): the GEMM's natural layout
        for n0 in range(0, n, chunk):
            n1 = min(n, n0 + chunk)
            col = None  # free the previous chunk's columns before building the next
            col = im2col(x[n0:n1], kh, kw, **self._geometry())  # (C*KH*KW, nb*OH*OW)
            col_g = col.reshape(g, -1, col.shape[1])  # group g's channels: a row block of col
            if chunk >= n:  # one chunk: the GEMM writes the output in place
                np.matmul(w_mat, col_g, out=out.reshape(g, f // g, -1))
            else:
                out[:, n0 * L:n1 * L] = np.matmul(w_mat, col_g).reshape(f, -1)
        if self.bias is not None:
            out += self.bias[:, None]
        # Keep the column matrix when it is the whole batch; otherwise keep x
        # and rebuild each chunk's columns in backward (cheap next to the GEMMs).
        self._cache = (x, col if chunk >= n else None, chunk, oh, ow)
        # An NCHW *view* of the (F, N, OH, OW) result: no transpose copy.
        # Elementwise layers keep this layout, pooling works on it in place
        # (see MaxPool2D), and backward gets d_out in it for free.
        return out.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, d_out):
        return self._backward(d_out, input_grad=True)

    def backward_params_only(self, d_out):
        """d_weights and d_bias without the input gradient (first layer)."""
        self._backward(d_out, input_grad=False)

    def _backward(self, d_out, input_grad):
        x, full_col, chunk, oh, ow = self._need_cache(self._cache)
        d_out = np.asarray(d_out, dtype=self.dtype)
        n, f, g, L = x.shape[0], self.out_channels, self.groups, oh * ow
        if d_out.shape != (n, f, oh, ow):
            raise ValueError(f"{self!r}: d_out has shape {d_out.shape}, but the forward output was "
                             f"{(n, f, oh, ow)}")
        # d_out as (F, N*OH*OW) columns: free when d_out is the NCHW view of
        # such an array (what forward returns); otherwise each chunk's slice
        # is transposed on its own, so no full-size copy is made.
        d_cnhw = d_out.transpose(1, 0, 2, 3)
        whole = d_cnhw.reshape(f, n * L) if d_cnhw.flags.c_contiguous else None
        d_bias = np.zeros(f) if self.bias is not None else None
        kh, kw = self.kernel_size
        w_t = self.weights.reshape(g, f // g, -1).transpose(0, 2, 1)
        d_w = self.d_weights.reshape(g, f // g, -1)
        d_x = np.empty(x.shape, dtype=self.dtype) if input_grad else None
        for n0 in range(0, n, chunk):
            n1 = min(n, n0 + chunk)
            col = d_col = None  # free the previous chunk's buffers first
            col = full_col if full_col is not None else im2col(x[n0:n1], kh, kw, **self._geometry())
            if whole is not None:
                d_chunk = whole[:, n0 * L:n1 * L]
            else:
                d_chunk = np.ascontiguousarray(d_cnhw[:, n0:n1]).reshape(f, -1)
            if d_bias is not None:
                # a BLAS matrix-vector product: multithreaded, 5x faster than .sum(axis=1)
                d_bias += d_chunk @ np.ones(d_chunk.shape[1], dtype=self.dtype)
            d_chunk = d_chunk.reshape(g, f // g, -1)
            grad_w = np.matmul(d_chunk, col.reshape(g, -1, col.shape[1]).transpose(0, 2, 1))
            if n0 == 0:
                d_w[...] = grad_w
            else:
                d_w += grad_w
            if input_grad:
                d_col = np.matmul(w_t, d_chunk).reshape(col.shape)
                col2im(d_col, (n1 - n0, *x.shape[1:]), kh, kw, out=d_x[n0:n1], **self._geometry())
        if d_bias is not None:
            self.d_bias[...] = d_bias
        return d_x
