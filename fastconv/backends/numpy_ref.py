"""The NumPy reference backend: vectorised, readable, and the yardstick every
fast kernel is tested against.  It stays forever.

Same contract as the other backends: inputs, then preallocated outputs, then
the geometry record (fastconv._geometry) or integer sizes; each function only
fills its outputs.
"""
from __future__ import annotations

import numpy as np

from . import _bn_terms, _gemm_conv

# The reference computes a CNN layer by layer (no fused stages; layers/fused.py).
FUSE_CONV_POOL = False
FUSE_BN_POOL = False


def _window(start: int, count: int, step: int) -> slice:
    """The ``count`` positions start, start+step, ... as an exact slice."""
    return slice(start, start + step * (count - 1) + 1, step)


def _conv_sizes(g):
    """A ConvGeometry's fields as the kernels name them (the filter is fh x fw)."""
    n, c, h, w, _f, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow, _groups = g
    return n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow


def im2col(x, col, g):
    """col[(c*FH + i)*FW + j, (n*OH + oh)*OW + ow] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]."""
    n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow = _conv_sizes(g)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    col6 = col.reshape(c, fh, fw, n, oh, ow)
    for i in range(fh):
        for j in range(fw):
            patch = x_pad[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)]
            col6[:, i, j] = patch.transpose(1, 0, 2, 3)  # (N, C, ..) -> (C, N, ..)


def col2im(col, x, g):
    """Adjoint of im2col: add every column entry back where it came from."""
    n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow = _conv_sizes(g)
    x_pad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    col6 = col.reshape(c, fh, fw, n, oh, ow)
    for i in range(fh):
        for j in range(fw):
            x_pad[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)] += col6[
                :, i, j
            ].transpose(1, 0, 2, 3)
    x[...] = x_pad[:, :, ph : ph + h, pw : pw + w]



# ------------------------------------- few-tap convolution + max pool
# Pooled out, idx and d_out: (N, F, PH, PW).
def _tap_patches(x, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
    """(i, j, x_pad window read by tap (i, j)) for every kernel tap: (N, C, OH, OW) each."""
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for i in range(fh):
        for j in range(fw):
            yield i, j, x_pad[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)]


# conv2d_maxpool runs this reference's own direct definition (conv_maxpool_fwd)
# for every tap count; im2row and rows_maxpool below are the references of the
# fast backends' many-tap path (tests/test_contract.py checks them).
CONV_MAXPOOL_VIA_ROWS = False


def conv_maxpool_direct(cg, pg) -> bool:
    """Whether conv2d_maxpool runs conv_maxpool_fwd for this geometry
    (every backend answers; the reference always does)."""
    return True


def im2row(x, rows, cg, uh, uw):
    """rows (N*UH*UW, C*FH*FW) <- the patch of each output (oy < UH, ox < UW),
    taps ordered (i, j, ch) (the layout the fast backends' GEMM reads)."""
    n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow = _conv_sizes(cg)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = rows.reshape(n, uh, uw, fh, fw, c)
    for i in range(fh):
        for j in range(fw):
            patch = x_pad[:, :, i * dh:i * dh + (uh - 1) * sh + 1:sh, j * dw:j * dw + (uw - 1) * sw + 1:sw]
            out[:, :, :, i, j, :] = patch.transpose(0, 2, 3, 1)


def rows_maxpool(y, bias, out, idx, pg, uh, uw):
    """out, idx (N, F, PH, PW) <- max pool of y + bias, y (N*UH*UW, F) the
    GEMM's rows; idx = oy*OW + ox in the full (OH, OW) output; ties to the
    first, NaN to the first NaN (as max_pool2d)."""
    n, f, oh, ow, kh, kw, psh, psw, _, _, poh, pow_, _ = pg
    conv = (y.reshape(n, uh, uw, f) + bias).transpose(0, 3, 1, 2)
    best = at = None
    for i in range(kh):
        for j in range(kw):
            v = conv[:, :, i:i + (poh - 1) * psh + 1:psh, j:j + (pow_ - 1) * psw + 1:psw]
            pos = (np.arange(poh)[:, None] * psh + i) * ow + (np.arange(pow_)[None, :] * psw + j)
            if best is None:
                best, at = v.copy(), np.broadcast_to(pos, v.shape).copy()
                continue
            beats = (v > best) | (np.isnan(v) & ~np.isnan(best))
            best, at = np.where(beats, v, best), np.where(beats, pos, at)
    out[...] = best
    idx[...] = at


