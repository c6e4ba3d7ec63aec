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
from .._geometry import PoolGeometry
from ..backends import _bn_terms
from .layers import relu_backward
from .pooling import pool_geometry


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
    gamma, beta, running_mean, running_var = _parameters(x, gamma, beta, running_mean, running_var, training,
                                                         momentum, eps)
    if residual is not None:
        residual = _checks.float_array(residual, "residual", ndim=x.ndim)
        if residual.shape != x.shape:
            raise ValueError(f"residual has shape {residual.shape}; it is added to the output, of shape {x.shape}")
        residual = np.ascontiguousarray(residual, dtype=x.dtype)
    out = _checks.out_array(out, x.shape, x.dtype, inputs={
        "x": x, "gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var,
        **({} if residual is None else {"residual": residual})})
    kernels = backends.resolve(backend)
    res = x if residual is None else residual  # read only with a residual
    if training and reduce is None:  # statistics, coefficients and affine in one call (channel by channel)
        count = _values_per_channel(x)
        mean, var = np.empty(c, dtype=x.dtype), np.empty(c, dtype=x.dtype)
        kernels.bn_fwd_fused(x, gamma, beta, res, mean, var, out, n, c, s, float(eps), int(bool(relu)),
                             int(residual is not None))
        _update_running(running_mean, running_var, mean, var, count, momentum)
    else:  # eval, or synchronised BatchNorm: the affine uses every process's statistics
        mean, var, count = _statistics(kernels, x, running_mean, running_var, training, momentum, reduce)
    inv_std, scale, shift = _bn_terms.forward_terms(mean, var, gamma, beta, eps, x.dtype)
    if not training or reduce is not None:
        kernels.channel_affine(x, scale, shift, res, out, n, c, s, int(bool(relu)), int(residual is not None))
    return out, BatchNormCache(x, mean, inv_std, gamma, bool(training), backend, count,
                               reduce if training else None, out if relu else None)


