"""hypothesis: random configurations; every backend agrees with the reference,
and col2im is the adjoint of im2col."""
import numpy as np
from hypothesis import given, settings, strategies as st

import fastconv
from conftest import TOL


@st.composite
def conv_configs(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    fh, fw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # input at least as large as the dilated kernel minus the padding
    h = draw(st.integers(max(1, dh * (fh - 1) + 1 - 2 * ph), 12))
    w = draw(st.integers(max(1, dw * (fw - 1) + 1 - 2 * pw), 12))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return dict(shape=(n, c, h, w), k=(fh, fw), stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), dtype=dtype, seed=draw(st.integers(0, 2**32 - 1)))


def _kw(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])


@settings(max_examples=60, deadline=None)
@given(conv_configs())
def test_backends_agree_with_reference(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"]).astype(cfg["dtype"])
    ref_col = fastconv.im2col(x, *cfg["k"], backend="numpy", **_kw(cfg))
    col = rng.standard_normal(ref_col.shape).astype(cfg["dtype"])
    ref_x = fastconv.col2im(col, x.shape, *cfg["k"], backend="numpy", **_kw(cfg))
    for name in fastconv.available_backends():
        got_col = fastconv.im2col(x, *cfg["k"], backend=name, **_kw(cfg))
        np.testing.assert_array_equal(got_col, ref_col)  # a pure copy: exact
        got_x = fastconv.col2im(col, x.shape, *cfg["k"], backend=name, **_kw(cfg))
        np.testing.assert_allclose(got_x, ref_x, **TOL[cfg["dtype"]])


@settings(max_examples=60, deadline=None)
@given(conv_configs())
def test_adjoint_identity(cfg):
    """<im2col(x), c> == <x, col2im(c)> for every backend."""
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"])
    for name in fastconv.available_backends():
        col_x = fastconv.im2col(x, *cfg["k"], backend=name, **_kw(cfg))
        c = rng.standard_normal(col_x.shape)
        lhs = np.vdot(col_x, c)
        rhs = np.vdot(x, fastconv.col2im(c, x.shape, *cfg["k"], backend=name, **_kw(cfg)))
        np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------- pooling
import fastconv.functional as F  # noqa: E402


@st.composite
def pool_configs(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 11))
    w = draw(st.integers(max(1, kw - 2 * pw), 11))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), k=(kh, kw),
                s=(sh, sw), p=(ph, pw), dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**32 - 1)),
                # small integers make ties common: the tie rule is exercised
                ties=draw(st.booleans()))


@settings(max_examples=60, deadline=None)
@given(pool_configs())
def test_pooling_backends_agree_and_routing_preserves_sum(cfg):
    rng = np.random.default_rng(cfg["seed"])
    if cfg["ties"]:
        x = rng.integers(-2, 3, cfg["shape"]).astype(cfg["dtype"])
    else:
        x = rng.standard_normal(cfg["shape"]).astype(cfg["dtype"])
    k, s, p = cfg["k"], cfg["s"], cfg["p"]
    ref_out, ref_idx = F.max_pool2d(x, k, s, p, backend="numpy")
    d_out = rng.standard_normal(ref_out.shape)
    ref_avg = F.avg_pool2d(x, k, s, p, backend="numpy")
    for name in fastconv.available_backends():
        out, idx = F.max_pool2d(x, k, s, p, backend=name)
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(idx, ref_idx)
        d_x = F.max_pool2d_backward(d_out, idx, x.shape, backend=name)
        # every upstream gradient lands somewhere, once
        np.testing.assert_allclose(d_x.sum(), d_out.sum(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(F.avg_pool2d(x, k, s, p, backend=name), ref_avg, **TOL[cfg["dtype"]])


@st.composite
def bn_configs(draw):
    ndim4 = draw(st.booleans())
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    hw = (draw(st.integers(1, 6)), draw(st.integers(1, 6))) if ndim4 else ()
    if n * int(np.prod(hw)) < 2:
        n = 2
    return dict(shape=(n, c, *hw), seed=draw(st.integers(0, 2**32 - 1)),
                loc=draw(st.floats(-100, 100)), scale=draw(st.floats(0.1, 10)))


@settings(max_examples=60, deadline=None)
@given(bn_configs())
def test_batchnorm_invariants(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = cfg["loc"] + cfg["scale"] * rng.standard_normal(cfg["shape"])
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    d_out = rng.standard_normal(x.shape)
    ref = None
    for name in fastconv.available_backends():
        out, cache = F.batch_norm_forward(x, np.ones(c), np.zeros(c), np.zeros(c), np.ones(c),
                                          eps=1e-12, backend=name)
        np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-7)
        var = out.var(axis=axes)
        # a channel whose values are all equal normalises to 0, not unit variance
        spread = x.std(axis=axes) > 1e-9 * np.abs(x).max(axis=axes)
        np.testing.assert_allclose(var[spread], 1, rtol=1e-5)
        d_x, d_gamma, d_beta = F.batch_norm_backward(d_out, cache)
        # relative to the size of d_x's terms (dy * gamma * inv_std), not of d_x: with two values per
        # channel d_x is 0 exactly, and what the kernels return is the rounding of those terms
        terms = np.abs(d_out).max() * float(np.max(cache.inv_std))
        np.testing.assert_allclose(d_x.sum(axis=axes), 0, atol=1e-6 * (np.abs(d_x).max() + terms) + 1e-9)
        got = np.concatenate([out.ravel(), d_x.ravel(), d_gamma, d_beta])
        if ref is None:
            ref = got
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-8)
