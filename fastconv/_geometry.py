"""Geometry records passed to the kernels as one value.

``ConvGeometry`` is the Python side of csrc/fastconv.h's ``fc_conv_geom``:
the same fields in the same order (tests/test_conv_gemm.py checks it), so the
C backend passes it as that struct and the NumPy and Numba backends' Python
drivers read it by name.
"""
from __future__ import annotations

from typing import NamedTuple


class ConvGeometry(NamedTuple):
    """x (n, c, h, w); weights (f, c // groups, kh, kw); out (n, f, oh, ow)."""

    n: int
    c: int
    h: int
    w: int
    f: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    oh: int
    ow: int
    groups: int

    def im2col_sizes(self, images: int) -> tuple:
        """The trailing integer arguments of the im2col/col2im kernels for
        ``images`` images of this geometry."""
        return (images, self.c, self.h, self.w, self.kh, self.kw, self.sh, self.sw, self.ph, self.pw,
                self.dh, self.dw, self.oh, self.ow)
