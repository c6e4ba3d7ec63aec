"""Every user-facing validation and its error message, in one place.

Messages say what was found, what was expected and, where there is one, the fix.
"""
from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# What the kernels can index.  They do their size arithmetic in int64 (and
# size_t for scratch buffers), so every geometry integer is capped at INT32
# range and every product of sizes a kernel forms (array elements, work) at
# MAX_ELEMENTS, far beyond any memory yet small enough that bytes and offsets
# derived from it cannot overflow.  Checked here, once, in Python.
MAX_SIZE = 2**31 - 1
MAX_ELEMENTS = 2**56


def float_array(x, name: str, ndim=None, layout: str = "") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32/float64 array, checking ``ndim``.

    ``ndim`` may be an int or a tuple of accepted ranks; ``layout`` names the
    axes for the message, e.g. ``"(N, C, H, W)"``.
    """
    if not isinstance(x, np.ndarray):
        if not hasattr(x, "__array__") and not isinstance(x, (list, tuple)):
            raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
        x = np.asarray(x)
    not_empty(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {x.dtype}; fastconv works on float32 or float64 arrays: "
            f"convert it with {name}.astype(np.float32)"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            hint = ""
            if x.ndim + 1 in allowed:
                hint = f"; add a batch axis with {name}[None]"
            raise ValueError(
                f"expected {name} to be a {want} array {layout}".rstrip()
                + f", got shape {x.shape}{hint}"
            )
    return np.ascontiguousarray(x)


def not_empty(x: np.ndarray, name: str) -> None:
    """Refuse arrays with a zero-length axis (an empty batch, an H of 0)."""
    if x.size == 0:
        axis = x.shape.index(0) if 0 in x.shape else 0
        raise ValueError(f"{name} is empty: shape {x.shape} has length 0 on axis {axis}; "
                         f"fastconv computes on at least one sample with non-empty axes")


def within_index_range(what: str, *factors: int) -> None:
    """Refuse a size product (elements of an array or of a kernel's work) the
    kernels' int64 arithmetic cannot hold (see MAX_ELEMENTS)."""
    total = 1
    for f in factors:
        total *= int(f)
    if total > MAX_ELEMENTS:
        raise ValueError(f"{what} would need {total:.3e} elements, more than fastconv's kernels can "
                         f"index ({MAX_ELEMENTS:.3e}); check the sizes, strides and padding")


def same_dtype(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(
            f"{name_a} is {a.dtype} but {name_b} is {b.dtype}; give both the same dtype"
        )


def positive_int(v, name: str, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {v!r} ({type(v).__name__})")
    if v < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {v}")
    if v > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {v}")
    return int(v)


def int_pair(v, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= ``minimum``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {v!r}")
        return positive_int(v[0], name, minimum), positive_int(v[1], name, minimum)
    v = positive_int(v, name, minimum)
    return v, v


def shape4(shape, name: str) -> tuple[int, int, int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"{name} must be a 4-tuple (N, C, H, W), got {shape!r}")
    return tuple(positive_int(s, f"{name}[{k}]") for k, s in enumerate(shape))


def conv_output_size(h, w, fh, fw, stride, padding, dilation, what="kernel"):
    """``OH = (H + 2*ph - dh*(FH-1) - 1)//sh + 1`` (and OW), checked to be >= 1."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    if h < 1 or w < 1:
        raise ValueError(f"the input's spatial size is ({h}, {w}); H and W must be at least 1 "
                         f"(padding does not make an empty input valid)")
    span_h, span_w = dh * (fh - 1) + 1, dw * (fw - 1) + 1
    if span_h > h + 2 * ph or span_w > w + 2 * pw:
        raise ValueError(
            f"{what} ({fh}, {fw}) with dilation ({dh}, {dw}) spans ({span_h}, {span_w}), "
            f"larger than the padded input ({h + 2 * ph}, {w + 2 * pw}) "
            f"[input ({h}, {w}), padding ({ph}, {pw})]; use a smaller {what} or more padding"
        )
    oh, ow = (h + 2 * ph - span_h) // sh + 1, (w + 2 * pw - span_w) // sw + 1
    within_index_range(f"a padded input plane of ({h + 2 * ph}, {w + 2 * pw})", h + 2 * ph, w + 2 * pw)
    within_index_range(f"an output plane of ({oh}, {ow}) with a ({fh}, {fw}) {what}", oh, ow, fh, fw)
    return oh, ow


def out_array(out, shape, dtype, name: str = "out", inputs=None) -> np.ndarray:
    """The output buffer of a kernel: a new array when ``out`` is None, else
    the caller's ``out`` checked (exact shape and dtype, C order, writeable,
    no memory shared with any array of ``inputs``, a {name: array} dict)."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"{name} has shape {out.shape} and dtype {out.dtype}; expected shape "
            f"{tuple(shape)} and dtype {np.dtype(dtype)}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be a writeable C-contiguous array; allocate it with np.empty")
    for input_name, array in (inputs or {}).items():
        if np.may_share_memory(out, array):
            raise ValueError(f"{name} overlaps {input_name}; pass a separate array (np.empty)")
    return out
