"""The per-channel coefficients of the closed-form BatchNorm backward, one
definition for the Python side and the NumPy and Numba kernels; the C kernel
fc_bn_bwd_fused (csrc/batchnorm_tmpl.h) computes the same in double, in the
same order, so every path gives the same bits.

    d_x = dy * k_dy + (x - mean) * k_x + k_0
    k_dy = gamma * inv_std
    training: k_x = -gamma * (inv_std * inv_std * inv_std) * sum(dy * (x - mean)) / M,
              k_0 = -k_dy * sum(dy) / M
    eval (constant statistics): k_x = k_0 = 0
"""
from __future__ import annotations

import numpy as np


def backward_terms(sum_dy, sum_dy_xmu, gamma, inv_std, count, training, dtype):
    """(k_dy, k_x, k_0) in ``dtype``, from the sums over M = ``count`` values
    per channel (computed in float64)."""
    gamma, inv_std = np.asarray(gamma, np.float64), np.asarray(inv_std, np.float64)
    k_dy = gamma * inv_std
    if training:
        # inv_std cubed as two products: NumPy's power may run a SIMD library whose
        # rounding differs from C's pow, and the C kernel must give the same bits
        k_x = -gamma * (inv_std * inv_std * inv_std) * np.asarray(sum_dy_xmu, np.float64) / count
        k_0 = -k_dy * np.asarray(sum_dy, np.float64) / count
    else:
        k_x = np.zeros_like(k_dy)
        k_0 = np.zeros_like(k_dy)
    return tuple(k.astype(dtype) for k in (k_dy, k_x, k_0))


def two_pass_backward(kernels: dict):
    """The bn_bwd_fused kernel of a backend whose bn_bwd_reduce and
    bn_bwd_apply are found in ``kernels`` (its module's globals, looked up at
    call time): the reduction, backward_terms, then the apply."""
    def bn_bwd_fused(d_out, x, mean, mask, gamma, inv_std, sum_dy, sum_dy_xmu, d_x, n, c, s, has_mask, training):
        kernels["bn_bwd_reduce"](d_out, x, mean, mask, sum_dy, sum_dy_xmu, n, c, s, has_mask)
        terms = backward_terms(sum_dy, sum_dy_xmu, gamma, inv_std, n * s, training, x.dtype)
        kernels["bn_bwd_apply"](d_out, x, mean, mask, *terms, d_x, n, c, s, has_mask)

    return bn_bwd_fused
