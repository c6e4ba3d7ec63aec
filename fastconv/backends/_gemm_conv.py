"""Convolution as im2col + NumPy's matmul, in chunks of images: the
``conv2d_fwd`` / ``conv2d_bwd`` kernels of the NumPy and Numba backends (each
with its own im2col / col2im), and the C backend's when it found no BLAS to
call from C.  Same contract as ``fc_conv2d_fwd`` / ``fc_conv2d_bwd``
(csrc/fastconv.h); the geometry is a :class:`fastconv._geometry.ConvGeometry`.
"""
from __future__ import annotations

import numpy as np

# Largest column matrix (bytes) built at once.  The full-batch im2col of a
# (128, 64, 32, 32) input would take 302 MB; chunks keep the extra memory near
# 2x this, with GEMMs still thousands of columns wide.
MAX_COL_BYTES = 16 * 2**20


def images_per_chunk(g, itemsize) -> int:
    """Images per im2col chunk so a column matrix stays under MAX_COL_BYTES."""
    per_image = g.c * g.kh * g.kw * g.oh * g.ow * itemsize
    return max(1, min(g.n, MAX_COL_BYTES // max(per_image, 1)))


def make_conv2d_kernels(im2col, col2im):
    """``(conv2d_fwd, conv2d_bwd)`` built on a backend's im2col and col2im."""

    def columns(x, g, n0, n1):
        col = np.empty((g.c * g.kh * g.kw, (n1 - n0) * g.oh * g.ow), dtype=x.dtype)
        im2col(x[n0:n1], col, g._replace(n=n1 - n0))
        return col.reshape(g.groups, -1, col.shape[1])  # group k's channels: a row block

    def conv2d_fwd(x, wt, b, out, g):
        w_mat = wt.reshape(g.groups, g.f // g.groups, -1)
        chunk = images_per_chunk(g, x.dtype.itemsize)
        for n0 in range(0, g.n, chunk):
            n1 = min(g.n, n0 + chunk)
            y = np.matmul(w_mat, columns(x, g, n0, n1))  # (groups, F/groups, nb*OH*OW)
            out[n0:n1] = y.reshape(g.f, n1 - n0, g.oh, g.ow).transpose(1, 0, 2, 3)
        if b is not None:
            out += b[:, None, None]

    def conv2d_bwd(x, wt, d_out, d_x, d_w, d_b, g):
        fg = g.f // g.groups
        w_t = wt.reshape(g.groups, fg, -1).transpose(0, 2, 1)
        d_w_g = d_w.reshape(g.groups, fg, -1)
        sum_b = np.zeros(g.f) if d_b is not None else None
        chunk = images_per_chunk(g, x.dtype.itemsize)
        for n0 in range(0, g.n, chunk):
            n1 = min(g.n, n0 + chunk)
            col = columns(x, g, n0, n1)
            d_y = np.ascontiguousarray(d_out[n0:n1].transpose(1, 0, 2, 3)).reshape(g.groups, fg, -1)
            if sum_b is not None:
                # a BLAS matrix-vector product: multithreaded, 5x faster than .sum(axis=1)
                sum_b += (d_y @ np.ones(d_y.shape[2], dtype=x.dtype)).reshape(-1)
            grad_w = np.matmul(d_y, col.transpose(0, 2, 1))
            if n0 == 0:
                d_w_g[...] = grad_w
            else:
                d_w_g += grad_w
            if d_x is not None:
                d_col = np.matmul(w_t, d_y).reshape(-1, d_y.shape[2])
                col2im(d_col, d_x[n0:n1], g._replace(n=n1 - n0))
        if d_b is not None:
            d_b[...] = sum_b

    return conv2d_fwd, conv2d_bwd
