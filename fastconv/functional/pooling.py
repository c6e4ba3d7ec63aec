"""Pooling: max (with PyTorch-style indices), average, global and adaptive average.

All take NCHW float32/float64 input and an optional ``backend=``.  Window
geometry: ``OH = (H + 2*ph - kh)//sh + 1`` (OW alike), rounded up instead with
max pooling's ``ceil_mode`` (fastconv._geometry.pool_output_size); kernel_size,
stride and padding take an int or an (h, w) pair; stride defaults to kernel_size.
"""
from __future__ import annotations

import numpy as np

from .. import _checks, backends
from .._geometry import PoolGeometry, pool_output_size

_X_LAYOUT = "(N, C, H, W)"


def pool_geometry(x_shape, kernel_size, stride=None, padding=0, ceil_mode=False) -> PoolGeometry:
    """The checked geometry record of a pooling window over x_shape."""
    kh, kw = _checks.int_pair(kernel_size, "kernel_size")
    sh, sw = _checks.int_pair(kernel_size if stride is None else stride, "stride")
    ph, pw = _checks.int_pair(padding, "padding", minimum=0)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"padding ({ph}, {pw}) is more than half the kernel ({kh}, {kw}); a window could "
            f"then hold only padding. Use padding <= kernel_size // 2"
        )
    n, c, h, w = x_shape
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be True or False, got {ceil_mode!r}")
    _checks.conv_output_size(h, w, kh, kw, (sh, sw), (ph, pw), (1, 1), what="pooling window")  # the window fits
    oh, ow = pool_output_size(h, kh, sh, ph, ceil_mode), pool_output_size(w, kw, sw, pw, ceil_mode)
    _checks.within_index_range("the pooling's windows", n, c, oh, ow, kh, kw)
    return PoolGeometry(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, int(ceil_mode))


def _grad_and_shape(d_out, input_shape):
    d_out = _checks.float_array(d_out, "d_out", ndim=4, layout=_X_LAYOUT)
    input_shape = _checks.shape4(input_shape, "input_shape")
    if d_out.shape[:2] != input_shape[:2]:
        raise ValueError(
            f"d_out has shape {d_out.shape} but input_shape is {input_shape}: "
            f"N and C must match"
        )
    return d_out, input_shape


def _expect_out_shape(d_out, oh, ow, what):
    if d_out.shape[2:] != (oh, ow):
        raise ValueError(
            f"d_out has spatial shape {d_out.shape[2:]}, but {what} gives ({oh}, {ow}); "
            f"pass the gradient of this pooling's output"
        )


def _indices_for(d_out, indices, name):
    indices = np.asarray(indices)
    if indices.shape != d_out.shape:
        raise ValueError(
            f"indices has shape {indices.shape} but {name} has shape {d_out.shape}; "
            f"pass the indices max_pool2d returned with that output"
        )
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
    return np.ascontiguousarray(indices, dtype=np.int64)


def _run_scatter(kernel_name, values, indices, out_shape, backend, out=None):
    n, c, h, w = out_shape
    out = _checks.out_array(out, tuple(out_shape), values.dtype, inputs={"values": values, "indices": indices})
    try:
        getattr(backends.resolve(backend), kernel_name)(values, indices, out, n, c, h, w, *values.shape[2:])
    except IndexError as exc:
        raise ValueError(
            f"indices point outside the (H, W) = ({h}, {w}) plane ({exc}); pass the indices "
            f"max_pool2d returned for an input of shape {tuple(out_shape)}"
        ) from None
    return out


# ------------------------------------------------------------------- max
def max_pool2d(x, kernel_size, stride=None, padding=0, *, ceil_mode=False, out=None, out_indices=None,
               backend=None):
    """Max pooling.  Returns ``(out, indices)``: indices (int64, out's shape)
    hold the flat position ``h*W + w`` of each winner inside its own (H, W)
    plane, as PyTorch's ``return_indices``.  Padding counts as -inf; ties go
    to the first maximum in row-major window order; NaN propagates.
    ceil_mode: round the output size up, as PyTorch's (a 7x7 input, 2x2/2
    windows: 4x4, the last windows cover what remains).
    out / out_indices: optional preallocated results (C-contiguous, overwritten)."""
    x = _checks.float_array(x, "x", ndim=4, layout=_X_LAYOUT)
    g = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    out = _checks.out_array(out, (g.n, g.c, g.oh, g.ow), x.dtype, inputs={"x": x})
    indices = _checks.out_array(out_indices, (g.n, g.c, g.oh, g.ow), np.int64, "out_indices",
                                inputs={"x": x, "out": out})
    backends.resolve(backend).maxpool_fwd(x, out, indices, g)
    return out, indices


