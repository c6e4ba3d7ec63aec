"""Stateless operations: NCHW arrays in, arrays out, dispatched to a backend.

Every function takes an optional keyword ``backend=`` ("numpy", "numba", "c");
without it the current backend is used (see :func:`fastconv.set_backend`).
"""
from .im2col import col2im, im2col

__all__ = ["im2col", "col2im"]
