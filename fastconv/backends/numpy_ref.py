"""The NumPy reference backend: vectorised, readable, and the yardstick every
fast kernel is tested against.  It stays forever.

Same contract as the other backends: inputs, then preallocated outputs, then
integer sizes; each function only fills its outputs.
"""
from __future__ import annotations

import numpy as np


def _window(start: int, count: int, step: int) -> slice:
    """The ``count`` positions start, start+step, ... as an exact slice."""
    return slice(start, start + step * (count - 1) + 1, step)


def im2col(x, col, n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
    """col[(c*FH + i)*FW + j, (n*OH + oh)*OW + ow] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]."""
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    col6 = col.reshape(c, fh, fw, n, oh, ow)
    for i in range(fh):
        for j in range(fw):
            patch = x_pad[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)]
            col6[:, i, j] = patch.transpose(1, 0, 2, 3)  # (N, C, ..) -> (C, N, ..)


def col2im(col, x, n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow):
    """Adjoint of im2col: add every column entry back where it came from."""
    x_pad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    col6 = col.reshape(c, fh, fw, n, oh, ow)
    for i in range(fh):
        for j in range(fw):
            x_pad[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)] += col6[
                :, i, j
            ].transpose(1, 0, 2, 3)
    x[...] = x_pad[:, :, ph : ph + h, pw : pw + w]