def conv_maxpool_fwd(x, wt, b, out, idx, cg, pg):
    """The definition: the convolution (tap by tap), then max pool (no padding)."""
    n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow = _conv_sizes(cg)
    f = cg.f
    conv = np.empty((n, f, oh, ow), dtype=x.dtype)
    conv[...] = b[None, :, None, None]
    for i, j, patch in _tap_patches(x, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
        conv += np.tensordot(wt[:, :, i, j], patch, axes=([1], [1])).transpose(1, 0, 2, 3)
    maxpool_fwd(conv, out, idx, pg)


def _relu_masked(d_out, mask, has_mask):
    """d_out where the ReLU after the pool or BatchNorm let its output through (mask > 0), else 0."""
    return np.where(mask > 0, d_out, d_out.dtype.type(0)) if has_mask else d_out


def conv_maxpool_bwd_params(x, d_out, mask, idx, d_w, d_b, cg, pg, has_mask):
    """Route the pooled gradient to the winners (max pool backward), then the
    convolution's weight and bias gradients: per tap, a sum over N, OH, OW."""
    n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow = _conv_sizes(cg)
    f, kh, kw, psh, psw, poh, pow_ = cg.f, pg.kh, pg.kw, pg.sh, pg.sw, pg.oh, pg.ow
    _check_windows(idx, oh, ow, kh, kw, psh, psw)
    d_out = _relu_masked(d_out, mask, has_mask)
    d_conv = np.empty((n, f, oh, ow), dtype=x.dtype)
    maxpool_bwd(d_out, idx, d_conv, n, f, oh, ow, poh, pow_)
    d_b[...] = d_conv.sum(axis=(0, 2, 3), dtype=np.float64)
    for i, j, patch in _tap_patches(x, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
        d_w[:, :, i, j] = np.tensordot(d_conv, patch, axes=([0, 2, 3], [0, 2, 3]))


def conv_maxpool_bwd_input(d_out, mask, idx, wt, d_x, cg, pg, has_mask):
    """Route the pooled gradient to the winners, then the convolution's input
    gradient: per tap, the filters' weights times d_conv, added onto the
    padded input where that tap read it."""
    n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow = _conv_sizes(cg)
    f, kh, kw, psh, psw, poh, pow_ = cg.f, pg.kh, pg.kw, pg.sh, pg.sw, pg.oh, pg.ow
    _check_windows(idx, oh, ow, kh, kw, psh, psw)
    d_out = _relu_masked(d_out, mask, has_mask)
    d_conv = np.empty((n, f, oh, ow), dtype=d_out.dtype)
    maxpool_bwd(d_out, idx, d_conv, n, f, oh, ow, poh, pow_)
    d_pad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=d_out.dtype)
    for i in range(fh):
        for j in range(fw):
            d_pad[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)] += np.tensordot(
                wt[:, :, i, j], d_conv, axes=([0], [1])).transpose(1, 0, 2, 3)
    d_x[...] = d_pad[:, :, ph:ph + h, pw:pw + w]


def _check_windows(idx, oh, ow, kh, kw, psh, psw):
    """Every index must name a position inside its own pooling window."""
    poh, pow_ = idx.shape[2:]
    iy, ix = np.divmod(idx, ow)
    y0 = (np.arange(poh) * psh)[:, None]
    x0 = (np.arange(pow_) * psw)[None, :]
    bad = np.count_nonzero((idx < 0) | (iy < y0) | (iy >= y0 + kh) | (ix < x0) | (ix >= x0 + kw))
    if bad:
        raise IndexError(f"{bad} index value(s) outside their pooling window")

# ---------------------------------------------------------------- pooling
def _pool_offsets(kh, kw):
    """Window offsets (i, j) in row-major order: the tie-break order."""
    return [(i, j) for i in range(kh) for j in range(kw)]


