"""Batch normalisation: forward with running statistics, closed-form backward.

x is (N, C) or (N, C, H, W); statistics are per channel over N (and H, W).
Training normalises with the batch mean and biased variance and updates the
running statistics in place (PyTorch's convention: the running variance takes
the *unbiased* batch variance).  Eval normalises with the running statistics.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _checks, backends
from ..backends import _bn_terms
from .layers import relu_backward


class BatchNormCache(NamedTuple):
    """What batch_norm_backward needs from the forward pass."""

    x: np.ndarray  # C-contiguous input
    mean: np.ndarray  # (C,) statistics used to normalise, x's dtype
    inv_std: np.ndarray  # (C,) 1 / sqrt(var + eps), x's dtype
    gamma: np.ndarray  # (C,) x's dtype
    training: bool
    backend: str | None
    count: int = 0  # values per channel the statistics came from (all ranks' with reduce=)
    reduce: object = None  # the reduce= of the forward pass, used again by backward
    relu_out: np.ndarray | None = None  # the output, when the forward applied a ReLU


def _per_channel(v, name, c, dtype=None, writeable=False):
    if not isinstance(v, np.ndarray):
        if writeable:
            raise TypeError(f"{name} must be a NumPy array (it is updated in place), got {type(v).__name__}")
        v = np.asarray(v)
    if v.shape != (c,):
        raise ValueError(f"{name} has shape {v.shape}, but x has {c} channels: expected ({c},)")
    if v.dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {v.dtype}; expected float32 or float64")
    if writeable and not v.flags.writeable:
        raise ValueError(f"{name} is read-only, but training updates it in place")
    return v if dtype is None else np.ascontiguousarray(v, dtype=dtype)


def _nc_s(x):
    n, c = x.shape[:2]
    return n, c, int(np.prod(x.shape[2:], dtype=np.int64)) if x.ndim == 4 else 1


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training=True,
                       momentum=0.1, eps=1e-5, *, relu=False, residual=None, out=None, reduce=None,
                       backend=None):
    """Returns ``(out, cache)``; out = gamma * (x - mean) / sqrt(var + eps) + beta.

    residual: an array of x's shape added to that (a residual block's
    shortcut).  relu=True: out = max(that, 0) in the same pass (BatchNorm
    [+ add] + ReLU fused); batch_norm_backward then takes the gradient of that
    output, the ReLU's backward done in its kernels, and the residual's
    gradient is ``relu_gradient(d_out, cache)``.

    In training, ``running_mean``/``running_var`` are updated in place:
    ``running = (1 - momentum) * running + momentum * batch``.
    out: optional preallocated result (x's shape and dtype, C-contiguous, not
    overlapping x, which the cache keeps for the backward pass).
    reduce: for BatchNorm synchronised across processes (data-parallel
    training), a function that sums a float64 array over all processes in
    place; the statistics (and backward's sums) then cover every process's batch."""
    x = _checks.float_array(x, "x", ndim=(2, 4), layout="(N, C) or (N, C, H, W)")
    n, c, s = _nc_s(x)
    gamma = _per_channel(gamma, "gamma", c, x.dtype)
    beta = _per_channel(beta, "beta", c, x.dtype)
    running_mean = _per_channel(running_mean, "running_mean", c, writeable=training)
    running_var = _per_channel(running_var, "running_var", c, writeable=training)
    if residual is not None:
        residual = _checks.float_array(residual, "residual", ndim=x.ndim)
        if residual.shape != x.shape:
            raise ValueError(f"residual has shape {residual.shape}; it is added to the output, of shape {x.shape}")
        residual = np.ascontiguousarray(residual, dtype=x.dtype)
    out = _checks.out_array(out, x.shape, x.dtype, inputs={
        "x": x, "gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var,
        **({} if residual is None else {"residual": residual})})
    if not (0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    kernels = backends.resolve(backend)
    res = x if residual is None else residual  # read only with a residual
    if training:
        count = n * s
        if count < 2:
            raise ValueError(
                f"training BatchNorm needs more than one value per channel to estimate a "
                f"variance, got x of shape {x.shape}; use a batch of 2 or more, or eval mode"
            )
        mean = np.empty(c, dtype=x.dtype)
        var = np.empty(c, dtype=x.dtype)
        if reduce is None:  # statistics, coefficients and affine in one call (channel by channel)
            kernels.bn_fwd_fused(x, gamma, beta, res, mean, var, out, n, c, s, float(eps), int(bool(relu)),
                                 int(residual is not None))
        else:  # synchronised BatchNorm: the affine uses every process's statistics
            kernels.bn_stats(x, mean, var, n, c, s)
            mean, var, count = _global_statistics(mean, var, count, reduce)
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * (count / (count - 1))
    else:
        mean = running_mean.astype(x.dtype)
        var = running_var.astype(x.dtype)
    inv_std, scale, shift = _bn_terms.forward_terms(mean, var, gamma, beta, eps, x.dtype)
    if not training or reduce is not None:
        kernels.channel_affine(x, scale, shift, res, out, n, c, s, int(bool(relu)), int(residual is not None))
    return out, BatchNormCache(x, mean, inv_std, gamma, bool(training), backend,
                               n * s if not training or reduce is None else count, reduce if training else None,
                               out if relu else None)


def relu_gradient(d_out, cache: BatchNormCache):
    """The gradient that reaches the ReLU's input of a forward with relu=True
    (d_out where the output is > 0, else 0, as relu_backward): the residual's
    gradient when the forward added one."""
    if not isinstance(cache, BatchNormCache) or cache.relu_out is None:
        raise TypeError("cache must be the BatchNormCache of a batch_norm_forward(..., relu=True)")
    d_out = np.asarray(d_out)
    if d_out.shape != cache.relu_out.shape:
        raise ValueError(f"d_out has shape {d_out.shape}; the forward output was {cache.relu_out.shape}")
    return relu_backward(d_out, cache.relu_out, backend=cache.backend)


def _global_statistics(mean, var, count, reduce):
    """Mean and biased variance over every process's values, from each
    process's own (sums of x and x**2 in float64, then one reduce)."""
    m = mean.astype(np.float64)
    sums = np.concatenate([m * count, (var.astype(np.float64) + m * m) * count, [float(count)]])
    reduce(sums)
    c = len(mean)
    total = sums[-1]
    g_mean = sums[:c] / total
    g_var = np.maximum(sums[c:2 * c] / total - g_mean * g_mean, 0.0)
    g_var[np.isnan(sums[c:2 * c])] = np.nan  # keep NaN visible, as the kernels do
    return g_mean.astype(mean.dtype), g_var.astype(var.dtype), int(total)


def batch_norm_backward(d_out, cache: BatchNormCache, *, out=None, backend=None):
    """Returns ``(d_x, d_gamma, d_beta)``, by the closed form

    d_x = gamma * inv_std / M * (M * dy - sum(dy) - x_hat * sum(dy * x_hat))

    (M = N*H*W) in training; ``gamma * inv_std * dy`` in eval, where the
    statistics are constants.  One kernel call reduces and applies channel by
    channel (bn_bwd_fused); with synchronised BatchNorm the reduction and the
    apply are two calls around the all-reduce.
    out: optional preallocated d_x (C-contiguous, not overlapping d_out or x)."""
    if not isinstance(cache, BatchNormCache):
        raise TypeError("cache must be the BatchNormCache returned by batch_norm_forward")
    x = cache.x
    d_out = _checks.float_array(d_out, "d_out", ndim=x.ndim)
    if d_out.shape != x.shape:
        raise ValueError(f"d_out has shape {d_out.shape} but the forward input had {x.shape}")
    _checks.same_dtype(d_out, x, "d_out", "the forward input")
    n, c, s = _nc_s(x)
    inputs = {"d_out": d_out, "x": x}
    if cache.relu_out is not None:
        inputs["the forward output"] = cache.relu_out
    d_x = _checks.out_array(out, x.shape, x.dtype, inputs=inputs)
    kernels = backends.resolve(cache.backend if backend is None else backend)
    sum_dy = np.empty(c, dtype=x.dtype)
    sum_dy_xmu = np.empty(c, dtype=x.dtype)
    # with a fused ReLU, d_out counts where its output is > 0 (the kernels read
    # the mask only then; d_out stands in for it otherwise)
    has_mask = cache.relu_out is not None
    mask = cache.relu_out if has_mask else d_out
    if cache.reduce is None:  # reduce, coefficients and apply in one call (channel by channel)
        kernels.bn_bwd_fused(d_out, x, cache.mean, mask, cache.gamma, cache.inv_std, sum_dy, sum_dy_xmu, d_x,
                             n, c, s, int(has_mask), int(cache.training))
    else:  # synchronised BatchNorm: d_x sees every process's sums, between the two passes
        kernels.bn_bwd_reduce(d_out, x, cache.mean, mask, sum_dy, sum_dy_xmu, n, c, s, int(has_mask))
        sums = np.concatenate([sum_dy, sum_dy_xmu]).astype(np.float64)
        cache.reduce(sums)
        terms = _bn_terms.backward_terms(sums[:c], sums[c:], cache.gamma, cache.inv_std, cache.count,
                                         cache.training, x.dtype)
        kernels.bn_bwd_apply(d_out, x, cache.mean, mask, *terms, d_x, n, c, s, int(has_mask))
    # this process's own sums: data-parallel training averages d_gamma and
    # d_beta across processes with every other gradient
    d_gamma = (sum_dy_xmu * cache.inv_std.astype(np.float64)).astype(x.dtype)
    d_beta = sum_dy.copy()
    return d_x, d_gamma, d_beta
