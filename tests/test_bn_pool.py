"""BatchNorm + ReLU + max pool as one stage (functional.batch_norm_relu_max_pool,
the bnpool_* kernels, layers/fused.py BatchNormReLUPool): every backend
against the layer-by-layer computation of the NumPy reference, gradient
checks, thread-count independence, error messages, and whole models with and
without the fused stage."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.functional as F
from fastconv import CNN, BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from fastconv.architectures import bn_cnn
from fastconv.layers.fused import BatchNormReLU, BatchNormReLUPool
from conftest import PARALLEL_MIN_WORK, TOL

# kernel_size, stride: the 2x2 fast paths, wider and non-square windows, gaps
# between windows (stride > window), and 1x1 (a copy of the ReLU'd BatchNorm)
POOLS = [(2, None), (3, None), ((2, 3), (3, 4)), (1, 1)]


def _params(rng, c, dtype):
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    running = (rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5)
    return gamma, beta, running


def _layer_by_layer(x, gamma, beta, running, k, s, training, d_out, reduce=None):
    """The reference's BatchNorm (with its ReLU), then its max pool, and back."""
    rm, rv = running[0].copy(), running[1].copy()
    y, cache = F.batch_norm_forward(x, gamma, beta, rm, rv, training=training, relu=True, reduce=reduce,
                                    backend="numpy")
    out, idx = F.max_pool2d(y, k, s, backend="numpy")
    if d_out is None:
        return out, (rm, rv), None
    dy = F.max_pool2d_backward(d_out, idx, y.shape, backend="numpy")
    return out, (rm, rv), F.batch_norm_backward(dy, cache, backend="numpy")


def _fused(x, gamma, beta, running, k, s, training, d_out, backend, reduce=None):
    rm, rv = running[0].copy(), running[1].copy()
    out, cache = F.batch_norm_relu_max_pool(x, gamma, beta, rm, rv, k, s, training=training, reduce=reduce,
                                            backend=backend)
    grads = F.batch_norm_relu_max_pool_backward(d_out, cache) if d_out is not None else None
    return out, (rm, rv), grads


def _assert_same(got, want, dtype):
    out, running, grads = got
    np.testing.assert_allclose(out, want[0], **TOL[dtype])
    for a, b in zip(running, want[1]):
        np.testing.assert_allclose(a, b, **TOL[dtype])
    if grads is not None:
        for name, a, b in zip(("d_x", "d_gamma", "d_beta"), grads, want[2]):
            assert a.dtype == dtype
            # the sums run over N*H*W values: relative to their size
            tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-10)
            np.testing.assert_allclose(a, b, **tol, err_msg=name)


@pytest.mark.parametrize("k,s", POOLS)
@pytest.mark.parametrize("training", [True, False])
def test_equals_batchnorm_relu_then_max_pool(backend, dtype, k, s, training):
    rng = np.random.default_rng(0)
    # 21 columns: 2x2 rows of 10 outputs (a vector chunk and an overlapping
    # tail) and an uncovered last column; 11 rows: an uncovered last row
    x = rng.standard_normal((3, 4, 11, 21)).astype(dtype)
    gamma, beta, running = _params(rng, 4, dtype)
    want = _layer_by_layer(x, gamma, beta, running, k, s, training, None)
    d_out = rng.standard_normal(want[0].shape).astype(dtype)
    want = _layer_by_layer(x, gamma, beta, running, k, s, training, d_out)
    _assert_same(_fused(x, gamma, beta, running, k, s, training, d_out, backend), want, dtype)