def maxpool_fwd(x, out, idx, g):
    """Max over each window; idx = h*W + w of the winner in its plane.
    Padding never wins (it is -inf); ties keep the first element in row-major
    window order; NaN beats everything (the first NaN is kept)."""
    n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, _ceil_mode = g
    best = np.empty((n, c, oh, ow), dtype=x.dtype)
    found = np.zeros((n, c, oh, ow), dtype=bool)
    oy = np.arange(oh)[:, None] * sh - ph  # window top-left, (OH, 1)
    ox = np.arange(ow)[None, :] * sw - pw  # (1, OW)
    for i, j in _pool_offsets(kh, kw):
        iy, ix = oy + i, ox + j  # input coordinates read by this offset
        valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)  # (OH, OW)
        v = x[:, :, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]
        beats = (v > best) | (np.isnan(v) & ~np.isnan(best))
        take = valid & (~found | beats)  # (N, C, OH, OW)
        best = np.where(take, v, best)
        idx[...] = np.where(take, iy * w + ix, idx)
        found |= valid
    out[...] = best


def maxpool_bwd(d_out, idx, d_x, n, c, h, w, oh, ow):
    """Route each gradient to its winner, adding where windows overlap."""
    _check_indices(idx, h * w)
    flat = d_x.reshape(n * c, h * w)
    flat[...] = 0
    planes = np.arange(n * c)[:, None]
    np.add.at(flat, (planes, idx.reshape(n * c, -1)), d_out.reshape(n * c, -1))


def maxunpool(x, idx, out, n, c, h, w, oh, ow):
    """Put each value back at its index; every other position is zero."""
    _check_indices(idx, h * w)
    flat = out.reshape(n * c, h * w)
    flat[...] = 0
    planes = np.arange(n * c)[:, None]
    flat[planes, idx.reshape(n * c, -1)] = x.reshape(n * c, -1)


def _check_indices(idx, size):
    bad = np.count_nonzero((idx < 0) | (idx >= size))
    if bad:
        raise IndexError(f"{bad} index value(s) outside [0, {size})")


def _zero_padded_windows(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """(N, C, OH, OW, KH, KW) view of the zero-padded input."""
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(x_pad, (kh, kw), axis=(2, 3))
    return win[:, :, ::sh, ::sw][:, :, :oh, :ow]


def avgpool_fwd(x, out, g):
    """Mean over each window, zero padding counted in the divisor."""
    n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, _ceil_mode = g
    out[...] = _zero_padded_windows(x, kh, kw, sh, sw, ph, pw, oh, ow).mean(axis=(4, 5))


def avgpool_bwd(d_out, d_x, g):
    n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, _ceil_mode = g
    grad_pad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=d_x.dtype)
    share = d_out / (kh * kw)
    for i, j in _pool_offsets(kh, kw):
        grad_pad[:, :, _window(i, oh, sh), _window(j, ow, sw)] += share
    d_x[...] = grad_pad[:, :, ph : ph + h, pw : pw + w]


