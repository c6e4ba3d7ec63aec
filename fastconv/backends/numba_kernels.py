"""Numba backend: ``@njit(parallel=True)`` kernels.

Options for every kernel come from ``config.numba_options()`` (one place);
``cache=True`` there keeps the compile cost to the first run on a machine.
Parallel loops write disjoint memory: im2col by (row, image) block, col2im by
(image, channel) plane.

Inner loops index flat arrays with ``uint64`` offsets: with signed indices
Numba must test every index for negative wrap-around, which blocks
vectorisation (measured 5x slower on im2col).  Offsets are computed signed,
then cast once they are known to be >= 0.  Keep uint64 apart from int64 in
arithmetic: NumPy's promotion of the pair is float64.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange, uint64

from .. import config

_OPTS = config.numba_options()
njit = numba.njit(**_OPTS)
njit_serial = numba.njit(**{**_OPTS, "parallel": False})


def set_num_threads(n: int) -> None:
    numba.set_num_threads(n)


@njit_serial
def _valid_range(size, out, s, k, d, p):
    """Outputs o in [lo, hi) with input coordinate o*s + k*d - p inside [0, size)."""
    off = k * d - p
    lo = min(max(-(off // s), 0), out)  # ceil(-off / s), clamped
    hi = min(max((size - 1 - off) // s + 1, lo), out)
    return lo, hi


@njit_serial
def _ranges(h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
    """(lo, hi) of oy per kernel row i, then of ox per kernel column j."""
    r = np.empty((fh + fw, 2), dtype=np.int64)
    for i in range(fh):
        r[i, 0], r[i, 1] = _valid_range(h, oh, sh, i, dh, ph)
    for j in range(fw):
        r[fh + j, 0], r[fh + j, 1] = _valid_range(w, ow, sw, j, dw, pw)
    return r


@njit
def im2col(x, col, n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
    r = _ranges(h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow)
    xf = x.reshape(-1)
    colf = col.reshape(-1)
    usw, uow = uint64(sw), uint64(ow)
    # A task = one col row x a group of images (>= ~4K outputs): per-task
    # setup is noise and threads stay balanced when C*FH*FW is small.
    group = min(max(4096 // (oh * ow), 1), n)
    groups = (n + group - 1) // group
    for t in prange(c * fh * fw * groups):
        row = t // groups
        g = t % groups
        j = row % fw
        i = (row // fw) % fh
        ch = row // (fw * fh)
        y_lo, y_hi = r[i, 0], r[i, 1]
        x_lo, x_hi = uint64(r[fh + j, 0]), uint64(r[fh + j, 1])
        n_x = x_hi - x_lo
        zero = x.dtype.type(0)
        for img in range(g * group, min(g * group + group, n)):
            base = uint64(row * n * oh * ow + img * oh * ow)
            # Rows that read pixels.  The hot loop: counted from 0 and split
            # by stride, which is what lets LLVM vectorise it.
            for oy in range(y_lo, y_hi):
                d = base + uint64(oy * ow) + x_lo
                s = uint64((img * c + ch) * h * w + (oy * sh + i * dh - ph) * w
                           + j * dw - pw + r[fh + j, 0] * sw)
                if sw == 1:
                    for k in range(n_x):
                        colf[d + k] = xf[s + k]
                else:
                    for k in range(n_x):
                        colf[d + k] = xf[s + k * usw]
            # Rows in the vertical padding, then the horizontal margins.
            if y_lo > 0 or y_hi < oh:
                for k in range(uint64(y_lo) * uow):
                    colf[base + k] = zero
                for k in range(uint64(y_hi) * uow, uint64(oh) * uow):
                    colf[base + k] = zero
            if x_lo > 0 or x_hi < uow:
                for oy in range(y_lo, y_hi):
                    d = base + uint64(oy * ow)
                    for k in range(x_lo):
                        colf[d + k] = zero
                    for k in range(x_hi, uow):
                        colf[d + k] = zero


@njit
def col2im(col, x, n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
    r = _ranges(h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow)
    colf = col.reshape(-1)
    xf = x.reshape(-1)
    usw = uint64(sw)
    ncols = n * oh * ow
    # Each task owns one (image, channel) plane of x: no two threads add
    # into the same address.
    for p in prange(n * c):
        img = p // c
        ch = p % c
        plane = uint64(p * h * w)
        for k in range(uint64(h * w)):
            xf[plane + k] = 0
        for i in range(fh):
            y_lo, y_hi = r[i, 0], r[i, 1]
            for j in range(fw):
                x_lo, x_hi = uint64(r[fh + j, 0]), uint64(r[fh + j, 1])
                src = ((ch * fh + i) * fw + j) * ncols + img * oh * ow
                n_x = x_hi - x_lo
                for oy in range(y_lo, y_hi):
                    d = plane + uint64((oy * sh + i * dh - ph) * w + j * dw - pw + r[fh + j, 0] * sw)
                    s = uint64(src + oy * ow) + x_lo
                    if sw == 1:
                        for k in range(n_x):
                            xf[d + k] += colf[s + k]
                    else:
                        for k in range(n_x):
                            xf[d + k * usw] += colf[s + k]
