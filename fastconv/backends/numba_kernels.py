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

import logging
import os
import types

import numba
import numpy as np
from numba import prange, uint64

from .. import config
from . import _bn_terms, _gemm_conv, numpy_ref

# conv_maxpool_* are correct but no faster than this backend's separate layers
# in a whole training step (Numba keeps no accumulators in registers across
# the winners: ~10 GMAC/s vs C's register-blocked sums).  Interleaved A/B of
# the seed network: 14.6 ms per step unfused, 14.8 with only the second conv
# fused, 15.7 with both; after the ReLU moved into the kernels, 14.7 unfused
# vs 16.6 with the second conv fused.  So CNN does not run ConvPoolReLU
# stages with it (layers/fused.py).
# conv2d_maxpool with many taps runs im2row + GEMM + rows_maxpool (functional/conv.py)
CONV_MAXPOOL_VIA_ROWS = True
FUSE_CONV_POOL = False
# bnpool_* likewise: correct, but slower here than the separate BatchNorm+ReLU
# and pool (forward + backward on (64, 32, 28, 28): 4.1-4.6 vs 2.8-2.9 ms; the C
# kernels' vector code has no counterpart LLVM finds), so CNN keeps the
# layers (layers/fused.py, bn_pool_fusable).
FUSE_BN_POOL = False


def conv_maxpool_direct(cg, pg) -> bool:
    """Whether conv2d_maxpool runs conv_maxpool_fwd even with many taps: no
    geometry here (the C backend's phase kernels are its own)."""
    return False


_OPTS = config.numba_options()
njit = numba.njit(**_OPTS)
njit_serial = numba.njit(**{**_OPTS, "parallel": False})
# Reductions may reassociate their sums (vectorised partial sums), as the C
# kernels' `omp simd reduction`; nothing else changes IEEE semantics.
njit_reduce = numba.njit(**{**_OPTS, "fastmath": {"reassoc"}})


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
def im2col(x, col, g):
    n, c, h, w, _f, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow, _groups = g
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
def col2im(col, x, g):
    n, c, h, w, _f, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow, _groups = g
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



# ---------------------------------------------------------------- pooling
# One (image, channel) plane per task: backward scatters never share an
# address across threads.


@njit_serial
def _beats(v, best):
    """Larger, or the first NaN (NaN propagates); ties keep the earlier element."""
    return v > best or (v != v and best == best)


@njit_serial
def _beats_nb(v, best):
    """_beats with bitwise operators: no short-circuit branch."""
    return (v > best) | ((v != v) & (best == best))