def _adaptive_bins(size, out):
    """PyTorch's bins: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avgpool_fwd(x, out, n, c, h, w, oh, ow):
    for oy, (ya, yb) in enumerate(_adaptive_bins(h, oh)):
        for ox, (xa, xb) in enumerate(_adaptive_bins(w, ow)):
            out[:, :, oy, ox] = x[:, :, ya:yb, xa:xb].mean(axis=(2, 3))


def adaptive_avgpool_bwd(d_out, d_x, n, c, h, w, oh, ow):
    d_x[...] = 0
    for oy, (ya, yb) in enumerate(_adaptive_bins(h, oh)):
        for ox, (xa, xb) in enumerate(_adaptive_bins(w, ow)):
            d_x[:, :, ya:yb, xa:xb] += (d_out[:, :, oy, ox] / ((yb - ya) * (xb - xa)))[:, :, None, None]


# -------------------------------------------------------------- batchnorm
# x is viewed as (N, C, S): S = H*W, or 1 for (N, C) input.
def bn_stats(x, mean, var, n, c, s):
    """Per-channel mean and biased variance over N and S."""
    x3 = x.reshape(n, c, s)
    mean[...] = x3.mean(axis=(0, 2), dtype=np.float64)
    var[...] = x3.var(axis=(0, 2), dtype=np.float64)


def channel_affine(x, a, b, res, out, n, c, s, relu, has_res):
    """out = x * a[c] + b[c] (+ res with has_res); with relu, max(that, 0) (NaN stays NaN)."""
    o = out.reshape(n, c, s)
    o[...] = x.reshape(n, c, s) * a[:, None] + b[:, None]
    if has_res:
        o += res.reshape(n, c, s)
    if relu:
        np.maximum(o, o.dtype.type(0), out=o)


def bn_bwd_reduce(d_out, x, mean, mask, sum_dy, sum_dy_xmu, n, c, s, has_mask):
    """sum(dy) and sum(dy * (x - mean)) per channel."""
    g = _relu_masked(d_out, mask, has_mask).reshape(n, c, s).astype(np.float64)
    xmu = x.reshape(n, c, s) - mean[:, None].astype(np.float64)
    sum_dy[...] = g.sum(axis=(0, 2))
    sum_dy_xmu[...] = (g * xmu).sum(axis=(0, 2))


def bn_bwd_apply(d_out, x, mean, mask, k_dy, k_x, k_0, d_x, n, c, s, has_mask):
    """d_x = dy * k_dy[c] + (x - mean[c]) * k_x[c] + k_0[c]."""
    d_x.reshape(n, c, s)[...] = (
        _relu_masked(d_out, mask, has_mask).reshape(n, c, s) * k_dy[:, None]
        + (x.reshape(n, c, s) - mean[:, None]) * k_x[:, None]
        + k_0[:, None]
    )


# the statistics (reduction), the coefficients and the affine (apply) in turn (_bn_terms.py)
bn_fwd_fused = _bn_terms.two_pass_forward(globals())
bn_bwd_fused = _bn_terms.two_pass_backward(globals())
bnpool_fwd_fused = _bn_terms.two_pass_pool_forward(globals())
bnpool_bwd_fused = _bn_terms.two_pass_pool_backward(globals())


# ------------------------------------------ batchnorm + relu + max pool
# The windows do not overlap, no padding, floor mode (functional checks it).
def bnpool_fwd(x, scale, shift, out, code, g):
    """out = max(max over the window of x * scale[c] + shift[c], 0); code =
    the winner's window offset i*kw + j, chosen before the ReLU (ties to the
    first, NaN to the first NaN, as maxpool_fwd)."""
    n, c, h, w, kh, kw, sh, sw, _ph, _pw, oh, ow, _ceil_mode = g
    y = x * scale[:, None, None] + shift[:, None, None]
    best = None
    for k, (i, j) in enumerate(_pool_offsets(kh, kw)):
        v = y[:, :, _window(i, oh, sh), _window(j, ow, sw)]
        if best is None:
            best, code[...] = v, 0
            continue
        beats = (v > best) | (np.isnan(v) & ~np.isnan(best))
        best = np.where(beats, v, best)
        code[beats] = k
    out[...] = np.where(best < 0, best.dtype.type(0), best)  # NaN stays NaN


def _bnpool_winners(d_out, out, code, g):
    """(dy, pos), (N, C, OH*OW) each: the pooled gradient where out > 0 (else
    0) and its winner's position h*W + w in the plane."""
    n, c, h, w, kh, kw, sh, sw, _ph, _pw, oh, ow, _ceil_mode = g
    bad = np.count_nonzero(code >= kh * kw)
    if bad:
        raise IndexError(f"{bad} code value(s) outside their {kh}x{kw} window")
    i, j = np.divmod(code.astype(np.int64), kw)
    pos = (np.arange(oh)[:, None] * sh + i) * w + np.arange(ow)[None, :] * sw + j
    dy = np.where(out > 0, d_out, d_out.dtype.type(0))
    return dy.reshape(n, c, -1), pos.reshape(n, c, -1)


def bnpool_bwd_reduce(d_out, x, mean, out, code, sum_dy, sum_dy_xmu, g):
    """bn_bwd_reduce of the dense gradient the pool routes to its winners."""
    dy, pos = _bnpool_winners(d_out, out, code, g)
    xw = np.take_along_axis(x.reshape(g.n, g.c, -1), pos, axis=2)
    dy = dy.astype(np.float64)
    sum_dy[...] = dy.sum(axis=(0, 2))
    sum_dy_xmu[...] = (dy * (xw - mean[:, None].astype(np.float64))).sum(axis=(0, 2))


