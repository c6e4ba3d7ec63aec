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
from .._geometry import ConvGeometry
from ..backends import resolve
from .im2col import conv_geometry

class Conv2dCache(NamedTuple):
    """What conv2d_backward needs from the forward pass."""

    x: np.ndarray  # C-contiguous input
    weights: np.ndarray
    geometry: ConvGeometry
    has_bias: bool
    backend: str | None


def conv2d(x, weights, bias=None, stride=1, padding=0, dilation=1, groups=1, *, backend=None):
    """2-D convolution (cross-correlation, as PyTorch), NCHW: ``(out, cache)``.

    x (N, C, H, W); weights (F, C // groups, KH, KW); bias (F,) or None.
    ``OH = (H + 2*ph - dh*(KH-1) - 1)//sh + 1`` (OW alike); out (N, F, OH, OW),
    C-contiguous.  The backend's ``conv2d_fwd`` kernel computes it: implicit
    GEMM in cache-sized tiles with the C backend, im2col + one BLAS GEMM per
    chunk of images otherwise (backends/_gemm_conv.py)."""
    x = _checks.float_array(x, "x", ndim=4, layout="(N, C, H, W)")
    weights = _checks.float_array(weights, "weights", ndim=4, layout="(F, C/groups, KH, KW)")
    _checks.same_dtype(x, weights, "x", "weights")
    groups = _checks.positive_int(groups, "groups")
    f, cg, kh, kw = weights.shape
    n, c = x.shape[:2]
    if c != cg * groups or f % groups:
        raise ValueError(f"weights of shape {weights.shape} with groups={groups} expect {cg * groups} input "
                         f"channels and F divisible by groups; x has shape {x.shape}")
    geometry = conv_geometry(x.shape, kh, kw, stride, padding, dilation, f=f, groups=groups)
    if bias is not None:
        bias = _checks.float_array(bias, "bias", ndim=1, layout="(F,)")
        if bias.shape != (f,):
            raise ValueError(f"bias has shape {bias.shape}; the weights have {f} filters")
        bias = np.ascontiguousarray(bias, dtype=x.dtype)
    x, weights = np.ascontiguousarray(x), np.ascontiguousarray(weights)
    out = np.empty((n, f, geometry.oh, geometry.ow), dtype=x.dtype)
    resolve(backend).conv2d_fwd(x, weights, bias, out, geometry)
    return out, Conv2dCache(x, weights, geometry, bias is not None, backend)


def conv2d_backward(d_out, cache: Conv2dCache, *, input_grad=True):
    """``(d_x, d_weights, d_bias)`` of :func:`conv2d` (d_x None with
    input_grad=False; d_bias None without bias)."""
    if not isinstance(cache, Conv2dCache):
        raise TypeError("cache must be the Conv2dCache returned by conv2d")
    x, weights, g = cache.x, cache.weights, cache.geometry
    d_out = np.asarray(d_out)
    if d_out.shape != (g.n, g.f, g.oh, g.ow):
        raise ValueError(f"d_out has shape {d_out.shape}, but the forward output was {(g.n, g.f, g.oh, g.ow)}")
    d_out = np.ascontiguousarray(d_out, dtype=x.dtype)
    d_x = np.empty_like(x) if input_grad else None
    d_w = np.empty_like(weights)
    d_b = np.empty(g.f, dtype=x.dtype) if cache.has_bias else None
    resolve(cache.backend).conv2d_bwd(x, weights, d_out, d_x, d_w, d_b, g)
    return d_x, d_w, d_b


class LinearCache(NamedTuple):
    x: np.ndarray  # C-contiguous input
    weights: np.ndarray
    has_bias: bool
    backend: str | None = None


def linear(x, weights, bias=None, *, backend=None):
    """``(x @ weights + bias, cache)``; x (N, in), weights (in, out) as the
    guides' Dense, bias (out,) or None.  The backend's ``linear_fwd`` kernel
    computes it: NumPy's matmul, or with the C backend its own register-blocked
    kernel on fastconv's threads (csrc/linear_tmpl.h)."""
    x = _checks.float_array(x, "x", ndim=2, layout="(N, in_features)")
    weights = _checks.float_array(weights, "weights", ndim=2, layout="(in_features, out_features)")
    _checks.same_dtype(x, weights, "x", "weights")
    (n, k), f = x.shape, weights.shape[1]
    if k != weights.shape[0]:
        raise ValueError(f"x has {k} features but weights of shape {weights.shape} take {weights.shape[0]}")
    if bias is not None:
        bias = _checks.float_array(bias, "bias", ndim=1, layout="(out_features,)")
        if bias.shape != (f,):
            raise ValueError(f"bias has shape {bias.shape}; the weights have {f} output features")
        bias = np.ascontiguousarray(bias, dtype=x.dtype)
    x, weights = np.ascontiguousarray(x), np.ascontiguousarray(weights)
    out = np.empty((n, f), dtype=x.dtype)
    resolve(backend).linear_fwd(x, weights, bias, out, n, k, f)
    return out, LinearCache(x, weights, bias is not None, backend)


