"""One contract per kernel: the prototypes in csrc/fastconv.h (between the
CDEF markers, which cffi also reads) are the source; every backend must offer
every kernel there, with the same parameters in the same order."""
import inspect
import re

import numpy as np
import pytest

from fastconv import functional as F
from fastconv._build_cffi import read_cdef
from fastconv._geometry import C_STRUCTS
from fastconv.backends import BACKEND_NAMES, BackendUnavailableError, load
from fastconv.functional import conv as conv_module


def contract() -> dict[str, list[str]]:
    """kernel name -> parameter names, from the f32 prototypes (checked equal to the f64 ones)."""
    protos: dict[str, dict[str, list[str]]] = {}
    for m in re.finditer(r"int\s+fc_(\w+?)_(f32|f64)\s*\(([^)]*)\)", read_cdef()):
        names = [re.split(r"[\s*]+", p.strip())[-1] for p in m.group(3).split(",")]
        protos.setdefault(m.group(1), {})[m.group(2)] = names
    for name, variants in protos.items():
        assert set(variants) == {"f32", "f64"}, f"fc_{name} lacks a dtype variant: {sorted(variants)}"
        assert variants["f32"] == variants["f64"], f"fc_{name}_f32 and _f64 differ: {variants}"
    return {name: v["f32"] for name, v in protos.items()}


KERNELS = contract()


def _parameters(fn):
    fn = getattr(fn, "kernel", fn)  # the Numba wrappers keep the jitted kernel here
    fn = getattr(fn, "py_func", fn)
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_backend_offers_every_kernel_with_the_contracts_parameters(backend, kernel):
    try:
        module = load(backend)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    fn = getattr(module, kernel, None)
    assert fn is not None, f"the {backend} backend lacks kernel {kernel!r} of csrc/fastconv.h"
    if backend == "c":
        assert kernel in module.KERNEL_NAMES
    else:
        assert _parameters(fn) == KERNELS[kernel], f"{backend}.{kernel} parameters differ from fc_{kernel}"


@pytest.mark.parametrize("record", sorted(C_STRUCTS, key=lambda r: r.__name__))
def test_each_geometry_record_is_its_c_struct(record):
    """One contract per record: the Python fields are the C struct's, in order
    (the C backend passes a record's fields by name, the others by position)."""
    try:
        c = load("c")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    assert [name for name, _ in c.ffi.typeof(C_STRUCTS[record]).fields] == list(record._fields)