def bnpool_bwd_apply(d_out, x, mean, out, code, k_dy, k_x, k_0, d_x, g):
    """bn_bwd_apply of the dense gradient the pool routes to its winners."""
    dy, pos = _bnpool_winners(d_out, out, code, g)
    dense = np.zeros((g.n, g.c, g.h * g.w), dtype=x.dtype)
    np.put_along_axis(dense, pos, dy, axis=2)
    d_x.reshape(g.n, g.c, -1)[...] = (dense * k_dy[:, None] + (x.reshape(g.n, g.c, -1) - mean[:, None]) * k_x[:, None]
                                      + k_0[:, None])


# ------------------------------------------------------------ elementwise
def relu(x, out, size):
    """out = max(x, 0)."""
    np.maximum(x, x.dtype.type(0), out=out)


def relu_bwd(d_out, out, d_x, size):
    """d_x = d_out * (out > 0) (inf * 0 is NaN, silently, as in the compiled kernels)."""
    with np.errstate(invalid="ignore"):
        np.multiply(d_out, out > 0, out=d_x)


def relu_bwd_add(d_out, out, other, d_x, size):
    """d_x = other + d_out * (out > 0): relu_bwd, then add."""
    relu_bwd(d_out, out, d_x, size)
    np.add(other, d_x, out=d_x)


def add(a, b, out, size):
    """out = a + b."""
    np.add(a, b, out=out)


def crop_planes(src, dst, planes, h, w, rows, cols):
    """dst (planes, rows, cols) = src (planes, h, w)[:, :rows, :cols]."""
    dst.reshape(planes, rows, cols)[...] = src.reshape(planes, h, w)[:, :rows, :cols]


def pad_planes(src, dst, planes, h, w, rows, cols):
    """dst (planes, h, w) = src (planes, rows, cols) in the top-left corner, zeros elsewhere."""
    full = dst.reshape(planes, h, w)
    full[...] = 0
    full[:, :rows, :cols] = src.reshape(planes, rows, cols)


# ------------------------------------------------------------ dense layers
def linear_fwd(x, w, bias, out, n, k, f):
    """out (n, f) = x (n, k) @ w (k, f) + bias (f,) if given."""
    y = out.reshape(n, f)
    np.matmul(x.reshape(n, k), w.reshape(k, f), out=y)
    if bias is not None:
        y += bias


def linear_bwd(x, w, d_out, d_x, d_w, d_b, n, k, f):
    """d_w = x^T @ d_out, d_b = d_out's column sums, d_x = d_out @ w^T (each if given)."""
    dy = d_out.reshape(n, f)
    np.matmul(x.reshape(n, k).T, dy, out=d_w.reshape(k, f))
    if d_b is not None:
        d_b[...] = dy.sum(axis=0)
    if d_x is not None:
        np.matmul(dy, w.reshape(k, f).T, out=d_x.reshape(n, k))


# ------------------------------------------------------------ optimizer
def sgd_update(value, grad, velocity, n, lr, momentum, weight_decay, nesterov, first):
    """PyTorch's SGD, in place: g = grad + wd*value; v = momentum*v + g (v = g
    on the first step); value -= lr * (g + momentum*v if nesterov else v)."""
    t = value.dtype.type
    g = grad + t(weight_decay) * value
    if momentum == 0:
        value -= t(lr) * g
        return
    if first:
        velocity[...] = g
    else:
        velocity *= t(momentum)
        velocity += g
    value -= t(lr) * (g + t(momentum) * velocity if nesterov else velocity)


# ------------------------------------------------------------ convolution
# The readable form: im2col + matmul in chunks of images (backends/_gemm_conv.py).
conv2d_fwd, conv2d_bwd = _gemm_conv.make_conv2d_kernels(im2col, col2im)
# The C backend's direct, channel-vector and Winograd kernels are more ways
# to compute the same convolution; here they are the same computation.
conv2d_direct_fwd, conv2d_direct_bwd = conv2d_fwd, conv2d_bwd
conv2d_ocvec_fwd, conv2d_ocvec_bwd = conv2d_fwd, conv2d_bwd
conv2d_winograd_fwd, conv2d_winograd_bwd = conv2d_fwd, conv2d_bwd