def max_pool2d_backward(d_out, indices, input_shape, *, out=None, backend=None):
    """Route each upstream gradient to its window's winner; where windows
    overlap (stride < kernel) the contributions add.  Returns d_x.
    out: optional preallocated d_x (C-contiguous, overwritten)."""
    d_out, input_shape = _grad_and_shape(d_out, input_shape)
    indices = _indices_for(d_out, indices, "d_out")
    return _run_scatter("maxpool_bwd", d_out, indices, input_shape, backend, out)


def max_unpool2d(x, indices, output_shape, *, backend=None):
    """Partial inverse of max_pool2d: each value goes back to the position its
    index names, every other position is zero.  output_shape: (N, C, H, W) or
    (H, W) of the pooled input."""
    x = _checks.float_array(x, "x", ndim=4, layout=_X_LAYOUT)
    if isinstance(output_shape, (tuple, list)) and len(output_shape) == 2:
        output_shape = (*x.shape[:2], *output_shape)
    _, output_shape = _grad_and_shape(x, output_shape)
    indices = _indices_for(x, indices, "x")
    return _run_scatter("maxunpool", x, indices, output_shape, backend)


# --------------------------------------------------------------- average
def avg_pool2d(x, kernel_size, stride=None, padding=0, *, backend=None):
    """Average pooling; zero padding counts in the divisor (PyTorch's
    ``count_include_pad=True``), so every window divides by kh*kw."""
    x = _checks.float_array(x, "x", ndim=4, layout=_X_LAYOUT)
    g = pool_geometry(x.shape, kernel_size, stride, padding)
    out = np.empty((g.n, g.c, g.oh, g.ow), dtype=x.dtype)
    backends.resolve(backend).avgpool_fwd(x, out, g)
    return out


def avg_pool2d_backward(d_out, input_shape, kernel_size, stride=None, padding=0, *, backend=None):
    """Gradient of avg_pool2d: each d_out value spread evenly over its window."""
    d_out, input_shape = _grad_and_shape(d_out, input_shape)
    g = pool_geometry(input_shape, kernel_size, stride, padding)
    _expect_out_shape(d_out, g.oh, g.ow, f"pooling {tuple(input_shape)}")
    d_x = np.empty(input_shape, dtype=d_out.dtype)
    backends.resolve(backend).avgpool_bwd(d_out, d_x, g)
    return d_x


def adaptive_avg_pool2d(x, output_size, *, backend=None):
    """Average over PyTorch's adaptive bins: output row i covers input rows
    [floor(i*H/OH), ceil((i+1)*H/OH)) (columns alike).  output_size: int or (OH, OW)."""
    x = _checks.float_array(x, "x", ndim=4, layout=_X_LAYOUT)
    oh, ow = _checks.int_pair(output_size, "output_size")
    n, c, h, w = x.shape
    _checks.within_index_range("the adaptive pooling's bins", n, c, h + oh, w + ow)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    backends.resolve(backend).adaptive_avgpool_fwd(x, out, n, c, h, w, oh, ow)
    return out


def adaptive_avg_pool2d_backward(d_out, input_shape, *, backend=None):
    """Gradient of adaptive_avg_pool2d (the output size is d_out's)."""
    d_out, input_shape = _grad_and_shape(d_out, input_shape)
    n, c, h, w = input_shape
    _checks.within_index_range("the adaptive pooling's bins", n, c, h + d_out.shape[2], w + d_out.shape[3])
    d_x = np.empty(input_shape, dtype=d_out.dtype)
    backends.resolve(backend).adaptive_avgpool_bwd(d_out, d_x, n, c, h, w, *d_out.shape[2:])
    return d_x


def global_avg_pool2d(x, *, backend=None):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""
    x = _checks.float_array(x, "x", ndim=4, layout=_X_LAYOUT)
    return adaptive_avg_pool2d(x, 1, backend=backend).reshape(x.shape[:2])


def global_avg_pool2d_backward(d_out, input_shape, *, backend=None):
    """Gradient of global_avg_pool2d: d_out (N, C) spread evenly over H*W."""
    d_out = _checks.float_array(d_out, "d_out", ndim=2, layout="(N, C)")
    return adaptive_avg_pool2d_backward(d_out[:, :, None, None], input_shape, backend=backend)