def _parameters(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """gamma, beta, running_mean, running_var checked against x's channels
    (gamma and beta in x's dtype), and momentum and eps checked."""
    c = x.shape[1]
    gamma = _per_channel(gamma, "gamma", c, x.dtype)
    beta = _per_channel(beta, "beta", c, x.dtype)
    running_mean = _per_channel(running_mean, "running_mean", c, writeable=training)
    running_var = _per_channel(running_var, "running_var", c, writeable=training)
    if not (0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    return gamma, beta, running_mean, running_var


def _values_per_channel(x) -> int:
    """N*H*W, which training needs to be >= 2 (a variance)."""
    n, _, s = _nc_s(x)
    if n * s < 2:
        raise ValueError(
            f"training BatchNorm needs more than one value per channel to estimate a "
            f"variance, got x of shape {x.shape}; use a batch of 2 or more, or eval mode"
        )
    return n * s


def _update_running(running_mean, running_var, mean, var, count, momentum):
    """running = (1 - momentum) * running + momentum * batch (the unbiased variance)."""
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * var * (count / (count - 1))


def _statistics(kernels, x, running_mean, running_var, training, momentum, reduce):
    """(mean, var, count) that normalise x: in training the batch's (every
    process's with ``reduce``), the running statistics updated; in eval the
    running statistics."""
    n, c, s = _nc_s(x)
    if not training:
        return running_mean.astype(x.dtype), running_var.astype(x.dtype), n * s
    count = _values_per_channel(x)
    mean, var = np.empty(c, dtype=x.dtype), np.empty(c, dtype=x.dtype)
    kernels.bn_stats(x, mean, var, n, c, s)
    if reduce is not None:
        mean, var, count = _global_statistics(mean, var, count, reduce)
    _update_running(running_mean, running_var, mean, var, count, momentum)
    return mean, var, count


def relu_gradient(d_out, cache: BatchNormCache, *, add=None):
    """The gradient that reaches the ReLU's input of a forward with relu=True
    (d_out where the output is > 0, else 0, as relu_backward): the residual's
    gradient when the forward added one.  add: a gradient to add to it in the
    same pass (relu_backward's add=)."""
    if not isinstance(cache, BatchNormCache) or cache.relu_out is None:
        raise TypeError("cache must be the BatchNormCache of a batch_norm_forward(..., relu=True)")
    d_out = np.asarray(d_out)
    if d_out.shape != cache.relu_out.shape:
        raise ValueError(f"d_out has shape {d_out.shape}; the forward output was {cache.relu_out.shape}")
    return relu_backward(d_out, cache.relu_out, add=add, backend=cache.backend)


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
        kernels.bn_bwd_apply(d_out, x, cache.mean, mask, *_backward_terms(sum_dy, sum_dy_xmu, cache), d_x,
                             n, c, s, int(has_mask))
    return (d_x, *_parameter_gradients(sum_dy, sum_dy_xmu, cache))


def _backward_terms(sum_dy, sum_dy_xmu, cache):
    """(k_dy, k_x, k_0) of the apply (backends/_bn_terms.py) from this
    process's sums, summed over every process first with synchronised BatchNorm."""
    if cache.reduce is not None:
        sums = np.concatenate([sum_dy, sum_dy_xmu]).astype(np.float64)
        cache.reduce(sums)
        sum_dy, sum_dy_xmu = sums[:len(sum_dy)], sums[len(sum_dy):]
    return _bn_terms.backward_terms(sum_dy, sum_dy_xmu, cache.gamma, cache.inv_std, cache.count, cache.training,
                                    cache.x.dtype)


def _parameter_gradients(sum_dy, sum_dy_xmu, cache):
    """(d_gamma, d_beta) from this process's own sums: data-parallel training
    averages them across processes with every other gradient."""
    d_gamma = (sum_dy_xmu * cache.inv_std.astype(np.float64)).astype(cache.x.dtype)
    return d_gamma, sum_dy.copy()


# ------------------------------------------------ BatchNorm + ReLU + max pool
class BatchNormPoolCache(NamedTuple):
    """What batch_norm_relu_max_pool_backward needs from the forward pass."""

    bn: BatchNormCache  # the normalisation's (relu_out None: the ReLU's output is pooled)
    out: np.ndarray  # the pooled output
    code: np.ndarray  # uint8, the winner's offset i * kw + j in its window
    geometry: PoolGeometry


def bn_pool_unsupported(kernel_size, stride, padding=(0, 0), ceil_mode=False) -> str | None:
    """Why batch_norm_relu_max_pool cannot run this pooling window, or None
    when it can: the windows must not overlap (each input position has at
    most one winner), no padding, floor mode, at most 256 taps (the winner's
    offset is stored in a byte)."""
    (kh, kw), (sh, sw) = _checks.int_pair(kernel_size, "kernel_size"), _checks.int_pair(
        kernel_size if stride is None else stride, "stride")
    if tuple(_checks.int_pair(padding, "padding", minimum=0)) != (0, 0):
        return f"padding is {padding}: expected 0"
    if ceil_mode:
        return "ceil_mode is True: expected floor mode"
    if sh < kh or sw < kw:
        return f"stride ({sh}, {sw}) is smaller than the window ({kh}, {kw}): windows would overlap"
    if kh * kw > 256:
        return f"the window ({kh}, {kw}) has {kh * kw} taps: expected at most 256"
    return None


def batch_norm_relu_max_pool(x, gamma, beta, running_mean, running_var, kernel_size=2, stride=None,
                             training=True, momentum=0.1, eps=1e-5, *, reduce=None, backend=None):
    """``max_pool2d(relu(batch_norm_forward(x, ...)))`` in one pass: returns
    ``(out, cache)``, out the pooled (N, C, OH, OW).  The full-resolution
    normalised tensor is never written; the backward pass
    (batch_norm_relu_max_pool_backward) computes the gradients of all three
    from the pooled gradient.  Arguments as batch_norm_forward and
    max_pool2d (the running statistics are updated alike); the windows must
    not overlap (stride >= kernel_size), no padding (bn_pool_unsupported)."""
    x = _checks.float_array(x, "x", ndim=4, layout="(N, C, H, W)")
    reason = bn_pool_unsupported(kernel_size, stride)
    if reason is not None:
        raise ValueError(f"batch_norm_relu_max_pool cannot pool this way: {reason}")
    gamma, beta, running_mean, running_var = _parameters(x, gamma, beta, running_mean, running_var, training,
                                                         momentum, eps)
    g = pool_geometry(x.shape, kernel_size, stride)
    kernels = backends.resolve(backend)
    out = np.empty((g.n, g.c, g.oh, g.ow), dtype=x.dtype)
    code = np.empty(out.shape, dtype=np.uint8)
    if training and reduce is None:  # statistics, coefficients and pool in one call (channel by channel)
        count = _values_per_channel(x)
        mean, var = np.empty(g.c, dtype=x.dtype), np.empty(g.c, dtype=x.dtype)
        kernels.bnpool_fwd_fused(x, gamma, beta, mean, var, out, code, float(eps), g)
        _update_running(running_mean, running_var, mean, var, count, momentum)
        inv_std = _bn_terms.forward_terms(mean, var, gamma, beta, eps, x.dtype)[0]
    else:  # eval, or synchronised BatchNorm: every process's statistics
        mean, var, count = _statistics(kernels, x, running_mean, running_var, training, momentum, reduce)
        inv_std, scale, shift = _bn_terms.forward_terms(mean, var, gamma, beta, eps, x.dtype)
        kernels.bnpool_fwd(x, scale, shift, out, code, g)
    bn = BatchNormCache(x, mean, inv_std, gamma, bool(training), backend, count, reduce if training else None)
    return out, BatchNormPoolCache(bn, out, code, g)


def batch_norm_relu_max_pool_backward(d_out, cache: BatchNormPoolCache):
    """Returns ``(d_x, d_gamma, d_beta)`` of batch_norm_relu_max_pool: the
    pooled gradient counts at the winners whose output is > 0, then the
    closed form of batch_norm_backward, dense over x."""
    if not isinstance(cache, BatchNormPoolCache):
        raise TypeError("cache must be the BatchNormPoolCache returned by batch_norm_relu_max_pool")
    bn, g = cache.bn, cache.geometry
    x = bn.x
    d_out = _checks.float_array(d_out, "d_out", ndim=4, layout="(N, C, OH, OW)")
    if d_out.shape != cache.out.shape:
        raise ValueError(f"d_out has shape {d_out.shape}, but the forward output was {cache.out.shape}")
    _checks.same_dtype(d_out, x, "d_out", "the forward input")
    kernels = backends.resolve(bn.backend)
    sum_dy, sum_dy_xmu = np.empty(g.c, dtype=x.dtype), np.empty(g.c, dtype=x.dtype)
    d_x = np.empty_like(x)
    try:
        if bn.reduce is None:  # reduce, coefficients and apply in one call (channel by channel)
            kernels.bnpool_bwd_fused(d_out, x, bn.mean, cache.out, cache.code, bn.gamma, bn.inv_std, sum_dy,
                                     sum_dy_xmu, d_x, int(bn.training), g)
        else:  # synchronised BatchNorm: d_x sees every process's sums, between the two passes
            kernels.bnpool_bwd_reduce(d_out, x, bn.mean, cache.out, cache.code, sum_dy, sum_dy_xmu, g)
            kernels.bnpool_bwd_apply(d_out, x, bn.mean, cache.out, cache.code,
                                     *_backward_terms(sum_dy, sum_dy_xmu, bn), d_x, g)
    except IndexError as exc:
        raise ValueError(f"the cache's winner codes lie outside their window ({exc}); pass the cache "
                         f"batch_norm_relu_max_pool returned, unchanged") from None
    return (d_x, *_parameter_gradients(sum_dy, sum_dy_xmu, bn))
