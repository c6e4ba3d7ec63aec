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
