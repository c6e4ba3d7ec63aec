"""The per-channel coefficients of BatchNorm, one definition for the Python
side and the NumPy and Numba kernels; the C kernels fc_bn_fwd_fused and
fc_bn_bwd_fused (csrc/batchnorm_tmpl.h) compute the same in double, in the
same order, so every path gives the same bits.

Forward:
    out = x * scale + shift
    inv_std = 1 / sqrt(var + eps), scale = gamma * inv_std, shift = beta - mean * scale

Backward:
    d_x = dy * k_dy + (x - mean) * k_x + k_0
    k_dy = gamma * inv_std
    training: k_x = -gamma * (inv_std * inv_std * inv_std) * sum(dy * (x - mean)) / M,
              k_0 = -k_dy * sum(dy) / M
    eval (constant statistics): k_x = k_0 = 0
"""
from __future__ import annotations

import numpy as np


def forward_terms(mean, var, gamma, beta, eps, dtype):
    """(inv_std, scale, shift) in ``dtype``, computed in float64."""
    inv_std = (1.0 / np.sqrt(np.asarray(var, np.float64) + eps)).astype(dtype)
    scale = (np.asarray(gamma, np.float64) * inv_std).astype(dtype)
    shift = (np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale).astype(dtype)
    return inv_std, scale, shift


def two_pass_forward(kernels: dict):
    """The bn_fwd_fused kernel of a backend whose bn_stats and channel_affine
    are found in ``kernels`` (its module's globals, looked up at call time):
    the statistics, forward_terms, then the affine."""
    def bn_fwd_fused(x, gamma, beta, res, mean, var, out, n, c, s, eps, relu, has_res):
        kernels["bn_stats"](x, mean, var, n, c, s)
        _, scale, shift = forward_terms(mean, var, gamma, beta, eps, x.dtype)
        kernels["channel_affine"](x, scale, shift, res, out, n, c, s, relu, has_res)

    return bn_fwd_fused


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


def two_pass_pool_forward(kernels: dict):
    """The bnpool_fwd_fused kernel of a backend from its bn_stats and
    bnpool_fwd (found in ``kernels`` at call time): the statistics,
    forward_terms, then the pool."""
    def bnpool_fwd_fused(x, gamma, beta, mean, var, out, code, eps, g):
        kernels["bn_stats"](x, mean, var, g.n, g.c, g.h * g.w)
        _, scale, shift = forward_terms(mean, var, gamma, beta, eps, x.dtype)
        kernels["bnpool_fwd"](x, scale, shift, out, code, g)

    return bnpool_fwd_fused


def two_pass_pool_backward(kernels: dict):
    """The bnpool_bwd_fused kernel of a backend from its bnpool_bwd_reduce
    and bnpool_bwd_apply (found in ``kernels`` at call time): the reduction,
    backward_terms, then the apply."""
    def bnpool_bwd_fused(d_out, x, mean, out, code, gamma, inv_std, sum_dy, sum_dy_xmu, d_x, training, g):
        kernels["bnpool_bwd_reduce"](d_out, x, mean, out, code, sum_dy, sum_dy_xmu, g)
        terms = backward_terms(sum_dy, sum_dy_xmu, gamma, inv_std, g.n * g.h * g.w, training, x.dtype)
        kernels["bnpool_bwd_apply"](d_out, x, mean, out, code, *terms, d_x, g)

    return bnpool_bwd_fused