@pytest.mark.parametrize("training", [True, False])
def test_channels_larger_than_l2_take_the_two_pass_kernels(backend, training):
    """Past FC_BN_FUSED_BYTES (1 MB) of x per channel the one-call kernels run
    the statistics (or sums) and the pool (or apply) as two passes."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 2, 66, 64)).astype(np.float32)  # 1.08 MB per channel
    gamma, beta, running = _params(rng, 2, np.float32)
    out = _layer_by_layer(x, gamma, beta, running, 2, None, training, None)[0]
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    _assert_same(_fused(x, gamma, beta, running, 2, None, training, d_out, backend),
                 _layer_by_layer(x, gamma, beta, running, 2, None, training, d_out), np.float32)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 5), h=st.integers(2, 19), w=st.integers(2, 40),
       pool=st.sampled_from(POOLS), training=st.booleans(), f64=st.booleans(),
       backend=st.sampled_from(fastconv.available_backends()), seed=st.integers(0, 2**16))
def test_random_shapes(n, c, h, w, pool, training, f64, backend, seed):
    k, s = pool
    kh, kw = (k, k) if isinstance(k, int) else k
    if h < kh or w < kw or (training and n * h * w < 2):
        return
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    gamma, beta, running = _params(rng, c, dtype)
    out = _layer_by_layer(x, gamma, beta, running, k, s, training, None)[0]
    d_out = rng.standard_normal(out.shape).astype(dtype)
    _assert_same(_fused(x, gamma, beta, running, k, s, training, d_out, backend),
                 _layer_by_layer(x, gamma, beta, running, k, s, training, d_out), dtype)


@pytest.mark.parametrize("k,s", [(2, None), ((2, 3), (3, 4))])
def test_gradcheck(backend, k, s):
    """Central differences of sum(g * out) w.r.t. x, gamma and beta (float64, training)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 9))
    gamma, beta, running = _params(rng, 3, np.float64)

    def loss(xv, gv, bv):
        out, _ = F.batch_norm_relu_max_pool(xv, gv, bv, running[0].copy(), running[1].copy(), k, s,
                                            backend=backend)
        return np.sum(g * out)

    out, cache = F.batch_norm_relu_max_pool(x, gamma, beta, running[0].copy(), running[1].copy(), k, s,
                                            backend=backend)
    g = rng.standard_normal(out.shape)
    d_x, d_gamma, d_beta = F.batch_norm_relu_max_pool_backward(g, cache)
    for value, grad in ((x, d_x), (gamma, d_gamma), (beta, d_beta)):
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            keep = value[i]
            value[i] = keep + 1e-6
            up = loss(x, gamma, beta)
            value[i] = keep - 1e-6
            down = loss(x, gamma, beta)
            value[i] = keep
            numeric[i] = (up - down) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_ties_and_nan_as_the_layers(backend):
    """Ties (integer-valued inputs) go to the first element, as the pool after
    the ReLU would route them; a NaN comes out as NaN."""
    rng = np.random.default_rng(2)
    x = rng.integers(-2, 3, (2, 3, 8, 18)).astype(np.float64)
    gamma, beta, running = _params(rng, 3, np.float64)
    out = _layer_by_layer(x, gamma, beta, running, 2, None, True, None)[0]
    d_out = rng.standard_normal(out.shape)
    _assert_same(_fused(x, gamma, beta, running, 2, None, True, d_out, backend),
                 _layer_by_layer(x, gamma, beta, running, 2, None, True, d_out), np.float64)
    x[1, 2, 3, 5] = np.nan
    got = _fused(x, gamma, beta, running, 2, None, False, None, backend)[0]
    want = _layer_by_layer(x, gamma, beta, running, 2, None, False, None)[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[1, 2, 1, 2])


def test_synchronised_statistics_and_sums(backend):
    """With reduce= (data-parallel BatchNorm) the statistics and the backward's
    sums go through it, as batch_norm_forward's: here a fake two-process sum
    (every value twice), which must equal the layers with the same reduce."""
    def two_copies(a):
        a *= 2

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 16))
    gamma, beta, running = _params(rng, 3, np.float64)
    out = _layer_by_layer(x, gamma, beta, running, 2, None, True, None, two_copies)[0]
    d_out = rng.standard_normal(out.shape)
    _assert_same(_fused(x, gamma, beta, running, 2, None, True, d_out, backend, two_copies),
                 _layer_by_layer(x, gamma, beta, running, 2, None, True, d_out, two_copies), np.float64)


def test_same_bits_at_any_thread_count(fast_backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 8, 32, 34)).astype(np.float32)
    assert x.size // 4 >= PARALLEL_MIN_WORK  # the pooled arrays too
    gamma, beta, running = _params(rng, 8, np.float32)
    d_out = rng.standard_normal((16, 8, 16, 17)).astype(np.float32)
    results = []
    for threads in (1, 2):  # (conftest restores the thread count)
        fastconv.set_num_threads(threads)
        results.append(_fused(x, gamma, beta, running, 2, None, True, d_out, fast_backend))
    (out1, run1, g1), (out2, run2, g2) = results
    np.testing.assert_array_equal(out1, out2)
    for a, b in zip((*run1, *g1), (*run2, *g2)):
        np.testing.assert_array_equal(a, b)