def test_the_contract_is_not_empty():
    assert {"im2col", "col2im", "maxpool_fwd", "bn_stats", "sgd_update", "im2row", "rows_maxpool"} <= set(KERNELS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c, pool, pool_stride", [(3, 2, 2), (4, 3, 2), (2, 2, 1)])
def test_the_reference_rows_path_equals_the_reference_direct_path(dtype, c, pool, pool_stride):
    """numpy_ref.im2row + rows_maxpool (the fast backends' many-tap path, in
    the reference) give what the reference's direct conv_maxpool_fwd gives."""
    rng = np.random.default_rng(c)
    x = rng.standard_normal((3, c, 11, 10)).astype(dtype)
    w = rng.standard_normal((5, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    geo = dict(stride=1, padding=1, dilation=1, pool_size=pool, pool_stride=pool_stride)
    want_out, want_idx = F.conv2d_maxpool(x, w, b, **geo, backend="numpy")
    cg, pg = conv_module._geometries(x.shape, w.shape, 1, 1, 1, pool, pool_stride)
    out, idx = np.empty_like(want_out), np.empty_like(want_idx)
    conv_module._gemm_conv_maxpool(load("numpy"), x, w, b, out, idx, cg, pg)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, want_out, **tol)
    np.testing.assert_array_equal(idx, want_idx)


# ----------------------------------------------- every kernel against the oracle
# One case per kernel of the contract: the kernel's raw arguments (inputs,
# outputs to fill, geometry record or sizes) and what tests/naive.py's loops
# say the outputs must hold.  A kernel added to csrc/fastconv.h without a case
# here fails test_every_kernel_has_an_oracle_case.
import naive  # noqa: E402
from fastconv._geometry import ConvGeometry, PoolGeometry  # noqa: E402

N, C, H, W = 2, 3, 7, 6
CONV = ConvGeometry(N, C, H, W, f=4, kh=3, kw=2, sh=2, sw=1, ph=1, pw=1, dh=1, dw=2,
                    oh=naive.out_size(H, 3, 2, 1, 1), ow=naive.out_size(W, 2, 1, 1, 2), groups=1)
CONV_ARGS = ((CONV.sh, CONV.sw), (CONV.ph, CONV.pw), (CONV.dh, CONV.dw))
POOL = PoolGeometry(N, C, H, W, kh=3, kw=2, sh=2, sw=2, ph=1, pw=1, oh=(H + 2 - 3) // 2 + 1, ow=(W + 2 - 2) // 2 + 1)
POOL_ARGS = ((POOL.kh, POOL.kw), (POOL.sh, POOL.sw), (POOL.ph, POOL.pw))
# conv_maxpool: a 3x3 padded convolution, then a 2x2/2 pool of its (7, 6) output
FUSED_CONV = ConvGeometry(N, C, H, W, 4, 3, 3, 1, 1, 1, 1, 1, 1, H, W, 1)
FUSED_POOL = PoolGeometry(N, 4, H, W, 2, 2, 2, 2, 0, 0, H // 2, W // 2)


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _pooled_routing(rng, dtype):
    """x, weights, bias of the fused geometry, a pooled gradient, the pool's
    winners (from the oracle), a ReLU mask, and d_conv: the masked gradient
    routed to the winners."""
    x, wt, b = _rand(rng, (N, C, H, W), dtype), _rand(rng, (4, C, 3, 3), dtype), _rand(rng, 4, dtype)
    conv = naive.conv2d(x, wt, b, (1, 1), (1, 1), (1, 1), 1)
    _, idx = naive.max_pool2d(conv, (2, 2), (2, 2), (0, 0))
    d_out, mask = _rand(rng, idx.shape, dtype), _rand(rng, idx.shape, dtype)
    d_conv = naive.max_pool2d_backward(np.where(mask > 0, d_out, 0), idx, conv.shape)
    return x, wt, b, d_out, idx, mask, d_conv


def case_im2col(rng, dtype):
    x = _rand(rng, (N, C, H, W), dtype)
    col = np.empty((C * 3 * 2, N * CONV.oh * CONV.ow), dtype)
    return (x, col, CONV), {1: naive.im2col(x, 3, 2, *CONV_ARGS)}


def case_col2im(rng, dtype):
    col = _rand(rng, (C * 3 * 2, N * CONV.oh * CONV.ow), dtype)
    return (col, np.empty((N, C, H, W), dtype), CONV), {1: naive.col2im(col, (N, C, H, W), 3, 2, *CONV_ARGS)}


def case_maxpool_fwd(rng, dtype):
    x = _rand(rng, (N, C, H, W), dtype)
    out, idx = naive.max_pool2d(x, *POOL_ARGS)
    return (x, np.empty_like(out), np.empty_like(idx), POOL), {1: out, 2: idx}


def _winners(rng, dtype):
    """Indices of a 2x2/2 pool (windows do not overlap: each plane position at most once)."""
    _, idx = naive.max_pool2d(_rand(rng, (N, C, H, W), dtype), (2, 2), (2, 2), (0, 0))
    return idx


def case_maxpool_bwd(rng, dtype):
    idx = _winners(rng, dtype)
    d_out = _rand(rng, idx.shape, dtype)
    return ((d_out, idx, np.empty((N, C, H, W), dtype), N, C, H, W, *idx.shape[2:]),
            {2: naive.max_pool2d_backward(d_out, idx, (N, C, H, W))})


def case_maxunpool(rng, dtype):
    idx = _winners(rng, dtype)
    v = _rand(rng, idx.shape, dtype)
    return (v, idx, np.empty((N, C, H, W), dtype), N, C, H, W, *idx.shape[2:]), {2: naive.max_unpool2d(v, idx, (N, C, H, W))}


def case_avgpool_fwd(rng, dtype):
    x = _rand(rng, (N, C, H, W), dtype)
    want = naive.avg_pool2d(x, *POOL_ARGS)
    return (x, np.empty_like(want), POOL), {1: want}


def case_avgpool_bwd(rng, dtype):
    d_out = _rand(rng, (N, C, POOL.oh, POOL.ow), dtype)
    return (d_out, np.empty((N, C, H, W), dtype), POOL), {1: naive.avg_pool2d_backward(d_out, (N, C, H, W), *POOL_ARGS)}


def case_adaptive_avgpool_fwd(rng, dtype):
    x = _rand(rng, (N, C, H, W), dtype)
    return (x, np.empty((N, C, 3, 4), dtype), N, C, H, W, 3, 4), {1: naive.adaptive_avg_pool2d(x, 3, 4)}


def case_adaptive_avgpool_bwd(rng, dtype):
    d_out = _rand(rng, (N, C, 3, 4), dtype)
    return ((d_out, np.empty((N, C, H, W), dtype), N, C, H, W, 3, 4),
            {1: naive.adaptive_avg_pool2d_backward(d_out, (N, C, H, W))})


S = H * W  # the batch-norm kernels see x as (N, C, S)


def case_bn_stats(rng, dtype):
    x = _rand(rng, (N, C, H, W), dtype)
    _, mean, var = naive.batch_norm_train(x.astype(np.float64), np.ones(C), np.zeros(C), 1e-5)
    return (x, np.empty(C, dtype), np.empty(C, dtype), N, C, S), {1: mean, 2: var}


# The batch-norm kernels with and without their fused ReLU (relu / has_mask;
# channel_affine's also with a residual): a second case per kernel under the
# name <kernel>_relu.
def _bn_case(kernel):
    def case(rng, dtype, relu):
        x, dy, mask = _rand(rng, (N, C, S), dtype), _rand(rng, (N, C, S), dtype), _rand(rng, (N, C, S), dtype)
        a, b, mean, k_dy, k_x, k_0 = (_rand(rng, C, dtype) for _ in range(6))
        g = [[[float(dy[i, ch, k]) if not relu or mask[i, ch, k] > 0 else 0.0 for k in range(S)] for ch in range(C)]
             for i in range(N)]  # the gradient a ReLU after BatchNorm passes on
        if kernel == "channel_affine":  # the ReLU case also adds a residual (a residual block's tail)
            want = np.empty((N, C, S))
            for ch in range(C):
                want[:, ch] = x[:, ch].astype(np.float64) * float(a[ch]) + float(b[ch])
            if relu:
                want = np.maximum(want + mask, 0)
            return (x, a, b, mask, np.empty_like(x), N, C, S, relu, relu), {4: want}
        if kernel == "bn_fwd_fused":  # training statistics, then the affine (the ReLU case adds a residual)
            gamma, beta = a, b
            want, mean_, var_ = naive.batch_norm_train(x.reshape(N, C, H, W).astype(np.float64), gamma, beta, 1e-5)
            want = want.reshape(N, C, S)
            if relu:
                want = np.maximum(want + mask, 0)
            return ((x, gamma, beta, mask, np.empty(C, dtype), np.empty(C, dtype), np.empty_like(x), N, C, S, 1e-5,
                     relu, relu), {4: mean_, 5: var_, 6: want})
        if kernel == "bn_bwd_reduce":
            sum_dy = naive.channel_sums(x, lambda i, ch, k: g[i][ch][k])
            sum_dy_xmu = naive.channel_sums(x, lambda i, ch, k: g[i][ch][k] * (float(x[i, ch, k]) - float(mean[ch])))
            return (dy, x, mean, mask, np.empty(C, dtype), np.empty(C, dtype), N, C, S, relu), {4: sum_dy, 5: sum_dy_xmu}
        if kernel == "bn_bwd_fused":  # the sums, then the training coefficients (backends/_bn_terms.py)
            gamma, inv_std = a, np.abs(b) + dtype(0.5)
            sum_dy = naive.channel_sums(x, lambda i, ch, k: g[i][ch][k])
            sum_dy_xmu = naive.channel_sums(x, lambda i, ch, k: g[i][ch][k] * (float(x[i, ch, k]) - float(mean[ch])))
            m = N * S
            k_dy = [float(gamma[ch]) * float(inv_std[ch]) for ch in range(C)]
            k_x = [-float(gamma[ch]) * float(inv_std[ch]) ** 3 * sum_dy_xmu[ch] / m for ch in range(C)]
            k_0 = [-k_dy[ch] * sum_dy[ch] / m for ch in range(C)]
            want = np.empty((N, C, S))
            for i, ch, k in np.ndindex(N, C, S):
                want[i, ch, k] = g[i][ch][k] * k_dy[ch] + (float(x[i, ch, k]) - float(mean[ch])) * k_x[ch] + k_0[ch]
            return ((dy, x, mean, mask, gamma, inv_std, np.empty(C, dtype), np.empty(C, dtype), np.empty_like(x),
                     N, C, S, relu, 1), {6: sum_dy, 7: sum_dy_xmu, 8: want})
        want = np.empty((N, C, S))
        for i, ch, k in np.ndindex(N, C, S):
            want[i, ch, k] = (g[i][ch][k] * float(k_dy[ch]) + (float(x[i, ch, k]) - float(mean[ch])) * float(k_x[ch])
                              + float(k_0[ch]))
        return (dy, x, mean, mask, k_dy, k_x, k_0, np.empty_like(x), N, C, S, relu), {7: want}

    return (lambda rng, dtype: case(rng, dtype, 0)), (lambda rng, dtype: case(rng, dtype, 1))


case_channel_affine, case_channel_affine_relu = _bn_case("channel_affine")
case_bn_fwd_fused, case_bn_fwd_fused_relu = _bn_case("bn_fwd_fused")
case_bn_bwd_reduce, case_bn_bwd_reduce_relu = _bn_case("bn_bwd_reduce")
case_bn_bwd_apply, case_bn_bwd_apply_relu = _bn_case("bn_bwd_apply")
case_bn_bwd_fused, case_bn_bwd_fused_relu = _bn_case("bn_bwd_fused")


def case_conv_maxpool_fwd(rng, dtype):
    x, wt, b = _rand(rng, (N, C, H, W), dtype), _rand(rng, (4, C, 3, 3), dtype), _rand(rng, 4, dtype)
    out, idx = naive.max_pool2d(naive.conv2d(x, wt, b, (1, 1), (1, 1), (1, 1), 1), (2, 2), (2, 2), (0, 0))
    return (x, wt, b, np.empty(out.shape, dtype), np.empty_like(idx), FUSED_CONV, FUSED_POOL), {3: out, 4: idx}


def case_conv_maxpool_bwd_params(rng, dtype):
    x, wt, _, d_out, idx, mask, d_conv = _pooled_routing(rng, dtype)
    d_w, d_b = naive.conv2d_params_grad(x, d_conv, wt.shape, (1, 1), (1, 1), (1, 1))
    return ((x, d_out, mask, idx, np.empty_like(wt), np.empty(4, dtype), FUSED_CONV, FUSED_POOL, 1),
            {4: d_w, 5: d_b})


def case_conv_maxpool_bwd_input(rng, dtype):
    x, wt, _, d_out, idx, mask, d_conv = _pooled_routing(rng, dtype)
    d_x = naive.conv2d_input_grad(wt, d_conv, x.shape, (1, 1), (1, 1), (1, 1))
    return (d_out, mask, idx, wt, np.empty_like(x), FUSED_CONV, FUSED_POOL, 1), {4: d_x}


# BatchNorm + ReLU + max pool: the 2x2/2 path on a plane with an uncovered
# last row, and (second case, "__generic") 3x2 windows with stride (3, 2).
BNPOOL_GEOMETRIES = {"": PoolGeometry(N, C, H, W, 2, 2, 2, 2, 0, 0, H // 2, W // 2),
                     "__generic": PoolGeometry(N, C, H, W, 3, 2, 3, 2, 0, 0, H // 3, W // 2)}


def _bnpool_pool(y, g):
    """(max(pool(y), 0), code) of float64 y: the winner chosen before the ReLU."""
    pooled, idx = naive.max_pool2d(y, (g.kh, g.kw), (g.sh, g.sw), (0, 0))
    iy, iz = np.divmod(idx, W)
    code = (iy - np.arange(g.oh)[:, None] * g.sh) * g.kw + iz - np.arange(g.ow)[None, :] * g.sw
    return np.maximum(pooled, 0), code.astype(np.uint8)


def _bnpool_routed(d_out, out, code, g):
    """d_out at each output's winner where the output is > 0, 0 elsewhere: (N, C, H, W) float64."""
    dy = np.zeros((N, C, H, W))
    for b, ch, y, z in np.ndindex(out.shape):
        if out[b, ch, y, z] > 0:
            k = int(code[b, ch, y, z])
            dy[b, ch, y * g.sh + k // g.kw, z * g.sw + k % g.kw] = d_out[b, ch, y, z]
    return dy


def _bnpool_backward_inputs(rng, dtype, g):
    x, mean = _rand(rng, (N, C, H, W), dtype), _rand(rng, C, dtype)
    d_out, out = _rand(rng, (N, C, g.oh, g.ow), dtype), _rand(rng, (N, C, g.oh, g.ow), dtype)
    code = rng.integers(0, g.kh * g.kw, out.shape).astype(np.uint8)
    return d_out, x, mean, out, code


def _bnpool_cases(g):
    """Oracle cases of the five bnpool kernels on geometry g."""
    def fwd(rng, dtype):
        x, scale, shift = _rand(rng, (N, C, H, W), dtype), _rand(rng, C, dtype), _rand(rng, C, dtype)
        out, code = _bnpool_pool(x.astype(np.float64) * scale[None, :, None, None] + shift[None, :, None, None], g)
        return (x, scale, shift, np.empty(out.shape, dtype), np.empty_like(code), g), {3: out, 4: code}

    def fwd_fused(rng, dtype):  # training statistics, then the pool
        x, gamma, beta = _rand(rng, (N, C, H, W), dtype), _rand(rng, C, dtype), _rand(rng, C, dtype)
        y, mean, var = naive.batch_norm_train(x.astype(np.float64), gamma, beta, 1e-5)
        out, code = _bnpool_pool(y, g)
        return ((x, gamma, beta, np.empty(C, dtype), np.empty(C, dtype), np.empty(out.shape, dtype),
                 np.empty_like(code), 1e-5, g), {3: mean, 4: var, 5: out, 6: code})

    def sums(d_out, x, out, code, mean):
        dy = _bnpool_routed(d_out, out, code, g)
        return dy, dy.sum(axis=(0, 2, 3)), (dy * (x - mean[None, :, None, None].astype(np.float64))).sum(axis=(0, 2, 3))

    def bwd_reduce(rng, dtype):
        d_out, x, mean, out, code = _bnpool_backward_inputs(rng, dtype, g)
        _, sum_dy, sum_dy_xmu = sums(d_out, x, out, code, mean)
        return (d_out, x, mean, out, code, np.empty(C, dtype), np.empty(C, dtype), g), {5: sum_dy, 6: sum_dy_xmu}

    def applied(dy, x, mean, k_dy, k_x, k_0):
        per_channel = [np.asarray(k, np.float64)[None, :, None, None] for k in (k_dy, k_x, k_0)]
        return dy * per_channel[0] + (x - mean[None, :, None, None].astype(np.float64)) * per_channel[1] + per_channel[2]

    def bwd_apply(rng, dtype):
        d_out, x, mean, out, code = _bnpool_backward_inputs(rng, dtype, g)
        k_dy, k_x, k_0 = (_rand(rng, C, dtype) for _ in range(3))
        want = applied(_bnpool_routed(d_out, out, code, g), x, mean, k_dy, k_x, k_0)
        return (d_out, x, mean, out, code, k_dy, k_x, k_0, np.empty_like(x), g), {8: want}

    def bwd_fused(rng, dtype):  # the sums, the training coefficients (backends/_bn_terms.py), the apply
        d_out, x, mean, out, code = _bnpool_backward_inputs(rng, dtype, g)
        gamma, inv_std = _rand(rng, C, dtype), np.abs(_rand(rng, C, dtype)) + dtype(0.5)
        dy, sum_dy, sum_dy_xmu = sums(d_out, x, out, code, mean)
        gamma64, inv64, m = gamma.astype(np.float64), inv_std.astype(np.float64), N * H * W
        k_dy = gamma64 * inv64
        want = applied(dy, x, mean, k_dy, -gamma64 * inv64 ** 3 * sum_dy_xmu / m, -k_dy * sum_dy / m)
        return ((d_out, x, mean, out, code, gamma, inv_std, np.empty(C, dtype), np.empty(C, dtype),
                 np.empty_like(x), 1, g), {7: sum_dy, 8: sum_dy_xmu, 9: want})

    return {"bnpool_fwd": fwd, "bnpool_fwd_fused": fwd_fused, "bnpool_bwd_reduce": bwd_reduce,
            "bnpool_bwd_apply": bwd_apply, "bnpool_bwd_fused": bwd_fused}


for _suffix, _g in BNPOOL_GEOMETRIES.items():
    for _kernel, _case in _bnpool_cases(_g).items():
        globals()[f"case_{_kernel}{_suffix}"] = _case
del _suffix, _g, _kernel, _case


def case_im2row(rng, dtype):
    """The (i, j, ch)-ordered patches of the first (uh, uw) outputs: im2col's entries, permuted."""
    x, uh, uw = _rand(rng, (N, C, H, W), dtype), CONV.oh - 1, CONV.ow - 1
    col = naive.im2col(x, 3, 2, *CONV_ARGS).reshape(C, 3, 2, N, CONV.oh, CONV.ow)
    want = col[:, :, :, :, :uh, :uw].transpose(3, 4, 5, 1, 2, 0).reshape(N * uh * uw, 3 * 2 * C)
    return (x, np.empty_like(want, dtype=dtype), CONV, uh, uw), {1: want}


def case_rows_maxpool(rng, dtype):
    """The pool of y + bias placed in the (OH, OW) planes it covers."""
    uh, uw = 6, 6  # of a (7, 6) convolution output: the 2x2/2 pool reads rows < 6
    y, bias = _rand(rng, (N * uh * uw, 4), dtype), _rand(rng, 4, dtype)
    plane = np.full((N, 4, H, W), -np.inf)
    plane[:, :, :uh, :uw] = (y.reshape(N, uh, uw, 4) + bias).transpose(0, 3, 1, 2)
    out, idx = naive.max_pool2d(plane, (2, 2), (2, 2), (0, 0))
    return (y, bias, np.empty(out.shape, dtype), np.empty_like(idx), FUSED_POOL, uh, uw), {2: out, 3: idx}


def _conv_cases(g):
    """(forward case, backward case) of a convolution kernel pair on geometry g
    (one group, 4 filters, N x C x H x W input)."""
    args = ((g.sh, g.sw), (g.ph, g.pw), (g.dh, g.dw))

    def forward(rng, dtype):
        x, wt, b = _rand(rng, (N, C, H, W), dtype), _rand(rng, (4, C, g.kh, g.kw), dtype), _rand(rng, 4, dtype)
        want = naive.conv2d(x, wt, b, *args, 1)
        return (x, wt, b, np.empty(want.shape, dtype), g), {3: want}

    def backward(rng, dtype):
        x, wt = _rand(rng, (N, C, H, W), dtype), _rand(rng, (4, C, g.kh, g.kw), dtype)
        d_out = _rand(rng, (N, 4, g.oh, g.ow), dtype)
        d_w, d_b = naive.conv2d_params_grad(x, d_out, wt.shape, *args)
        d_x = naive.conv2d_input_grad(wt, d_out, x.shape, *args)
        return (x, wt, d_out, np.empty_like(x), np.empty_like(wt), np.empty(4, dtype), g), {3: d_x, 4: d_w, 5: d_b}

    return forward, backward


case_conv2d_fwd, case_conv2d_bwd = _conv_cases(CONV)
# the direct kernels on CONV's strided geometry (their phase-plane layout;
# stride 1 runs in test_conv_gemm.py's direct tests)
case_conv2d_direct_fwd, case_conv2d_direct_bwd = _conv_cases(CONV)
# the channel-vector kernels: stride 1, padding within the kernel's reach, dilation
OCVEC = ConvGeometry(N, C, H, W, f=4, kh=3, kw=2, sh=1, sw=1, ph=2, pw=0, dh=2, dw=1, oh=H, ow=W - 1, groups=1)
case_conv2d_ocvec_fwd, case_conv2d_ocvec_bwd = _conv_cases(OCVEC)
# the Winograd kernels: 3x3, stride 1, unequal padding, odd output sizes
WINOGRAD = ConvGeometry(N, C, H, W, f=4, kh=3, kw=3, sh=1, sw=1, ph=2, pw=0, dh=1, dw=1, oh=H + 2, ow=W - 2, groups=1)
case_conv2d_winograd_fwd, case_conv2d_winograd_bwd = _conv_cases(WINOGRAD)


# elementwise: more elements than one thread's share (FC_GRAIN), with the
# values where a select and the reference's product or maximum part ways
_SPECIAL = [-1.0, 0.0, -0.0, 2.0, np.nan, np.inf, -np.inf]


# the kernels run whole vectors, then a partial last one
ELEMENTWISE_SIZE = 70_007  # 7 past whole vectors of 16 or 8: the special values at the end are the tail


def _elementwise_input(rng, dtype):
    x = _rand(rng, ELEMENTWISE_SIZE, dtype)
    x[:len(_SPECIAL)] = _SPECIAL
    x[-len(_SPECIAL):] = _SPECIAL
    return x


def case_relu(rng, dtype):
    x = _elementwise_input(rng, dtype)
    want = np.array([0.0 if v <= 0 else v for v in x.tolist()], dtype)
    return (x, np.empty_like(x), x.size), {1: want}


def case_relu_bwd(rng, dtype):
    out = _elementwise_input(rng, dtype)
    d_out = _rand(rng, out.size, dtype)
    d_out[0] = d_out[-6] = np.inf  # at zeroed positions: inf * 0 is NaN, as in the reference's product
    want = np.array([g * (1.0 if o > 0 else 0.0) for g, o in zip(d_out.tolist(), out.tolist())], dtype)
    return (d_out, out, np.empty_like(out), out.size), {2: want}


def case_relu_bwd_add(rng, dtype):
    out = _elementwise_input(rng, dtype)
    d_out, other = _rand(rng, out.size, dtype), _rand(rng, out.size, dtype)
    d_out[0] = d_out[-6] = np.inf  # at zeroed positions: inf * 0 is NaN, as in the reference's product
    want = np.array([a + g * (1.0 if o > 0 else 0.0) for a, g, o in zip(other.tolist(), d_out.tolist(), out.tolist())],
                    dtype)
    return (d_out, out, other, np.empty_like(out), out.size), {3: want}


def case_add(rng, dtype):
    a, b = _elementwise_input(rng, dtype), _rand(rng, ELEMENTWISE_SIZE, dtype)
    return (a, b, np.empty_like(a), a.size), {2: np.array([u + v for u, v in zip(a.tolist(), b.tolist())], dtype)}


def case_crop_planes(rng, dtype):
    src = _rand(rng, 3 * 5 * 7, dtype)
    planes = src.reshape(3, 5, 7).tolist()
    want = np.array([[row[:6] for row in plane[:4]] for plane in planes], dtype).ravel()
    return (src, np.full(3 * 4 * 6, np.nan, dtype), 3, 5, 7, 4, 6), {1: want}


def case_pad_planes(rng, dtype):
    src = _rand(rng, 3 * 4 * 6, dtype)
    planes = src.reshape(3, 4, 6).tolist()
    want = np.array([[[planes[p][y][x] if y < 4 and x < 6 else 0.0 for x in range(7)] for y in range(5)]
                     for p in range(3)], dtype).ravel()
    return (src, np.full(3 * 5 * 7, np.nan, dtype), 3, 5, 7, 4, 6), {1: want}


# dense layers: 7 rows (a full register tile of rows and one more), 9
# inputs, 70 outputs (a block of vectors, single vectors and a partial one
# at any vector width)
LIN_N, LIN_K, LIN_F = 7, 9, 70


def _linear_operands(rng, dtype):
    return (_rand(rng, (LIN_N, LIN_K), dtype), _rand(rng, (LIN_K, LIN_F), dtype), _rand(rng, LIN_F, dtype),
            _rand(rng, (LIN_N, LIN_F), dtype))


def _matmul_loops(a, b):
    """Rows x columns, each a float64 sum in order: the oracle."""
    return np.array([[sum(float(a[i, p]) * float(b[p, j]) for p in range(a.shape[1])) for j in range(b.shape[1])]
                     for i in range(a.shape[0])])


def case_linear_fwd(rng, dtype):
    x, w, b, _ = _linear_operands(rng, dtype)
    want = _matmul_loops(x, w) + b.astype(np.float64)
    return (x, w, b, np.full((LIN_N, LIN_F), np.nan, dtype), LIN_N, LIN_K, LIN_F), {3: want}


def case_linear_fwd__no_bias(rng, dtype):
    x, w, _, _ = _linear_operands(rng, dtype)
    return (x, w, None, np.full((LIN_N, LIN_F), np.nan, dtype), LIN_N, LIN_K, LIN_F), {3: _matmul_loops(x, w)}


def case_linear_bwd(rng, dtype):
    x, w, _, d = _linear_operands(rng, dtype)
    outs = [np.full(shape, np.nan, dtype) for shape in ((LIN_N, LIN_K), (LIN_K, LIN_F), (LIN_F,))]
    want = {3: _matmul_loops(d, w.T), 4: _matmul_loops(x.T, d), 5: d.astype(np.float64).sum(axis=0)}
    return (x, w, d, *outs, LIN_N, LIN_K, LIN_F), want


def case_linear_bwd__params_only(rng, dtype):
    x, w, _, d = _linear_operands(rng, dtype)
    return (x, w, d, None, np.full((LIN_K, LIN_F), np.nan, dtype), None, LIN_N, LIN_K, LIN_F), {4: _matmul_loops(x.T, d)}


def case_sgd_update(rng, dtype):
    value, grad, velocity = (_rand(rng, 11, dtype) for _ in range(3))
    want_value, want_velocity = naive.sgd_step(value, grad, velocity, 0.1, 0.9, 1e-3, True, False)
    return (value, grad, velocity, 11, 0.1, 0.9, 1e-3, 1, 0), {0: want_value, 2: want_velocity}


# kernel name, or kernel name + "_relu" or "__<variant>" for a second case of the same kernel
ORACLE_CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}


def _kernel_of(case: str) -> str:
    return case if case in KERNELS else case.removesuffix("_relu").split("__")[0]


def test_every_kernel_has_an_oracle_case():
    kernels_with_cases = {_kernel_of(name) for name in ORACLE_CASES}
    assert kernels_with_cases == set(KERNELS), "a kernel of csrc/fastconv.h lacks an oracle case here"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_every_kernel_of_every_backend_equals_the_oracle(case, backend, dtype):
    try:
        module = load(backend)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    kernel = _kernel_of(case)
    fn = getattr(module, kernel, None)
    assert fn is not None, f"the {backend} backend lacks kernel {kernel!r}"
    args, want = ORACLE_CASES[case](np.random.default_rng(len(case)), dtype)
    fn(*args)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for position, expected in want.items():
        got = args[position]
        assert got.dtype == (expected.dtype if expected.dtype.kind in "iu" else dtype)
        if expected.dtype.kind in "iu":
            np.testing.assert_array_equal(got, expected, err_msg=f"{backend}.{kernel} argument {position}")
        else:
            np.testing.assert_allclose(got, expected.reshape(got.shape), **tol,
                                       err_msg=f"{backend}.{kernel} argument {position}")
