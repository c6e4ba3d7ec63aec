"""Geometry records passed to the kernels as one value.

Each record is the Python side of a struct in csrc/fastconv.h: the same
fields in the same order (tests/test_contract.py checks it), so the C backend
passes it as that struct, Numba receives it as a named tuple of int64 and the
NumPy reference reads it by name.  The functions that build them (with the
argument checks) are ``functional.im2col.conv_geometry`` and
``functional.pooling.pool_geometry``.
"""
from __future__ import annotations

from typing import NamedTuple


class ConvGeometry(NamedTuple):
    """``fc_conv_geom``: x (n, c, h, w); weights (f, c // groups, kh, kw);
    out (n, f, oh, ow).  im2col/col2im read all but f and groups."""

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


class PoolGeometry(NamedTuple):
    """``fc_pool_geom``: a (kh, kw) window with stride (sh, sw) and padding
    (ph, pw) over x (n, c, h, w), giving (n, c, oh, ow); ``ceil_mode``: the
    output size rounds up (see pool_output_size), so the last window may run
    past the bottom/right padding (what it covers there never wins)."""

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    oh: int
    ow: int
    ceil_mode: int = 0


def pool_output_size(size: int, k: int, s: int, p: int, ceil_mode) -> int:
    """Outputs of a pooling window along one axis (PyTorch's rule, also in
    csrc/common.h's fc_check_pool_geom): ``(size + 2p - k) / s + 1`` rounded
    down, or up with ceil_mode -- but the last window must start inside the
    input or its left padding."""
    span = size + 2 * p - k
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


# C struct of each record, for the C backend and the contract test.
C_STRUCTS = {ConvGeometry: "fc_conv_geom", PoolGeometry: "fc_pool_geom"}
