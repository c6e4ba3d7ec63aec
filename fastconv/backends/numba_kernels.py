"""Numba backend: ``@njit(parallel=True)`` kernels.

Options for every kernel come from ``config.numba_options()`` (one place);
``cache=True`` there keeps the compile cost to the first run on a machine.
Parallel loops write disjoint memory: im2col by (row, image) block, col2im by
(image, channel) plane.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

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


@njit
def im2col(x, col, n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
    # One task = one (row, image) pair: a contiguous run of OH*OW outputs.
    for t in prange(c * fh * fw * n):
        img = t % n
        row = t // n
        j = row % fw
        i = (row // fw) % fh
        ch = row // (fw * fh)
        lo, hi = _valid_range(w, ow, sw, j, dw, pw)
        for oy in range(oh):
            iy = oy * sh + i * dh - ph
            d = img * oh * ow + oy * ow
            if iy < 0 or iy >= h:
                for ox in range(ow):
                    col[row, d + ox] = 0
                continue
            for ox in range(lo):
                col[row, d + ox] = 0
            for ox in range(lo, hi):
                col[row, d + ox] = x[img, ch, iy, ox * sw + j * dw - pw]
            for ox in range(hi, ow):
                col[row, d + ox] = 0


@njit
def col2im(col, x, n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
    # Each task owns one (image, channel) plane of x: no two threads add
    # into the same address.
    for p in prange(n * c):
        img = p // c
        ch = p % c
        for y in range(h):
            for xx in range(w):
                x[img, ch, y, xx] = 0
        for i in range(fh):
            for j in range(fw):
                row = (ch * fh + i) * fw + j
                lo, hi = _valid_range(w, ow, sw, j, dw, pw)
                for oy in range(oh):
                    iy = oy * sh + i * dh - ph
                    if iy < 0 or iy >= h:
                        continue
                    s = img * oh * ow + oy * ow
                    for ox in range(lo, hi):
                        x[img, ch, iy, ox * sw + j * dw - pw] += col[row, s + ox]
