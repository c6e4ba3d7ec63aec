"""A convolution fused with the max pool that follows it.

When C*KH*KW is small -- a first layer on 1-channel images has 9 -- an im2col
GEMM has an inner dimension of 9 and the layer is memory bound: its
full-resolution output is written, read back by the pool, and in backward a
gradient of that size is scattered and multiplied again.  ``conv2d_maxpool``
then computes each output plane in cache and writes only the pooled result
and its indices.  With more taps it runs im2row + GEMM + a pool over the
GEMM's rows (C backend), or the direct kernel (others).

The gradients read only the pooled gradient, at the winners
(``conv2d_maxpool_backward_params`` / ``_input``): a quarter of the
multiply-adds of dense backward GEMMs for a 2x2 pool.  CNN runs
Conv2D -> ReLU -> MaxPool2D through them (see ``CNN._schedule``).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import _checks, backends
from .im2col import conv_geometry
from .pooling import pool_geometry


# C*KH*KW up to which conv2d_maxpool computes the convolution directly (the
# output plane in registers): a 1-channel 3x3 or 5x5 kernel.  Beyond, on the
# backends that say CONV_MAXPOOL_VIA_ROWS, im2row + GEMM + pool is faster --
# unless the backend's conv_maxpool_direct(cg, pg) says its kernel is fast on
# that geometry too (C's phase kernels: up to 75 taps with a 2x2/2 pool).
DIRECT_MAX_TAPS = 25
# Largest im2row matrix (bytes) built at once; bigger batches run in chunks.
MAX_ROW_BYTES = 16 * 2**20


def _geometries(x_shape, w_shape, stride, padding, dilation, pool_size, pool_stride):
    """(ConvGeometry, PoolGeometry) of the convolution and of the pool over its output."""
    f, c, fh, fw = w_shape
    if c != x_shape[1]:
        raise ValueError(
            f"weights of shape {tuple(w_shape)} expect {c} input channels, but x has shape "
            f"{tuple(x_shape)}; weights must be (F, C, KH, KW) with C = x.shape[1] (groups=1)"
        )
    cg = conv_geometry(x_shape, fh, fw, stride, padding, dilation, f=f)
    pg = pool_geometry((cg.n, f, cg.oh, cg.ow), pool_size, pool_stride, 0)
    _checks.within_index_range("the convolution's multiply-adds", cg.n, f, c, fh, fw, cg.oh, cg.ow)
    return cg, pg


def conv2d_maxpool(x, weights, bias=None, stride=1, padding=0, dilation=1, pool_size=2,
                   pool_stride=None, *, relu=False, backend=None):
    """``max_pool2d(conv2d(x, weights, bias), pool_size, pool_stride)`` in one pass.

    x (N, C, H, W); weights (F, C, KH, KW); bias (F,) or None.  The pool has
    no padding.  Returns ``(out, indices)``, both (N, F, PH, PW): indices are
    the winners' flat positions ``h*OW + w`` in the convolution's (OH, OW)
    output plane, exactly as ``max_pool2d`` of the convolution would give.
    ``relu=True`` applies a ReLU to ``out`` (in place: max commutes with it);
    pass that ``out`` as ``relu_out`` to the backward functions."""
    x = _checks.float_array(x, "x", ndim=4, layout="(N, C, H, W)")
    weights = _checks.float_array(weights, "weights", ndim=4, layout="(F, C, KH, KW)")
    _checks.same_dtype(x, weights, "x", "weights")
    cg, pg = _geometries(x.shape, weights.shape, stride, padding, dilation, pool_size, pool_stride)
    n, f, poh, pow_ = pg.n, pg.c, pg.oh, pg.ow
    if bias is None:
        bias = np.zeros(f, dtype=x.dtype)
    bias = _checks.float_array(bias, "bias", ndim=1, layout="(F,)")
    _checks.same_dtype(x, bias, "x", "bias")
    if bias.shape != (f,):
        raise ValueError(f"bias has shape {bias.shape}; the weights have {f} filters, so it must be ({f},)")
    out = np.empty((n, f, poh, pow_), dtype=x.dtype)
    indices = np.empty((n, f, poh, pow_), dtype=np.int64)
    kernels = backends.resolve(backend)
    if (cg.c * cg.kh * cg.kw > DIRECT_MAX_TAPS and kernels.CONV_MAXPOOL_VIA_ROWS
            and not kernels.conv_maxpool_direct(cg, pg)):
        _gemm_conv_maxpool(kernels, x, weights, bias, out, indices, cg, pg)
    else:
        kernels.conv_maxpool_fwd(x, weights, bias, out, indices, cg, pg)
    if relu:
        np.maximum(out, out.dtype.type(0), out=out)
    return out, indices


def _gemm_conv_maxpool(kernels, x, weights, bias, out, indices, cg, pg):
    """conv2d_maxpool for many taps: per chunk of images, im2row (only the
    outputs the pool reads), one GEMM with the weights in the rows' tap order
    (i, j, ch), then the pool over the GEMM's (position, filter) rows."""
    n, f = cg.n, cg.f
    uh, uw = min(cg.oh, (pg.oh - 1) * pg.sh + pg.kh), min(cg.ow, (pg.ow - 1) * pg.sw + pg.kw)
    taps = cg.c * cg.kh * cg.kw
    # (taps, F), taps ordered (i, j, ch) as the rows; contiguous: OpenBLAS ran
    # this GEMM ~10 % faster than with a transposed view of (F, taps)
    w_taps = np.ascontiguousarray(weights.transpose(2, 3, 1, 0)).reshape(taps, f)
    chunk = max(1, min(n, MAX_ROW_BYTES // (uh * uw * taps * x.itemsize)))
    rows = np.empty((chunk * uh * uw, taps), dtype=x.dtype)
    y = np.empty((chunk * uh * uw, f), dtype=x.dtype)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        m = (n1 - n0) * uh * uw
        kernels.im2row(x[n0:n1], rows[:m], cg._replace(n=n1 - n0), uh, uw)
        np.matmul(rows[:m], w_taps, out=y[:m])
        kernels.rows_maxpool(y[:m], bias, out[n0:n1], indices[n0:n1], pg._replace(n=n1 - n0), uh, uw)


def conv2d_maxpool_backward_params(x, d_out, indices, weights_shape, stride=1, padding=0, dilation=1,
                                   pool_size=2, pool_stride=None, *, relu_out=None, backend=None):
    """Gradients of :func:`conv2d_maxpool` with respect to the weights and
    the bias (not x), from d_out and the indices it returned (N, F, PH, PW).
    Returns ``(d_weights, d_bias)``, shaped weights_shape and (F,).
    ``relu_out``: the output of ``conv2d_maxpool(..., relu=True)``; d_out is
    then the gradient of that output and counts only where it is > 0 (the
    ReLU's backward, done inside the kernel)."""
    x = _checks.float_array(x, "x", ndim=4, layout="(N, C, H, W)")
    d_out = _checks.float_array(d_out, "d_out", ndim=4, layout="(N, F, PH, PW)")
    _checks.same_dtype(x, d_out, "x", "d_out")
    w_shape = _checks.shape4(weights_shape, "weights_shape")
    cg, pg = _geometries(x.shape, w_shape, stride, padding, dilation, pool_size, pool_stride)
    indices, mask = _gradient_inputs(d_out, indices, relu_out, pg)
    d_w = np.empty(w_shape, dtype=x.dtype)
    d_b = np.empty(w_shape[0], dtype=x.dtype)
    with _index_errors():
        backends.resolve(backend).conv_maxpool_bwd_params(x, d_out, mask, indices, d_w, d_b, cg, pg,
                                                          int(relu_out is not None))
    return d_w, d_b


def conv2d_maxpool_backward_input(d_out, indices, weights, x_shape, stride=1, padding=0, dilation=1,
                                  pool_size=2, pool_stride=None, *, relu_out=None, backend=None):
    """Gradient of :func:`conv2d_maxpool` with respect to x (shape x_shape),
    from d_out and the indices it returned (N, F, PH, PW), and the weights.
    Only the winners received gradient, so only their patches get some back.
    The indices may also come from ``max_pool2d`` of a ``conv2d`` output.
    ``relu_out``: as in :func:`conv2d_maxpool_backward_params`."""
    d_out = _checks.float_array(d_out, "d_out", ndim=4, layout="(N, F, PH, PW)")
    weights = _checks.float_array(weights, "weights", ndim=4, layout="(F, C, KH, KW)")
    _checks.same_dtype(d_out, weights, "d_out", "weights")
    x_shape = _checks.shape4(x_shape, "x_shape")
    cg, pg = _geometries(x_shape, weights.shape, stride, padding, dilation, pool_size, pool_stride)
    indices, mask = _gradient_inputs(d_out, indices, relu_out, pg)
    d_x = np.empty(x_shape, dtype=d_out.dtype)
    with _index_errors():
        backends.resolve(backend).conv_maxpool_bwd_input(d_out, mask, indices, weights, d_x, cg, pg,
                                                         int(relu_out is not None))
    return d_x


def _relu_mask(relu_out, d_out):
    """relu_out checked against d_out (same shape and dtype, contiguous), or
    d_out itself as a stand-in the kernels do not read."""
    if relu_out is None:
        return d_out
    relu_out = _checks.float_array(relu_out, "relu_out", ndim=4, layout="(N, F, PH, PW)")
    _checks.same_dtype(d_out, relu_out, "d_out", "relu_out")
    if relu_out.shape != d_out.shape:
        raise ValueError(f"relu_out has shape {relu_out.shape}, but d_out has {d_out.shape}; pass the output "
                         f"conv2d_maxpool(..., relu=True) returned")
    return np.ascontiguousarray(relu_out)


def _gradient_inputs(d_out, indices, relu_out, pg):
    """What both backward functions check of their pooled inputs: d_out's
    shape, the indices, relu_out.  Returns (indices, mask) for the kernels."""
    pooled_shape = (pg.n, pg.c, pg.oh, pg.ow)
    if d_out.shape != pooled_shape:
        raise ValueError(f"d_out has shape {d_out.shape}, but conv2d_maxpool's output is {pooled_shape}")
    return _checked_indices(indices, pooled_shape), _relu_mask(relu_out, d_out)


def _checked_indices(indices, pooled_shape):
    indices = np.asarray(indices)
    if indices.shape != pooled_shape or indices.dtype != np.int64:
        raise ValueError(
            f"indices must be the int64 array of shape {pooled_shape} that conv2d_maxpool returned, "
            f"got {indices.dtype} {indices.shape}"
        )
    return np.ascontiguousarray(indices)


@contextlib.contextmanager
def _index_errors():
    """A kernel's IndexError (an index outside its window) as a ValueError that says what to pass."""
    try:
        yield
    except IndexError as exc:
        raise ValueError(
            f"indices point outside their pooling windows ({exc}); pass the indices conv2d_maxpool "
            f"returned for this x and geometry"
        ) from None
