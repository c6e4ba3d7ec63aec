"""im2col / col2im: the column layout of the from-scratch guides.

``col[(c*FH + i)*FW + j, (n*OH + oh)*OW + ow] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]``

so a convolution is ``W.reshape(F, C*FH*FW) @ col`` with result columns in
(n, oh, ow) order.  ``OH = (H + 2*ph - dh*(FH-1) - 1)//sh + 1`` (OW alike).
"""
from __future__ import annotations

from .. import _checks, backends
from .._geometry import ConvGeometry


def conv_geometry(x_shape, fh, fw, stride, padding, dilation, f=1, groups=1) -> ConvGeometry:
    """The checked geometry record of a (fh, fw) window over x_shape: every
    convolution-shaped kernel (im2col, conv2d, conv2d_maxpool) gets one.  f and
    groups: the filters, for the convolution kernels (im2col ignores them)."""
    fh = _checks.positive_int(fh, "FH (kernel height)")
    fw = _checks.positive_int(fw, "FW (kernel width)")
    stride = _checks.int_pair(stride, "stride")
    padding = _checks.int_pair(padding, "padding", minimum=0)
    dilation = _checks.int_pair(dilation, "dilation")
    n, c, h, w = x_shape
    oh, ow = _checks.conv_output_size(h, w, fh, fw, stride, padding, dilation)
    _checks.within_index_range("the column matrix (C*FH*FW, N*OH*OW)", c, fh, fw, n, oh, ow)
    _checks.within_index_range("the padded input", n, c, h + 2 * padding[0], w + 2 * padding[1])
    return ConvGeometry(n, c, h, w, f, fh, fw, *stride, *padding, *dilation, oh, ow, groups)


def im2col(x, FH, FW, stride=1, padding=0, dilation=1, *, out=None, backend=None):
    """Unfold sliding windows of ``x`` into columns.

    x: (N, C, H, W) float32/float64.  Returns (C*FH*FW, N*OH*OW), same dtype.
    stride, padding, dilation: int or (h, w).  out: optional preallocated
    result (C-contiguous, right shape and dtype), reused instead of allocating.
    """
    x = _checks.float_array(x, "x", ndim=4, layout="(N, C, H, W)")
    g = conv_geometry(x.shape, FH, FW, stride, padding, dilation)
    shape = (g.c * g.kh * g.kw, g.n * g.oh * g.ow)
    col = _checks.out_array(out, shape, x.dtype, inputs={"x": x})
    backends.resolve(backend).im2col(x, col, g)
    return col


def col2im(col, x_shape, FH, FW, stride=1, padding=0, dilation=1, *, out=None, backend=None):
    """Adjoint of :func:`im2col`: add each column entry back to the input
    position it came from (overlapping windows accumulate; padding is cropped).

    col: (C*FH*FW, N*OH*OW).  x_shape: (N, C, H, W).  Returns x_shape, col's dtype.
    out: optional preallocated result (overwritten, not added to).
    """
    col = _checks.float_array(col, "col", ndim=2, layout="(C*FH*FW, N*OH*OW)")
    x_shape = _checks.shape4(x_shape, "x_shape")
    g = conv_geometry(x_shape, FH, FW, stride, padding, dilation)
    expected = (g.c * g.kh * g.kw, g.n * g.oh * g.ow)
    if col.shape != expected:
        raise ValueError(
            f"col has shape {col.shape}, but x_shape {tuple(x_shape)} with a ({g.kh}, {g.kw}) "
            f"kernel gives OH={g.oh}, OW={g.ow} and so expects (C*FH*FW, N*OH*OW) = {expected}; "
            f"pass the x_shape, kernel, stride, padding and dilation used for im2col"
        )
    x = _checks.out_array(out, x_shape, col.dtype, inputs={"col": col})
    backends.resolve(backend).col2im(col, x, g)
    return x