def test_errors(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    gamma, beta, (rm, rv) = _params(rng, 3, np.float32)
    with pytest.raises(ValueError, match="windows would overlap"):
        F.batch_norm_relu_max_pool(x, gamma, beta, rm, rv, 3, 2, backend=backend)
    assert "padding" in F.bn_pool_unsupported(2, 2, padding=1)
    assert "ceil_mode" in F.bn_pool_unsupported(2, 2, ceil_mode=True)
    assert "taps" in F.bn_pool_unsupported(17, 17)
    assert F.bn_pool_unsupported((2, 3), (2, 3)) is None
    with pytest.raises(ValueError, match="to be a 4-D array"):
        F.batch_norm_relu_max_pool(x[0], gamma, beta, rm, rv, backend=backend)
    with pytest.raises(ValueError, match="gamma has shape"):
        F.batch_norm_relu_max_pool(x, gamma[:2], beta, rm, rv, backend=backend)
    with pytest.raises(ValueError, match="pooling window"):
        F.batch_norm_relu_max_pool(x, gamma, beta, rm, rv, 9, backend=backend)
    out, cache = F.batch_norm_relu_max_pool(x, gamma, beta, rm, rv, backend=backend)
    with pytest.raises(ValueError, match="d_out has shape"):
        F.batch_norm_relu_max_pool_backward(np.ones((2, 3, 4, 3), np.float32), cache)
    with pytest.raises(TypeError, match="d_out"):
        F.batch_norm_relu_max_pool_backward(np.ones(out.shape), cache)
    with pytest.raises(TypeError, match="BatchNormPoolCache"):
        F.batch_norm_relu_max_pool_backward(out, cache.bn)
    cache.code[1, 2, 0, 3] = 4  # outside its 2x2 window: a corrupted cache, never a wild write
    with pytest.raises(ValueError, match="outside their window"):
        F.batch_norm_relu_max_pool_backward(np.ones_like(out), cache)


# ----------------------------------------------------------------- the stage
def _stage_kinds(model):
    return [type(s).__name__ for s in model._schedule()]


def test_cnn_runs_batchnorm_relu_pool_as_one_stage_where_the_backend_fuses_it():
    model = bn_cnn()
    fastconv.set_backend("c") if "c" in fastconv.available_backends() else pytest.skip("no C backend")
    assert _stage_kinds(model).count("BatchNormReLUPool") == 3
    fastconv.set_backend("numpy")  # the reference runs BatchNorm + ReLU, then the pool
    assert "BatchNormReLUPool" not in _stage_kinds(model)
    assert _stage_kinds(model).count("BatchNormReLU") == 4


@pytest.mark.parametrize("pool", [MaxPool2D(3, 2), MaxPool2D(2, padding=1), MaxPool2D(2, ceil_mode=True)])
def test_pools_the_kernels_do_not_take_stay_layers(pool):
    fastconv.set_backend("c") if "c" in fastconv.available_backends() else pytest.skip("no C backend")
    model = CNN([Conv2D(1, 4, 3, padding=1), BatchNorm2D(4), ReLU(), pool])
    assert _stage_kinds(model) == ["Conv2D", "BatchNormReLU", "MaxPool2D"]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fused_model_equals_the_same_model_unfused(training, dtype):
    fastconv.set_backend("c") if "c" in fastconv.available_backends() else pytest.skip("no C backend")
    fastconv.seed(6)
    fused = CNN([Conv2D(3, 5, 3, padding=1, bias=False), BatchNorm2D(5), ReLU(), MaxPool2D(2),
                 Conv2D(5, 6, 3, padding=1), BatchNorm2D(6), ReLU(), MaxPool2D((2, 3)),
                 Flatten(), Dense(6 * 4 * 3, 10)]).astype(dtype)
    plain = CNN(fused.layers, fuse=False)
    assert _stage_kinds(fused).count("BatchNormReLUPool") == 2
    fused.train(training)
    x = np.random.default_rng(7).standard_normal((4, 3, 17, 19)).astype(dtype)
    d = np.random.default_rng(8).standard_normal((4, 10)).astype(dtype)
    state = [v.copy() for _, v in fused.buffers()]
    out = fused.forward(x)
    d_x = fused.backward(d)
    grads = [g.copy() for g in fused.grads()]
    stats = [v.copy() for _, v in fused.buffers()]
    for (_, v), s in zip(fused.buffers(), state):  # the same running statistics going in
        v[...] = s
    np.testing.assert_allclose(plain.forward(x), out, **TOL[dtype])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(plain.backward(d), d_x, **tol)
    for g, r in zip(grads, plain.grads()):
        np.testing.assert_allclose(g, r, **tol)
    for s, (_, v) in zip(stats, plain.buffers()):
        np.testing.assert_allclose(s, v, **TOL[dtype])


def test_the_fused_batchnorm_refuses_its_own_backward():
    fastconv.set_backend("c") if "c" in fastconv.available_backends() else pytest.skip("no C backend")
    model = CNN([Conv2D(1, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2)])
    assert isinstance(model._schedule()[1], BatchNormReLUPool)
    out = model.forward(np.ones((2, 1, 8, 8), np.float32))
    model.backward(np.ones_like(out))
    assert np.any(model.layers[1].d_gamma != 0) or np.any(model.layers[1].d_beta != 0)
    for layer in model.layers[1:]:
        with pytest.raises(RuntimeError, match="ran fused"):
            layer.backward(np.ones((2, 4, 8, 8), np.float32))
    assert not any(isinstance(s, BatchNormReLU) for s in model._schedule())