@njit
def maxpool_fwd(x, out, idx, g):
    n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, _ceil_mode = g
    xf = x.reshape(-1)
    of = out.reshape(-1)
    jf = idx.reshape(-1)
    # 2x2/2 windows inside the plane take the unrolled path; the rest (other
    # geometries, and in ceil mode the overhanging last row and column) the
    # clipped scan
    fast22 = kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0
    fit_h, fit_w = (min(h // 2, oh), min(w // 2, ow)) if fast22 else (0, 0)
    for p in prange(n * c):
        plane = uint64(p * h * w)
        o = uint64(p * oh * ow)
        for oy in range(oh):
            first_ox = 0
            if oy < fit_h:
                first_ox = fit_w
                r0 = uint64(2 * oy * w)
                # Whole chunks of 8 outputs, the tail as one more chunk that
                # overlaps the last (recomputing is harmless): LLVM's vector
                # body runs, not a scalar tail that mispredicts on random data.
                if fit_w < 8:
                    # rows shorter than a chunk: the tournament in pure
                    # arithmetic (winners as offsets), no branches to mispredict
                    for ox in range(uint64(fit_w)):
                        p0 = plane + r0 + uint64(2) * ox
                        p1 = p0 + uint64(w)
                        tb = uint64(_beats_nb(xf[p0 + uint64(1)], xf[p0]))
                        bd = uint64(_beats_nb(xf[p1 + uint64(1)], xf[p1]))
                        down = uint64(_beats_nb(xf[p1 + bd], xf[p0 + tb]))
                        off = tb + down * (uint64(w) + bd - tb)
                        of[o + ox] = xf[p0 + off]
                        jf[o + ox] = r0 + uint64(2) * ox + off
                else:
                    body = fit_w - fit_w % 8
                    for seg in range(2):
                        lo, hi = 0, body
                        if seg == 1:
                            if body == fit_w:
                                break
                            # max(.., 0): fit_w >= 8 here, but LLVM vectorises only
                            # when it can see lo >= 0 (3x slower without)
                            lo, hi = max(fit_w - 8, 0), fit_w
                        for ox in range(uint64(lo), uint64(hi)):
                            a = r0 + uint64(2) * ox
                            top = xf[plane + a]  # (own names: these are uint64, the
                            win = a              #  general path's are int64)
                            for cand in (a + uint64(1), a + uint64(w), a + uint64(w + 1)):
                                v = xf[plane + cand]
                                if _beats(v, top):
                                    top = v
                                    win = cand
                            of[o + ox] = top
                            jf[o + ox] = win
            y0 = oy * sh - ph
            ya, yb = max(y0, 0), min(y0 + kh, h)
            for ox in range(first_ox, ow):
                x0 = ox * sw - pw
                xa, xb = max(x0, 0), min(x0 + kw, w)
                at = ya * w + xa  # padding is -inf: the first real pixel starts the scan
                best = xf[plane + uint64(at)]
                for iy in range(ya, yb):
                    for ix in range(xa, xb):
                        v = xf[plane + uint64(iy * w + ix)]
                        if _beats(v, best):
                            best = v
                            at = iy * w + ix
                of[o + uint64(ox)] = best
                jf[o + uint64(ox)] = at
            o += uint64(ow)


_maxpool_fwd = maxpool_fwd  # the jitted kernel for conv_maxpool_fwd (the public name gets a wrapper below)


@njit
def _scatter(vals, idx, dst, n, c, h, w, oh, ow, add):
    """Scatter values to plane positions (add or assign); returns the number
    of out-of-range indices, which are skipped."""
    vf = vals.reshape(-1)
    jf = idx.reshape(-1)
    df = dst.reshape(-1)
    hw = h * w
    bad = 0
    for p in prange(n * c):
        plane = uint64(p * hw)
        for k in range(uint64(hw)):
            df[plane + k] = 0
        src = uint64(p * oh * ow)
        for k in range(uint64(oh * ow)):
            at = jf[src + k]
            if at < 0 or at >= hw:
                bad += 1
            elif add:
                df[plane + uint64(at)] += vf[src + k]
            else:
                df[plane + uint64(at)] = vf[src + k]
    return bad


def maxpool_bwd(d_out, idx, d_x, n, c, h, w, oh, ow):
    bad = _scatter(d_out, idx, d_x, n, c, h, w, oh, ow, True)
    if bad:
        raise IndexError(f"{bad} index value(s) outside [0, {h * w})")


def maxunpool(x, idx, out, n, c, h, w, oh, ow):
    bad = _scatter(x, idx, out, n, c, h, w, oh, ow, False)
    if bad:
        raise IndexError(f"{bad} index value(s) outside [0, {h * w})")


@njit_serial
def _pool_ranges(h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    return _ranges(h, w, kh, kw, sh, sw, ph, pw, 1, 1, oh, ow)


@njit
def avgpool_fwd(x, out, g):
    n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, _ceil_mode = g
    # Walk the window offsets (i, j); each adds a shifted, strided copy of the
    # input rows into the output rows (inner loops without bounds tests).
    r = _pool_ranges(h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    xf = x.reshape(-1)
    of = out.reshape(-1)
    scale = x.dtype.type(1.0 / (kh * kw))  # zero padding counts in the divisor
    usw = uint64(sw)
    for p in prange(n * c):
        o = uint64(p * oh * ow)
        for k in range(uint64(oh * ow)):
            of[o + k] = 0
        for i in range(kh):
            for j in range(kw):
                xa, xb = uint64(r[kh + j, 0]), uint64(r[kh + j, 1])
                for oy in range(r[i, 0], r[i, 1]):
                    src = uint64(p * h * w + (oy * sh + i - ph) * w + j - pw + r[kh + j, 0] * sw)
                    dst = o + uint64(oy * ow) + xa
                    for k in range(xb - xa):
                        of[dst + k] += xf[src + k * usw]
        for k in range(uint64(oh * ow)):
            of[o + k] *= scale


@njit
def avgpool_bwd(d_out, d_x, g):
    n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, _ceil_mode = g
    r = _pool_ranges(h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    gf = d_out.reshape(-1)
    df = d_x.reshape(-1)
    scale = d_x.dtype.type(1.0 / (kh * kw))
    usw = uint64(sw)
    for p in prange(n * c):
        plane = uint64(p * h * w)
        for k in range(uint64(h * w)):
            df[plane + k] = 0
        for i in range(kh):
            for j in range(kw):
                xa, xb = uint64(r[kh + j, 0]), uint64(r[kh + j, 1])
                for oy in range(r[i, 0], r[i, 1]):
                    dst = uint64(p * h * w + (oy * sh + i - ph) * w + j - pw + r[kh + j, 0] * sw)
                    src = uint64(p * oh * ow + oy * ow) + xa
                    for k in range(xb - xa):
                        df[dst + k * usw] += gf[src + k] * scale


@njit_reduce
def adaptive_avgpool_fwd(x, out, n, c, h, w, oh, ow):
    xf = x.reshape(-1)
    for p in prange(n * c):
        img, ch = p // c, p % c
        plane = uint64(p * h * w)
        for oy in range(oh):
            ya, yb = oy * h // oh, ((oy + 1) * h + oh - 1) // oh
            for ox in range(ow):
                xa, xb = ox * w // ow, ((ox + 1) * w + ow - 1) // ow
                acc = 0.0
                if xa == 0 and xb == w:  # full-width bins (global pooling): one block
                    start = plane + uint64(ya * w)
                    for k in range(uint64((yb - ya) * w)):
                        acc += xf[start + k]
                else:
                    for iy in range(ya, yb):
                        row = plane + uint64(iy * w)
                        for ix in range(uint64(xa), uint64(xb)):
                            acc += xf[row + ix]
                out[img, ch, oy, ox] = acc / ((yb - ya) * (xb - xa))


@njit
def adaptive_avgpool_bwd(d_out, d_x, n, c, h, w, oh, ow):
    for p in prange(n * c):
        img, ch = p // c, p % c
        d_x[img, ch] = 0
        for oy in range(oh):
            ya, yb = oy * h // oh, ((oy + 1) * h + oh - 1) // oh
            for ox in range(ow):
                xa, xb = ox * w // ow, ((ox + 1) * w + ow - 1) // ow
                v = d_x.dtype.type(d_out[img, ch, oy, ox] / ((yb - ya) * (xb - xa)))
                for iy in range(ya, yb):
                    for ix in range(xa, xb):
                        d_x[img, ch, iy, ix] += v


# -------------------------------------------------------------- batchnorm
# x is viewed as (N, C, S), S = H*W or 1.  Reductions read x in memory order:
# one task per fixed block of images (bn_block: a function of N only) sums
# every channel of its images into its own partial sums, added in block order
# afterwards: float64 accumulators, the same order at any thread count.


@njit_serial
def bn_block(n):
    """Images per block: at least 4, at most 256 blocks (as csrc/batchnorm.c)."""
    return max(4, (n + 255) // 256)


@njit_serial
def _block_totals(part, sum_dy, sum_dy_xmu):
    """The backward reductions' per-block sums (blocks, C, 2) added in block order."""
    for ch in range(part.shape[1]):
        a = 0.0
        b = 0.0
        for bl in range(part.shape[0]):
            a += part[bl, ch, 0]
            b += part[bl, ch, 1]
        sum_dy[ch] = a
        sum_dy_xmu[ch] = b


@njit_reduce
def bn_stats(x, mean, var, n, c, s):
    x3 = x.reshape(n, c, s)
    block = bn_block(n)
    blocks = (n + block - 1) // block
    shift = np.empty(c)  # sums of x - K: no cancellation when |mean| >> std
    for ch in range(c):
        shift[ch] = x3[0, ch, 0]
    part = np.zeros((blocks, c, 2))
    for b in prange(blocks):
        for img in range(b * block, min(n, (b + 1) * block)):
            for ch in range(c):
                k0 = shift[ch]
                s1 = 0.0
                s2 = 0.0
                for k in range(s):
                    d = np.float64(x3[img, ch, k]) - k0
                    s1 += d
                    s2 += d * d
                part[b, ch, 0] += s1
                part[b, ch, 1] += s2
    count = n * s
    for ch in range(c):
        s1 = 0.0
        s2 = 0.0
        for b in range(blocks):
            s1 += part[b, ch, 0]
            s2 += part[b, ch, 1]
        m = s1 / count
        mean[ch] = shift[ch] + m
        v = s2 / count - m * m
        var[ch] = 0.0 if v < 0 else v  # rounding below 0 clamped; NaN passes


@njit
def channel_affine(x, a, b, res, out, n, c, s, relu, has_res):
    xf = x.reshape(-1)
    rf = res.reshape(-1)
    of = out.reshape(-1)
    zero = out.dtype.type(0)
    for p in prange(n * c):
        ak, bk = a[p % c], b[p % c]
        base = uint64(p * s)
        if has_res:
            for k in range(uint64(s)):
                v = xf[base + k] * ak + bk + rf[base + k]
                of[base + k] = zero if relu and v < zero else v
        elif relu:
            for k in range(uint64(s)):
                v = xf[base + k] * ak + bk
                of[base + k] = zero if v < zero else v  # NaN stays NaN
        else:
            for k in range(uint64(s)):
                of[base + k] = xf[base + k] * ak + bk


@njit_reduce
def bn_bwd_reduce(d_out, x, mean, mask, sum_dy, sum_dy_xmu, n, c, s, has_mask):
    g3 = d_out.reshape(n, c, s)
    x3 = x.reshape(n, c, s)
    m3 = mask.reshape(n, c, s)
    block = bn_block(n)
    blocks = (n + block - 1) // block
    part = np.zeros((blocks, c, 2))
    for bl in prange(blocks):
        for img in range(bl * block, min(n, (bl + 1) * block)):
            for ch in range(c):
                m = np.float64(mean[ch])
                a = 0.0
                b = 0.0
                for k in range(s):
                    g = np.float64(g3[img, ch, k])
                    if has_mask and not m3[img, ch, k] > 0:
                        g = 0.0  # a unit the ReLU after BatchNorm zeroed
                    a += g
                    b += g * (np.float64(x3[img, ch, k]) - m)
                part[bl, ch, 0] += a
                part[bl, ch, 1] += b
    _block_totals(part, sum_dy, sum_dy_xmu)


@njit
def bn_bwd_apply(d_out, x, mean, mask, k_dy, k_x, k_0, d_x, n, c, s, has_mask):
    gf = d_out.reshape(-1)
    xf = x.reshape(-1)
    mf = mask.reshape(-1)
    of = d_x.reshape(-1)
    zero = d_x.dtype.type(0)
    for p in prange(n * c):
        ch = p % c
        a, b, z, m = k_dy[ch], k_x[ch], k_0[ch], mean[ch]
        base = uint64(p * s)
        if has_mask:
            for k in range(uint64(s)):
                g = gf[base + k] if mf[base + k] > zero else zero
                of[base + k] = g * a + (xf[base + k] - m) * b + z
        else:
            for k in range(uint64(s)):
                of[base + k] = gf[base + k] * a + (xf[base + k] - m) * b + z


# ------------------------------------------ batchnorm + relu + max pool
# Non-overlapping windows, no padding, floor mode (functional checks it): each
# input position is in at most one window.  code = i * kw + j of the winner.


@njit
def bnpool_fwd(x, scale, shift, out, code, g):
    n, c, h, w, kh, kw, sh, sw, _ph, _pw, oh, ow, _ceil_mode = g
    xf = x.reshape(-1)
    of = out.reshape(-1)
    cf = code.reshape(-1)
    zero = out.dtype.type(0)
    fast22 = kh == 2 and kw == 2 and sh == 2 and sw == 2 and ow >= 8
    for p in prange(n * c):
        a, b = scale[p % c], shift[p % c]
        plane = uint64(p * h * w)
        for oy in range(oh):
            o = uint64(p * oh * ow + oy * ow)
            if fast22:  # the window unrolled: LLVM vectorises the row
                r0 = plane + uint64(2 * oy * w)
                r1 = r0 + uint64(w)
                for ox in range(uint64(ow)):
                    at = uint64(2) * ox
                    best = xf[r0 + at] * a + b
                    k = 0
                    v = xf[r0 + at + uint64(1)] * a + b
                    if _beats(v, best):
                        best = v
                        k = 1
                    v = xf[r1 + at] * a + b
                    if _beats(v, best):
                        best = v
                        k = 2
                    v = xf[r1 + at + uint64(1)] * a + b
                    if _beats(v, best):
                        best = v
                        k = 3
                    of[o + ox] = zero if best < zero else best  # the ReLU; NaN stays NaN
                    cf[o + ox] = k
                continue
            for ox in range(ow):
                base = plane + uint64(oy * sh * w + ox * sw)
                best = xf[base] * a + b
                k = 0
                for i in range(kh):
                    for j in range(kw):
                        v = xf[base + uint64(i * w + j)] * a + b
                        if _beats(v, best):
                            best = v
                            k = i * kw + j
                of[o + uint64(ox)] = zero if best < zero else best
                cf[o + uint64(ox)] = k


@njit
def _bnpool_positions(code, g):
    """Each pooled output's winner as a flat index into x; -1 for a code
    outside its window."""
    n, c, h, w, kh, kw, sh, sw, _ph, _pw, oh, ow, _ceil_mode = g
    cf = code.reshape(-1)
    off = np.empty(kh * kw, dtype=np.int64)  # plane offset of each window offset: no division per output
    for k in range(kh * kw):
        off[k] = (k // kw) * w + k % kw
    pos = np.empty(cf.size, dtype=np.int64)
    for p in prange(n * c):
        for oy in range(oh):
            row = p * h * w + oy * sh * w
            for ox in range(ow):
                j = (p * oh + oy) * ow + ox
                k = cf[j]
                pos[j] = -1 if k >= kh * kw else row + ox * sw + off[k]
    return pos


@njit_reduce
def _bnpool_bwd_reduce(d_out, x, mean, out, pos, sum_dy, sum_dy_xmu, g):
    n, c, h, w, kh, kw, sh, sw, _ph, _pw, oh, ow, _ceil_mode = g
    xf, gf, of = x.reshape(-1), d_out.reshape(-1), out.reshape(-1)
    block = bn_block(n)
    blocks = (n + block - 1) // block
    part = np.zeros((blocks, c, 2))
    for bl in prange(blocks):
        for img in range(bl * block, min(n, (bl + 1) * block)):
            for ch in range(c):
                m = np.float64(mean[ch])
                a = 0.0
                b = 0.0
                for j in range((img * c + ch) * oh * ow, (img * c + ch + 1) * oh * ow):
                    # a winner the ReLU zeroed adds 0 * (x - m): NaN for a NaN winner, as the reference
                    gv = np.float64(gf[j]) if of[j] > 0 else 0.0
                    a += gv
                    b += gv * (np.float64(xf[pos[j]]) - m)
                part[bl, ch, 0] += a
                part[bl, ch, 1] += b
    _block_totals(part, sum_dy, sum_dy_xmu)


@njit
def _bnpool_bwd_apply(d_out, x, mean, out, pos, k_dy, k_x, k_0, d_x, g):
    n, c, h, w, kh, kw, sh, sw, _ph, _pw, oh, ow, _ceil_mode = g
    xf, gf, of, df = x.reshape(-1), d_out.reshape(-1), out.reshape(-1), d_x.reshape(-1)
    for p in prange(n * c):
        ch = p % c
        a, b, z, m = k_dy[ch], k_x[ch], k_0[ch], mean[ch]
        plane = uint64(p * h * w)
        for k in range(uint64(h * w)):
            df[plane + k] = (xf[plane + k] - m) * b + z
        for j in range(p * oh * ow, (p + 1) * oh * ow):
            if of[j] > 0:
                at = pos[j]
                df[at] = gf[j] * a + (xf[at] - m) * b + z


def _checked(pos, g):
    """pos, or IndexError when a code lay outside its window (-1).  (The
    wrappers call the jitted kernels themselves: in a forked child
    _serial_twin rebinds only the names a kernel wrapper looks up.)"""
    bad = np.count_nonzero(pos < 0)
    if bad:
        raise IndexError(f"{bad} code value(s) outside their {g.kh}x{g.kw} window")
    return pos


def bnpool_bwd_reduce(d_out, x, mean, out, code, sum_dy, sum_dy_xmu, g):
    _bnpool_bwd_reduce(d_out, x, mean, out, _checked(_bnpool_positions(code, g), g), sum_dy, sum_dy_xmu, g)


def bnpool_bwd_apply(d_out, x, mean, out, code, k_dy, k_x, k_0, d_x, g):
    _bnpool_bwd_apply(d_out, x, mean, out, _checked(_bnpool_positions(code, g), g), k_dy, k_x, k_0, d_x, g)


def bnpool_bwd_fused(d_out, x, mean, out, code, gamma, inv_std, sum_dy, sum_dy_xmu, d_x, training, g):
    """_bn_terms.two_pass_pool_backward's steps, the winners' positions found once for both passes."""
    pos = _checked(_bnpool_positions(code, g), g)
    _bnpool_bwd_reduce(d_out, x, mean, out, pos, sum_dy, sum_dy_xmu, g)
    terms = _bn_terms.backward_terms(sum_dy, sum_dy_xmu, gamma, inv_std, g.n * g.h * g.w, training, x.dtype)
    _bnpool_bwd_apply(d_out, x, mean, out, pos, *terms, d_x, g)


# ------------------------------------------- convolution + max pool
# conv_maxpool_fwd computes the convolution into a scratch array, one
# (image, filter) plane per task, then pools it with maxpool_fwd.  (A fused
# per-plane pool, as in C, needed a second copy of maxpool_fwd's loop: called
# as a helper from a prange loop it ran 8x slower.)  The gradients read only
# the winners, as the C kernels.  CNN does not fuse with this backend
# (FUSE_CONV_POOL): its separate layers are faster.
# Pooled out/idx/d_out: (N, F, PH, PW).


@njit
def conv_maxpool_fwd(x, wt, b, out, idx, cg, pg):
    n, c, h, w, f, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow, _groups = cg
    r = _ranges(h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow)
    xf = x.reshape(-1)
    conv = np.empty((n, f, oh, ow), dtype=x.dtype)
    cf = conv.reshape(-1)
    usw = uint64(sw)
    for t in prange(n * f):
        img = t // f
        fi = t % f
        base = uint64(t * oh * ow)
        for k in range(uint64(oh * ow)):
            cf[base + k] = b[fi]
        for ch in range(c):
            for i in range(fh):
                for j in range(fw):
                    wv = wt[fi, ch, i, j]
                    lo, hi = r[fh + j, 0], r[fh + j, 1]
                    if hi <= lo:
                        continue
                    for oy in range(r[i, 0], r[i, 1]):
                        d = base + uint64(oy * ow + lo)
                        s = uint64(((img * c + ch) * h + oy * sh + i * dh - ph) * w + j * dw - pw + lo * sw)
                        for k in range(uint64(hi - lo)):
                            cf[d + k] += wv * xf[s + k * usw]
    _maxpool_fwd(conv, out, idx, pg)


@njit
def im2row(x, rows, cg, uh, uw):
    """rows (N*UH*UW, C*FH*FW) <- the patches of the outputs (UH, UW) a pool
    reads, taps ordered (i, j, ch), from a zero-padded (HP, WP, C) copy of
    each image (see csrc/conv_rows_tmpl.h)."""
    n, c, h, w, _f, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow, _groups = cg
    taps = c * fh * fw
    hp, wp = h + 2 * ph, w + 2 * pw
    rf = rows.reshape(-1)
    uc = uint64(c)
    for img in prange(n):
        xh = np.zeros(hp * wp * c, dtype=x.dtype)
        for ch in range(c):
            for y in range(h):
                base = uint64(((y + ph) * wp + pw) * c + ch)
                for x0 in range(uint64(w)):
                    xh[base + x0 * uc] = x[img, ch, y, x0]
        for oy in range(uh):
            for ox in range(uw):
                row = uint64(((img * uh + oy) * uw + ox) * taps)
                for i in range(fh):
                    for j in range(fw):
                        src = uint64(((oy * sh + i * dh) * wp + ox * sw + j * dw) * c)
                        dst = row + uint64((i * fw + j) * c)
                        for ch in range(uc):
                            rf[dst + ch] = xh[src + ch]


@njit
def rows_maxpool(y, bias, out, idx, pg, uh, uw):
    """out, idx (N, F, PH, PW) <- max pool of y + bias, y (N*UH*UW, F) the
    GEMM's rows; idx = oy*OW + ox in the full (OH, OW) output (as C)."""
    n, f, oh, ow, kh, kw, psh, psw, _ph, _pw, poh, pow_, _ceil_mode = pg
    yf = y.reshape(-1)
    for img in prange(n):
        best = np.empty(f, dtype=y.dtype)
        at = np.empty(f, dtype=np.int64)
        for py in range(poh):
            for px in range(pow_):
                for i in range(kh):
                    for j in range(kw):
                        oy, ox = py * psh + i, px * psw + j
                        base = uint64(((img * uh + oy) * uw + ox) * f)
                        for fi in range(f):
                            v = yf[base + uint64(fi)] + bias[fi]
                            if (i == 0 and j == 0) or _beats(v, best[fi]):
                                best[fi] = v
                                at[fi] = oy * ow + ox
                for fi in range(f):
                    out[img, fi, py, px] = best[fi]
                    idx[img, fi, py, px] = at[fi]


@njit_serial
def _window_pos(at, py, px, ow, kh, kw, psh, psw):
    """(row, column) of plane index ``at`` in the conv output, or (-1, -1) if
    it is outside the window of pooled element (py, px).  The row by
    comparisons within the window: no integer division per element."""
    oy = py * psh
    for r in range(1, kh):
        if at >= (py * psh + r) * ow:
            oy += 1
    ox = at - oy * ow
    if px * psw <= ox < px * psw + kw:
        return oy, ox
    return -1, -1


_GRAD_BLOCK = 4  # images per task in conv_maxpool_bwd_params
_GRAD_WAVE = 64  # blocks whose partial sums are held at once


@njit_serial
def _used_outputs(oh, ow, kh, kw, psh, psw, poh, pow_):
    """Rows and columns of the convolution's output that the pool reads."""
    return min(oh, (poh - 1) * psh + kh), min(ow, (pow_ - 1) * psw + kw)


@njit
def conv_maxpool_bwd_params(x, d_out, mask, idx, d_w, d_b, cg, pg, has_mask):
    """Only the winners received gradient: each pooled element adds
    g * (the taps under its winner, and a 1 for the bias), read from the
    image's patch table (im2col transposed).  A task is a fixed block of
    images with its own partial sums, added in block order: the result does
    not depend on the thread count (as the C kernel)."""
    n, c, h, w, f, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow, _groups = cg
    _n, _f, _oh, _ow, kh, kw, psh, psw, _ph, _pw, poh, pow_, _ceil_mode = pg
    r = _ranges(h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow)
    taps = c * fh * fw
    tp = taps + 1
    utp = uint64(tp)
    blocks = (n + _GRAD_BLOCK - 1) // _GRAD_BLOCK
    wave = min(blocks, _GRAD_WAVE)
    part = np.empty((wave, f, tp))  # a wave of blocks' partial sums at a time: bounded memory
    total = np.zeros((f, tp))
    bad = np.zeros(blocks, dtype=np.int64)
    for b0 in range(0, blocks, wave):
        b1 = min(blocks, b0 + wave)
        part[:] = 0
        for blk in prange(b0, b1):
            table = np.zeros(oh * ow * tp, dtype=x.dtype)  # flat (OH*OW, taps + 1); padding taps stay 0
            table2 = table.reshape(oh * ow, tp)
            loc = np.empty(tp, dtype=x.dtype)
            for img in range(blk * _GRAD_BLOCK, min((blk + 1) * _GRAD_BLOCK, n)):
                for ch in range(c):
                    for i in range(fh):
                        for j in range(fw):
                            t = (ch * fh + i) * fw + j
                            for oy in range(r[i, 0], r[i, 1]):
                                for ox in range(r[fh + j, 0], r[fh + j, 1]):
                                    table[uint64((oy * ow + ox) * tp + t)] = x[img, ch, oy * sh + i * dh - ph,
                                                                               ox * sw + j * dw - pw]
                for o in range(oh * ow):
                    table[uint64(o * tp + taps)] = 1
                for fi in range(f):
                    loc[:] = 0
                    for py in range(poh):
                        for px in range(pow_):
                            at = idx[img, fi, py, px]
                            if _window_pos(at, py, px, ow, kh, kw, psh, psw)[0] < 0:
                                bad[blk] += 1
                                continue
                            g = d_out[img, fi, py, px]
                            if g == 0 or (has_mask and mask[img, fi, py, px] <= 0):
                                continue  # adds nothing (a unit the ReLU after the pool zeroed)
                            if tp >= 32:  # flat unsigned offsets vectorise (20 % faster here)
                                row = uint64(at * tp)
                                for t in range(utp):
                                    loc[t] += g * table[row + t]
                            else:  # a few taps: the 2-D form ran 20 % faster
                                for t in range(tp):
                                    loc[t] += g * table2[at, t]
                    for t in range(tp):
                        part[blk - b0, fi, t] += loc[t]
        for blk in range(b1 - b0):  # in block order: the same sums at any thread count
            total += part[blk]
    if bad.sum():
        raise IndexError("an index points outside its pooling window")
    d_wf = d_w.reshape(f, taps)
    for fi in range(f):
        for t in range(taps):
            d_wf[fi, t] = total[fi, t]
        d_b[fi] = total[fi, taps]


@njit
def conv_maxpool_bwd_input(d_out, mask, idx, wt, d_x, cg, pg, has_mask):
    """Only the winners received gradient: each pooled element adds g * (its
    filter's weights) onto the input patch its winner read.  Per image (so the
    result does not depend on the thread count), as the C kernel: winners
    bucketed by output position, each patch's gradient summed once with the
    weights permuted to (i, j, ch) order, then added onto a zero-padded
    (HP, WP, C) copy of the image, whose interior is d_x."""
    n, c, h, w, f, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow, _groups = cg
    _n, _f, _oh, _ow, kh, kw, psh, psw, _ph, _pw, poh, pow_, _ceil_mode = pg
    taps = c * fh * fw
    uh, uw = _used_outputs(oh, ow, kh, kw, psh, psw, poh, pow_)
    positions = uh * uw
    pooled = f * poh * pow_
    hp, wp = h + 2 * ph, w + 2 * pw
    wperm = np.empty(f * taps, dtype=wt.dtype)
    for fi in range(f):
        for ch in range(c):
            for i in range(fh):
                for j in range(fw):
                    wperm[fi * taps + (i * fw + j) * c + ch] = wt[fi, ch, i, j]
    bad = np.zeros(n, dtype=np.int64)
    utaps, uc = uint64(taps), uint64(c)
    for img in prange(n):
        start = np.zeros(positions + 1, dtype=np.int64)
        rows = np.empty(pooled, dtype=np.int64)  # each pooled element's winner position, or -1
        for fi in range(f):
            for py in range(poh):
                for px in range(pow_):
                    k = (fi * poh + py) * pow_ + px
                    oy, ox = _window_pos(idx[img, fi, py, px], py, px, ow, kh, kw, psh, psw)
                    rows[k] = oy * uw + ox if oy >= 0 else -1
                    if oy < 0:
                        bad[img] += 1
                        continue
                    if d_out[img, fi, py, px] == 0 or (has_mask and mask[img, fi, py, px] <= 0):
                        rows[k] = -1  # adds nothing (a unit the ReLU after the pool zeroed)
                        continue
                    start[rows[k] + 1] += 1
        for r in range(positions):
            start[r + 1] += start[r]
        fill = start[:positions].copy()
        gs = np.empty(pooled, dtype=d_out.dtype)
        ws = np.empty(pooled, dtype=np.uint64)  # offset of the filter's row in wperm
        for fi in range(f):
            for py in range(poh):
                for px in range(pow_):
                    k = (fi * poh + py) * pow_ + px
                    if rows[k] < 0:
                        continue
                    e = fill[rows[k]]
                    fill[rows[k]] += 1
                    gs[e] = d_out[img, fi, py, px]
                    ws[e] = uint64(fi * taps)
        dxh = np.zeros(hp * wp * c, dtype=d_out.dtype)
        acc = np.empty(taps, dtype=d_out.dtype)
        for r in range(positions):
            if start[r + 1] == start[r]:
                continue  # no window's winner
            acc[:] = 0
            for e in range(start[r], start[r + 1]):
                g, base = gs[e], ws[e]
                for t in range(utaps):
                    acc[t] += g * wperm[base + t]
            oy, ox = r // uw, r % uw
            for i in range(fh):
                for j in range(fw):
                    dst = uint64(((oy * sh + i * dh) * wp + ox * sw + j * dw) * c)
                    src = uint64((i * fw + j) * c)
                    for ch in range(uc):
                        dxh[dst + ch] += acc[src + ch]
        for ch in range(c):
            for y in range(h):
                base = uint64(((y + ph) * wp + pw) * c + ch)
                for x0 in range(uint64(w)):
                    d_x[img, ch, y, x0] = dxh[base + x0 * uc]
    if bad.sum():
        raise IndexError("an index points outside its pooling window")


# the statistics (reduction), the coefficients and the affine (apply) in turn (_bn_terms.py)
bn_fwd_fused = _bn_terms.two_pass_forward(globals())
bn_bwd_fused = _bn_terms.two_pass_backward(globals())
bnpool_fwd_fused = _bn_terms.two_pass_pool_forward(globals())


# ------------------------------------------------------------ elementwise


@njit
def relu(x, out, size):
    """out = max(x, 0) (NaN kept, -0 to +0, as NumPy's maximum)."""
    xf, of = x.reshape(-1), out.reshape(-1)
    zero = x.dtype.type(0)
    for k in prange(size):
        of[k] = zero if xf[k] <= zero else xf[k]


@njit
def relu_bwd(d_out, out, d_x, size):
    """d_x = d_out * (out > 0), a product as the reference."""
    gf, of, df = d_out.reshape(-1), out.reshape(-1), d_x.reshape(-1)
    zero = out.dtype.type(0)
    for k in prange(size):
        df[k] = gf[k] * out.dtype.type(of[k] > zero)


@njit
def relu_bwd_add(d_out, out, other, d_x, size):
    """d_x = other + d_out * (out > 0), relu_bwd and add in one pass."""
    # One statement per view: Numba 0.68.1 miscompiles this prange loop when the
    # four views come from one tuple assignment (it writes garbage to d_x).
    gf = d_out.reshape(-1)
    of = out.reshape(-1)
    af = other.reshape(-1)
    df = d_x.reshape(-1)
    zero = out.dtype.type(0)
    for k in prange(size):
        df[k] = af[k] + gf[k] * out.dtype.type(of[k] > zero)


@njit
def add(a, b, out, size):
    """out = a + b."""
    af, bf, of = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    for k in prange(size):
        of[k] = af[k] + bf[k]


@njit
def crop_planes(src, dst, planes, h, w, rows, cols):
    """dst (planes, rows, cols) = src (planes, h, w)[:, :rows, :cols]."""
    s3, d3 = src.reshape(planes, h, w), dst.reshape(planes, rows, cols)
    for p in prange(planes):
        for y in range(rows):
            for x in range(cols):
                d3[p, y, x] = s3[p, y, x]


@njit
def pad_planes(src, dst, planes, h, w, rows, cols):
    """dst (planes, h, w) = src (planes, rows, cols) in the top-left corner, zeros elsewhere."""
    s3, d3 = src.reshape(planes, rows, cols), dst.reshape(planes, h, w)
    zero = dst.dtype.type(0)
    for p in prange(planes):
        for y in range(h):
            for x in range(w):
                d3[p, y, x] = s3[p, y, x] if y < rows and x < cols else zero


# ------------------------------------------------------------ optimizer


@njit_serial
def sgd_update(value, grad, velocity, n, lr, momentum, weight_decay, nesterov, first):
    """PyTorch's SGD in one pass (see csrc/optim_tmpl.h); serial: parameters are small."""
    vf, gf, mf = value.reshape(-1), grad.reshape(-1), velocity.reshape(-1)
    t = value.dtype.type
    lr_, m, wd = t(lr), t(momentum), t(weight_decay)
    for k in range(n):
        g = gf[k] + wd * vf[k]
        if momentum == 0:
            vf[k] -= lr_ * g
            continue
        v = g if first else m * mf[k] + g
        mf[k] = v
        vf[k] -= lr_ * (g + m * v if nesterov else v)



# ---------------------------------------------------------- small calls
# A parallel loop wakes the sleeping second thread: an empty 2-thread prange
# took ~90 us here, 1 us on one thread.  As the C kernels (FC_GRAIN in
# csrc/common.h), a call whose arrays hold fewer than GRAIN elements runs on
# the calling thread alone; results do not depend on the thread count.
GRAIN = 32768
_PARALLEL_KERNELS = ("im2col", "col2im", "maxpool_fwd", "maxpool_bwd", "maxunpool", "avgpool_fwd",
                     "avgpool_bwd", "adaptive_avgpool_fwd", "adaptive_avgpool_bwd", "bn_stats",
                     "channel_affine", "bn_bwd_reduce", "bn_bwd_apply", "conv_maxpool_fwd", "im2row",
                     "rows_maxpool", "conv_maxpool_bwd_params", "conv_maxpool_bwd_input", "relu", "relu_bwd",
                     "relu_bwd_add", "add", "crop_planes", "pad_planes", "bnpool_fwd", "bnpool_bwd_reduce",
                     "bnpool_bwd_apply", "bnpool_bwd_fused")


_told_about_compiling = False


def _say_compiling_once(kernel) -> None:
    """The first kernel without machine code says what the pause is about."""
    global _told_about_compiling
    if not _told_about_compiling and not getattr(kernel, "signatures", True):
        _told_about_compiling = True
        logging.getLogger("fastconv").info(
            "Numba backend: preparing its kernels on first use (the first time on a machine this "
            "compiles them, 10-20 s; later runs load them from Numba's cache)")


def _one_thread_when_small(kernel):
    def call(*args):
        _say_compiling_once(kernel)
        if _forked_from_omp_parent:
            return _serial_twin(call.__name__)(*args)
        threads = numba.get_num_threads()
        if threads == 1 or sum(a.size for a in args if isinstance(a, np.ndarray)) >= GRAIN:
            return kernel(*args)
        numba.set_num_threads(1)
        try:
            return kernel(*args)
        finally:
            numba.set_num_threads(threads)

    call.__name__ = kernel.__name__
    call.__doc__ = kernel.__doc__
    call.kernel = kernel  # the jitted (or plain) function itself
    return call


# fork(): Numba's GNU OpenMP threading layer kills a child that launches a
# parallel region after its parent started the layer ("fork() called from a
# process already using GNU OpenMP").  Such a child runs *serial twins* of the
# kernels instead: the same Python source compiled with parallel=False (prange
# is then range, so every result is bit-identical), inside a namespace where
# the kernels they call are serial twins too.  They are compiled on first use
# in the child (cached on disk under their own names, `<name>_serial`).
_forked_from_omp_parent = False
_serial_namespace: dict | None = None


def _serial_twin(name: str):
    global _serial_namespace
    if _serial_namespace is None:
        namespace = dict(globals())
        for key, value in globals().items():
            if key in _PARALLEL_KERNELS:
                value = value.kernel
            if isinstance(value, numba.core.registry.CPUDispatcher) and value.targetoptions.get("parallel"):
                namespace[key] = _compile_serial(value.py_func, namespace, value.targetoptions)
            elif key in _PARALLEL_KERNELS:  # a plain Python function calling jitted ones
                namespace[key] = _rebind(value, namespace)
        _serial_namespace = namespace
    return _serial_namespace[name]


def _rebind(func, namespace):
    twin = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    twin.__qualname__ = func.__qualname__ + "_serial"  # its own Numba cache entry
    return twin


def _compile_serial(func, namespace, options):
    options = {k: v for k, v in options.items() if k != "nopython"}  # njit sets it itself
    return numba.njit(**{**options, "parallel": False})(_rebind(func, namespace))


def _after_fork_in_child():
    global _forked_from_omp_parent
    from numba.np.ufunc import parallel

    if parallel._threading_layer == "omp":
        _forked_from_omp_parent = True


os.register_at_fork(after_in_child=_after_fork_in_child)

for _name in _PARALLEL_KERNELS:
    globals()[_name] = _one_thread_when_small(globals()[_name])
del _name

# ------------------------------------------------------------ convolution
# im2col + NumPy's matmul in chunks of images (backends/_gemm_conv.py).
conv2d_fwd, conv2d_bwd = _gemm_conv.make_conv2d_kernels(im2col, col2im)
# Dense layers: NumPy's matmul, as the reference (a Numba loop nest is far
# from a BLAS GEMM; the C backend has its own kernels, csrc/linear_tmpl.h).
linear_fwd, linear_bwd = numpy_ref.linear_fwd, numpy_ref.linear_bwd
# The C backend's direct, channel-vector and Winograd kernels are more ways
# to compute the same convolution; here they are the same computation.
conv2d_direct_fwd, conv2d_direct_bwd = conv2d_fwd, conv2d_bwd
conv2d_ocvec_fwd, conv2d_ocvec_bwd = conv2d_fwd, conv2d_bwd
conv2d_winograd_fwd, conv2d_winograd_bwd = conv2d_fwd, conv2d_bwd