def linear_backward(d_out, cache: LinearCache, *, input_grad=True):
    """``(d_x, d_weights, d_bias)`` of :func:`linear` (d_x None with
    input_grad=False; d_bias None without bias)."""
    if not isinstance(cache, LinearCache):
        raise TypeError("cache must be the LinearCache returned by linear")
    x, weights = cache.x, cache.weights
    (n, k), f = x.shape, weights.shape[1]
    d_out = np.asarray(d_out)
    if d_out.shape != (n, f):
        raise ValueError(f"d_out has shape {d_out.shape}; the forward output was {(n, f)}")
    d_out = np.ascontiguousarray(d_out, dtype=x.dtype)
    d_x = np.empty_like(x) if input_grad else None
    d_w = np.empty_like(weights)
    d_b = np.empty(f, dtype=x.dtype) if cache.has_bias else None
    resolve(cache.backend).linear_bwd(x, weights, d_out, d_x, d_w, d_b, n, k, f)
    return d_x, d_w, d_b


def _elementwise_kernels(backend, *arrays):
    """The backend's kernels when every array is a C-contiguous float32 or
    float64 array of one dtype (what they take), else None: NumPy runs it."""
    dtype = arrays[0].dtype
    if dtype not in (np.float32, np.float64) or any(a.dtype != dtype or not a.flags.c_contiguous for a in arrays):
        return None
    return resolve(backend)


def relu(x, *, backend=None):
    """``(max(x, 0), cache)``; the cache is the output (positive where x was)."""
    x = np.asarray(x)
    kernels = _elementwise_kernels(backend, x)
    if kernels is None:
        out = np.maximum(x, x.dtype.type(0))  # a scalar of x's dtype: no upcast
    else:
        out = np.empty_like(x)
        kernels.relu(x, out, x.size)
    return out, out


def relu_backward(d_out, cache, *, add=None, backend=None):
    """d_x of :func:`relu`: d_out where the output is positive, else 0.

    add: a gradient of the same shape to add to that, in the same pass (a
    residual block's identity branch meeting its main branch): the same
    values as ``add(relu_backward(d_out, cache), add)``, one tensor fewer
    written and read back."""
    d_out = np.asarray(d_out)
    if d_out.shape != cache.shape:
        raise ValueError(f"d_out has shape {d_out.shape}; the forward output was {cache.shape}")
    if add is not None:
        add = np.asarray(add)
        if add.shape != d_out.shape:
            raise ValueError(f"add has shape {add.shape}; d_out has {d_out.shape}")
    kernels = _elementwise_kernels(backend, d_out, cache, *(() if add is None else (add,)))
    if kernels is None:
        d_x = d_out * (cache > 0)
        return d_x if add is None else d_x + add
    d_x = np.empty_like(d_out)
    if add is None:
        kernels.relu_bwd(d_out, cache, d_x, d_out.size)
    else:
        kernels.relu_bwd_add(d_out, cache, add, d_x, d_out.size)
    return d_x


def add(a, b, *, out=None, backend=None):
    """a + b (same shape); ``out`` may be a or b (an in-place sum)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has {b.shape}")
    kernels = _elementwise_kernels(backend, a, b, *(() if out is None else (out,)))
    if kernels is None or (out is not None and out.shape != a.shape):
        return np.add(a, b, out=out)
    out = np.empty_like(a) if out is None else out
    kernels.add(a, b, out, a.size)
    return out


def crop_hw(x, rows, cols, *, backend=None):
    """``x[:, :, :rows, :cols]`` of an (N, C, H, W) array as a new C-contiguous
    array (one multithreaded pass where the backend has the kernel; NumPy's
    copy of the strided view runs rows of a few floats on one thread)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {x.shape}")
    n, c, h, w = x.shape
    if not (1 <= rows <= h and 1 <= cols <= w):
        raise ValueError(f"the crop ({rows}, {cols}) must lie within the planes ({h}, {w})")
    kernels = _elementwise_kernels(backend, x)
    if kernels is None:
        return np.ascontiguousarray(x[:, :, :rows, :cols])
    out = np.empty((n, c, rows, cols), dtype=x.dtype)
    kernels.crop_planes(x, out, n * c, h, w, rows, cols)
    return out


def pad_hw(x, height, width, *, backend=None):
    """The gradient of :func:`crop_hw`: an (N, C, height, width) array with x
    in each plane's top-left corner and zeros elsewhere."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {x.shape}")
    n, c, rows, cols = x.shape
    if not (rows <= height and cols <= width):
        raise ValueError(f"x's planes ({rows}, {cols}) do not fit in ({height}, {width})")
    kernels = _elementwise_kernels(backend, x)
    if kernels is None or rows < 1 or cols < 1:
        full = np.zeros((n, c, height, width), dtype=x.dtype)
        full[:, :, :rows, :cols] = x
        return full
    out = np.empty((n, c, height, width), dtype=x.dtype)
    kernels.pad_planes(x, out, n * c, height, width, rows, cols)
    return out
