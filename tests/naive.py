"""Loop-by-loop definitions: obviously correct, slow.  The oracle for every backend."""
from __future__ import annotations

import numpy as np


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def im2col(x, fh, fw, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    oh, ow = out_size(h, fh, sh, ph, dh), out_size(w, fw, sw, pw, dw)
    col = np.zeros((c * fh * fw, n * oh * ow), dtype=x.dtype)
    for b in range(n):
        for ch in range(c):
            for i in range(fh):
                for j in range(fw):
                    for y in range(oh):
                        for z in range(ow):
                            iy = y * sh + i * dh - ph
                            iz = z * sw + j * dw - pw
                            if 0 <= iy < h and 0 <= iz < w:
                                col[(ch * fh + i) * fw + j, (b * oh + y) * ow + z] = x[b, ch, iy, iz]
    return col


def col2im(col, x_shape, fh, fw, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x_shape
    oh, ow = out_size(h, fh, sh, ph, dh), out_size(w, fw, sw, pw, dw)
    x = np.zeros(x_shape, dtype=col.dtype)
    for b in range(n):
        for ch in range(c):
            for i in range(fh):
                for j in range(fw):
                    for y in range(oh):
                        for z in range(ow):
                            iy = y * sh + i * dh - ph
                            iz = z * sw + j * dw - pw
                            if 0 <= iy < h and 0 <= iz < w:
                                x[b, ch, iy, iz] += col[(ch * fh + i) * fw + j, (b * oh + y) * ow + z]
    return x


def _beats(v, best):
    return v > best or (np.isnan(v) and not np.isnan(best))


def pool_out(size, k, s, p, ceil_mode=False):
    """PyTorch's pooling output size: with ceil_mode rounded up, unless the
    last window would start past the input and its left padding."""
    span = size + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x, k, s, p, ceil_mode=False):
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    n, c, h, w = x.shape
    oh, ow = pool_out(h, kh, sh, ph, ceil_mode), pool_out(w, kw, sw, pw, ceil_mode)
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    idx = np.zeros((n, c, oh, ow), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                for z in range(ow):
                    best, at = None, None
                    for i in range(kh):
                        for j in range(kw):
                            iy, iz = y * sh + i - ph, z * sw + j - pw
                            if 0 <= iy < h and 0 <= iz < w:
                                v = x[b, ch, iy, iz]
                                if best is None or _beats(v, best):
                                    best, at = v, iy * w + iz
                    out[b, ch, y, z], idx[b, ch, y, z] = best, at
    return out, idx


def max_pool2d_backward(d_out, idx, x_shape):
    d_x = np.zeros(x_shape, dtype=d_out.dtype)
    n, c, h, w = x_shape
    for b in range(n):
        for ch in range(c):
            for k, at in np.ndenumerate(idx[b, ch]):
                d_x[b, ch, at // w, at % w] += d_out[b, ch][k]
    return d_x


def max_unpool2d(x, idx, out_shape):
    out = np.zeros(out_shape, dtype=x.dtype)
    n, c, h, w = out_shape
    for b in range(n):
        for ch in range(c):
            for k, at in np.ndenumerate(idx[b, ch]):
                out[b, ch, at // w, at % w] = x[b, ch][k]
    return out


def avg_pool2d(x, k, s, p):
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                for z in range(ow):
                    total = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            iy, iz = y * sh + i - ph, z * sw + j - pw
                            if 0 <= iy < h and 0 <= iz < w:
                                total += x[b, ch, iy, iz]
                    out[b, ch, y, z] = total / (kh * kw)
    return out


def adaptive_avg_pool2d(x, oh, ow):
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for y in range(oh):
        ya, yb = int(np.floor(y * h / oh)), int(np.ceil((y + 1) * h / oh))
        for z in range(ow):
            za, zb = int(np.floor(z * w / ow)), int(np.ceil((z + 1) * w / ow))
            for b in range(n):
                for ch in range(c):
                    out[b, ch, y, z] = sum(
                        x[b, ch, i, j] for i in range(ya, yb) for j in range(za, zb)
                    ) / ((yb - ya) * (zb - za))
    return out


def batch_norm_train(x, gamma, beta, eps):
    """Per-channel loops; returns out, mean, biased var."""
    c = x.shape[1]
    out = np.zeros_like(x)
    mean = np.zeros(c)
    var = np.zeros(c)
    for ch in range(c):
        vals = [float(v) for v in np.moveaxis(x, 1, 0)[ch].ravel()]
        m = sum(vals) / len(vals)
        v = sum((t - m) ** 2 for t in vals) / len(vals)
        mean[ch], var[ch] = m, v
        out[:, ch] = gamma[ch] * (x[:, ch] - m) / np.sqrt(v + eps) + beta[ch]
    return out, mean, var


def numerical_grad(f, x, d_out, eps=1e-5):
    """d/dx of sum(f(x) * d_out) by central differences (float64)."""
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + eps
        plus = np.sum(f(x) * d_out)
        x[k] = old - eps
        minus = np.sum(f(x) * d_out)
        x[k] = old
        grad[k] = (plus - minus) / (2 * eps)
    return grad


def rel_error(a, b):
    """||a - b|| / (||a|| + ||b||): per-element ratios blow up on entries
    near zero, where central differences have absolute, not relative, error."""
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30)


def conv2d(x, w, b, stride, padding, dilation, groups):
    """Direct loops over every output: the convolution oracle."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
    out = np.zeros((n, f, oh, ow))
    fg = f // groups
    for b_ in range(n):
        for o in range(f):
            g = o // fg
            for y in range(oh):
                for z in range(ow):
                    total = 0.0 if b is None else b[o]
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                iy, iz = y * sh + i * dh - ph, z * sw + j * dw - pw
                                if 0 <= iy < h and 0 <= iz < wd:
                                    total += w[o, ci, i, j] * x[b_, g * cg + ci, iy, iz]
                    out[b_, o, y, z] = total
    return out


def conv2d_params_grad(x, d_out, w_shape, stride, padding, dilation):
    """Loops: d_w[f,c,i,j] = sum over n, oy, ox of d_out[n,f,oy,ox] * x_pad[n,c,..]; d_b = sum of d_out."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x.shape
    f, _, kh, kw = w_shape
    d_w = np.zeros(w_shape)
    for b_ in range(n):
        for o in range(f):
            for y in range(d_out.shape[2]):
                for z in range(d_out.shape[3]):
                    g = d_out[b_, o, y, z]
                    for ci in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                iy, iz = y * sh + i * dh - ph, z * sw + j * dw - pw
                                if 0 <= iy < h and 0 <= iz < wd:
                                    d_w[o, ci, i, j] += g * x[b_, ci, iy, iz]
    return d_w, d_out.sum(axis=(0, 2, 3))


def conv2d_input_grad(w, d_out, x_shape, stride, padding, dilation):
    """Loops: d_x[n,c,iy,iz] += d_out[n,f,oy,ox] * w[f,c,i,j] wherever output (oy, ox) read (iy, iz)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x_shape
    f, _, kh, kw = w.shape
    d_x = np.zeros(x_shape)
    for b_ in range(n):
        for o in range(f):
            for y in range(d_out.shape[2]):
                for z in range(d_out.shape[3]):
                    g = d_out[b_, o, y, z]
                    for ci in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                iy, iz = y * sh + i * dh - ph, z * sw + j * dw - pw
                                if 0 <= iy < h and 0 <= iz < wd:
                                    d_x[b_, ci, iy, iz] += g * w[o, ci, i, j]
    return d_x


def avg_pool2d_backward(d_out, x_shape, k, s, p):
    """Each output's gradient spread over its window, 1/(kh*kw) per element (padding included)."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    n, c, h, w = x_shape
    d_x = np.zeros(x_shape, dtype=d_out.dtype)
    for b in range(n):
        for ch in range(c):
            for y in range(d_out.shape[2]):
                for z in range(d_out.shape[3]):
                    for i in range(kh):
                        for j in range(kw):
                            iy, iz = y * sh + i - ph, z * sw + j - pw
                            if 0 <= iy < h and 0 <= iz < w:
                                d_x[b, ch, iy, iz] += d_out[b, ch, y, z] / (kh * kw)
    return d_x


def adaptive_avg_pool2d_backward(d_out, x_shape):
    n, c, h, w = x_shape
    oh, ow = d_out.shape[2:]
    d_x = np.zeros(x_shape, dtype=d_out.dtype)
    for y in range(oh):
        ya, yb = int(np.floor(y * h / oh)), int(np.ceil((y + 1) * h / oh))
        for z in range(ow):
            za, zb = int(np.floor(z * w / ow)), int(np.ceil((z + 1) * w / ow))
            for i in range(ya, yb):
                for j in range(za, zb):
                    d_x[:, :, i, j] += d_out[:, :, y, z] / ((yb - ya) * (zb - za))
    return d_x


def channel_sums(x3, f):
    """Per channel c of x3 (N, C, S): the sum of f(n, c, s) over n and s, in float64."""
    n, c, s = x3.shape
    return np.array([sum(float(f(b, ch, k)) for b in range(n) for k in range(s)) for ch in range(c)])


def sgd_step(value, grad, velocity, lr, momentum, weight_decay, nesterov, first):
    """PyTorch's SGD, element by element; returns (value, velocity)."""
    value, velocity = value.astype(np.float64), velocity.astype(np.float64)
    for k in range(value.size):
        g = grad.flat[k] + weight_decay * value.flat[k]
        if momentum:
            velocity.flat[k] = g if first else momentum * velocity.flat[k] + g
            g = g + momentum * velocity.flat[k] if nesterov else velocity.flat[k]
        value.flat[k] -= lr * g
    return value, velocity
