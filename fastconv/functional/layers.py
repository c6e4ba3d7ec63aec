"""The functional form of the parameterised layers (CS231n's convention):
``conv2d``, ``linear`` and ``relu`` return ``(out, cache)``; their backward
functions take ``(d_out, cache)`` and return the gradients.  The layer classes
hold parameters, gradients and caches and call these; a new fast path (a
direct or depthwise convolution, say) plugs in here, not inside a layer.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _checks
from .im2col import col2im, im2col

# Largest column matrix (bytes) conv2d builds at once.  Bigger batches are cut
# into chunks of images: the full-batch im2col of a (128, 64, 32, 32) input
# would take 302 MB; chunks keep the extra memory near 2x this, with GEMMs
# still thousands of columns wide.
MAX_COL_BYTES = 16 * 2**20


class Conv2dCache(NamedTuple):
    """What conv2d_backward needs from the forward pass."""

    x: np.ndarray  # C-contiguous input
    weights: np.ndarray
    col: np.ndarray | None  # the column matrix when the batch was one chunk, else rebuilt per chunk
    chunk: int  # images per chunk
    out_hw: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    has_bias: bool
    backend: str | None


def conv_chunk(x_shape, kernel_hw, out_hw, itemsize, max_col_bytes=MAX_COL_BYTES) -> int:
    """Images per im2col chunk so a column matrix stays under max_col_bytes."""
    per_image = x_shape[1] * kernel_hw[0] * kernel_hw[1] * out_hw[0] * out_hw[1] * itemsize
    return max(1, min(x_shape[0], max_col_bytes // max(per_image, 1)))


def conv2d(x, weights, bias=None, stride=1, padding=0, dilation=1, groups=1, *, backend=None,
           max_col_bytes=MAX_COL_BYTES):
    """2-D convolution (cross-correlation, as PyTorch), NCHW: ``(out, cache)``.

    x (N, C, H, W); weights (F, C // groups, KH, KW); bias (F,) or None.
    ``OH = (H + 2*ph - dh*(KH-1) - 1)//sh + 1`` (OW alike).  im2col + one
    BLAS GEMM per group, in chunks of images.  ``out`` is an NCHW *view* of
    the GEMM's (F, N, OH, OW) result: no transpose copy (pooling and the
    elementwise layers work on it as it is)."""
    x = _checks.float_array(x, "x", ndim=4, layout="(N, C, H, W)")
    weights = _checks.float_array(weights, "weights", ndim=4, layout="(F, C/groups, KH, KW)")
    _checks.same_dtype(x, weights, "x", "weights")
    groups = _checks.positive_int(groups, "groups")
    f, cg, kh, kw = weights.shape
    n, c = x.shape[:2]
    if c != cg * groups or f % groups:
        raise ValueError(f"weights of shape {weights.shape} with groups={groups} expect {cg * groups} input "
                         f"channels and F divisible by groups; x has shape {x.shape}")
    stride, padding = _checks.int_pair(stride, "stride"), _checks.int_pair(padding, "padding", minimum=0)
    dilation = _checks.int_pair(dilation, "dilation")
    oh, ow = _checks.conv_output_size(*x.shape[2:], kh, kw, stride, padding, dilation)
    if bias is not None:
        bias = _checks.float_array(bias, "bias", ndim=1, layout="(F,)")
        if bias.shape != (f,):
            raise ValueError(f"bias has shape {bias.shape}; the weights have {f} filters")
    geometry = dict(stride=stride, padding=padding, dilation=dilation, backend=backend)
    L = oh * ow
    w_mat = weights.reshape(groups, f // groups, -1)
    chunk = conv_chunk(x.shape, (kh, kw), (oh, ow), x.dtype.itemsize, max_col_bytes)
    out = np.empty((f, n * L), dtype=x.dtype)  # (F, N*OH*OW): the GEMM's natural layout
    col = None
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        col = None  # free the previous chunk's columns before building the next
        col = im2col(x[n0:n1], kh, kw, **geometry)  # (C*KH*KW, nb*OH*OW)
        col_g = col.reshape(groups, -1, col.shape[1])  # group g's channels: a row block of col
        if chunk >= n:  # one chunk: the GEMM writes the output in place
            np.matmul(w_mat, col_g, out=out.reshape(groups, f // groups, -1))
        else:
            out[:, n0 * L:n1 * L] = np.matmul(w_mat, col_g).reshape(f, -1)
    if bias is not None:
        out += bias.astype(x.dtype, copy=False)[:, None]
    # keep the column matrix when it is the whole batch; otherwise keep x and
    # rebuild each chunk's columns in backward (cheap next to the GEMMs)
    cache = Conv2dCache(x, weights, col if chunk >= n else None, chunk, (oh, ow), stride, padding, dilation,
                        groups, bias is not None, backend)
    return out.reshape(f, n, oh, ow).transpose(1, 0, 2, 3), cache


def conv2d_backward(d_out, cache: Conv2dCache, *, input_grad=True):
    """``(d_x, d_weights, d_bias)`` of :func:`conv2d` (d_x None with
    input_grad=False; d_bias None without bias)."""
    if not isinstance(cache, Conv2dCache):
        raise TypeError("cache must be the Conv2dCache returned by conv2d")
    x, weights = cache.x, cache.weights
    n, (oh, ow), g = x.shape[0], cache.out_hw, cache.groups
    f, _, kh, kw = weights.shape
    L = oh * ow
    d_out = np.asarray(d_out, dtype=x.dtype)
    if d_out.shape != (n, f, oh, ow):
        raise ValueError(f"d_out has shape {d_out.shape}, but the forward output was {(n, f, oh, ow)}")
    geometry = dict(stride=cache.stride, padding=cache.padding, dilation=cache.dilation, backend=cache.backend)
    # d_out as (F, N*OH*OW) columns: free when d_out is the NCHW view of such
    # an array (what conv2d returns); otherwise each chunk's slice is
    # transposed on its own, so no full-size copy is made.
    d_cnhw = d_out.transpose(1, 0, 2, 3)
    whole = d_cnhw.reshape(f, n * L) if d_cnhw.flags.c_contiguous else None
    d_b = np.zeros(f) if cache.has_bias else None
    w_t = weights.reshape(g, f // g, -1).transpose(0, 2, 1)
    d_w = np.empty_like(weights)
    d_w_g = d_w.reshape(g, f // g, -1)
    d_x = np.empty(x.shape, dtype=x.dtype) if input_grad else None
    for n0 in range(0, n, cache.chunk):
        n1 = min(n, n0 + cache.chunk)
        col = d_col = None  # free the previous chunk's buffers first
        col = cache.col if cache.col is not None else im2col(x[n0:n1], kh, kw, **geometry)
        d_chunk = whole[:, n0 * L:n1 * L] if whole is not None else np.ascontiguousarray(d_cnhw[:, n0:n1]).reshape(f, -1)
        if d_b is not None:
            # a BLAS matrix-vector product: multithreaded, 5x faster than .sum(axis=1)
            d_b += d_chunk @ np.ones(d_chunk.shape[1], dtype=x.dtype)
        d_chunk = d_chunk.reshape(g, f // g, -1)
        grad_w = np.matmul(d_chunk, col.reshape(g, -1, col.shape[1]).transpose(0, 2, 1))
        if n0 == 0:
            d_w_g[...] = grad_w
        else:
            d_w_g += grad_w
        if input_grad:
            d_col = np.matmul(w_t, d_chunk).reshape(col.shape)
            col2im(d_col, (n1 - n0, *x.shape[1:]), kh, kw, out=d_x[n0:n1], **geometry)
    return d_x, d_w, (d_b.astype(x.dtype) if d_b is not None else None)


class LinearCache(NamedTuple):
    x: np.ndarray
    weights: np.ndarray
    has_bias: bool


def linear(x, weights, bias=None):
    """``(x @ weights + bias, cache)``; x (N, in), weights (in, out) as the
    guides' Dense, bias (out,) or None."""
    x = _checks.float_array(x, "x", ndim=2, layout="(N, in_features)")
    weights = _checks.float_array(weights, "weights", ndim=2, layout="(in_features, out_features)")
    _checks.same_dtype(x, weights, "x", "weights")
    if x.shape[1] != weights.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features but weights of shape {weights.shape} take {weights.shape[0]}")
    out = x @ weights
    if bias is not None:
        out += np.asarray(bias, dtype=x.dtype)
    return out, LinearCache(x, weights, bias is not None)


def linear_backward(d_out, cache: LinearCache):
    """``(d_x, d_weights, d_bias)`` of :func:`linear`."""
    if not isinstance(cache, LinearCache):
        raise TypeError("cache must be the LinearCache returned by linear")
    d_out = np.asarray(d_out, dtype=cache.x.dtype)
    if d_out.shape != (cache.x.shape[0], cache.weights.shape[1]):
        raise ValueError(f"d_out has shape {d_out.shape}; the forward output was "
                         f"{(cache.x.shape[0], cache.weights.shape[1])}")
    return d_out @ cache.weights.T, cache.x.T @ d_out, (d_out.sum(axis=0) if cache.has_bias else None)


def relu(x):
    """``(max(x, 0), cache)``; the cache is the output (positive where x was)."""
    x = np.asarray(x)
    out = np.maximum(x, x.dtype.type(0))  # a scalar of x's dtype: no upcast
    return out, out


def relu_backward(d_out, cache):
    """d_x of :func:`relu`: d_out where the output is positive, else 0."""
    d_out = np.asarray(d_out)
    if d_out.shape != cache.shape:
        raise ValueError(f"d_out has shape {d_out.shape}; the forward output was {cache.shape}")
    return d_out * (cache > 0)
