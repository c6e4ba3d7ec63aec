"""BatchNorm: forward (train and eval), running statistics, closed-form backward."""
import numpy as np
import pytest

import fastconv.functional as F
from conftest import PARALLEL_MIN_WORK, TOL, assert_close
import naive

SHAPES = [(8, 3, 5, 5), (4, 2, 7, 3), (6, 5), (5, 4, 1, 1), (2, 3, 1, 1), (3, 1, 4, 4)]


def _params(c, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, c).astype(dtype), rng.standard_normal(c).astype(dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_training_forward_and_running_stats(backend, dtype, shape):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    c = shape[1]
    gamma, beta = _params(c, dtype)
    rm, rv = np.full(c, 0.5), np.full(c, 2.0)
    out, cache = F.batch_norm_forward(x, gamma, beta, rm, rv, momentum=0.2, eps=1e-5, backend=backend)
    ref, mean, var = naive.batch_norm_train(x.astype(np.float64), gamma, beta, 1e-5)
    assert_close(out, ref.astype(dtype))
    m = x.size // c
    np.testing.assert_allclose(rm, 0.8 * 0.5 + 0.2 * mean, **TOL[dtype])
    np.testing.assert_allclose(rv, 0.8 * 2.0 + 0.2 * var * m / (m - 1), **TOL[dtype])  # unbiased
    assert cache.training


@pytest.mark.parametrize("shape", SHAPES)
def test_eval_uses_running_stats(backend, dtype, shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    gamma, beta = _params(c, dtype)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    rm0, rv0 = rm.copy(), rv.copy()
    out, _ = F.batch_norm_forward(x, gamma, beta, rm, rv, training=False, backend=backend)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    expected = gamma.reshape(bshape) * (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5) + beta.reshape(bshape)
    assert_close(out, expected.astype(dtype))
    np.testing.assert_array_equal(rm, rm0)  # eval never touches the running statistics
    np.testing.assert_array_equal(rv, rv0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_backward_gradcheck(backend, shape, training):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * 2 + 1
    c = shape[1]
    gamma, beta = _params(c, np.float64)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    d_out = rng.standard_normal(shape)

    def forward(x_, g_=gamma, b_=beta):
        return F.batch_norm_forward(x_, g_, b_, rm.copy(), rv.copy(), training=training, backend=backend)[0]

    _, cache = F.batch_norm_forward(x, gamma, beta, rm.copy(), rv.copy(), training=training, backend=backend)
    d_x, d_gamma, d_beta = F.batch_norm_backward(d_out, cache)
    assert naive.rel_error(d_x, naive.numerical_grad(forward, x.copy(), d_out)) < 1e-6
    assert naive.rel_error(d_gamma, naive.numerical_grad(lambda g: forward(x, g_=g), gamma.copy(), d_out)) < 1e-6
    assert naive.rel_error(d_beta, naive.numerical_grad(lambda b: forward(x, b_=b), beta.copy(), d_out)) < 1e-6


def test_backends_agree_in_float32(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 8, 9, 9)).astype(dtype)
    d_out = rng.standard_normal(x.shape).astype(dtype)
    gamma, beta = _params(8, dtype)
    results = {}
    import fastconv

    for name in fastconv.available_backends():
        out, cache = F.batch_norm_forward(x, gamma, beta, np.zeros(8), np.ones(8), backend=name)
        results[name] = (out, *F.batch_norm_backward(d_out, cache))
    for name, got in results.items():
        for a, b in zip(got, results["numpy"]):
            assert_close(a, b)


def test_large_mean_small_spread_is_accurate(backend):
    """Shifted sums: no catastrophic cancellation when |mean| >> std."""
    rng = np.random.default_rng(5)
    x = (1e4 + rng.standard_normal((32, 2, 8, 8)) * 1e-2).astype(np.float64)
    out, _ = F.batch_norm_forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), eps=1e-12, backend=backend)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-6)


def test_dx_sums_to_zero_per_channel(backend):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 4, 6, 6))
    _, cache = F.batch_norm_forward(x, np.ones(4) * 2, np.zeros(4), np.zeros(4), np.ones(4), backend=backend)
    d_x, _, _ = F.batch_norm_backward(rng.standard_normal(x.shape), cache)
    np.testing.assert_allclose(d_x.sum(axis=(0, 2, 3)), 0, atol=1e-10)


def test_out_buffers_are_filled_and_returned(backend, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 5, 5)).astype(dtype)
    d_out = rng.standard_normal(x.shape).astype(dtype)
    gamma, beta = _params(3, dtype)
    ref_out, ref_cache = F.batch_norm_forward(x, gamma, beta, np.zeros(3), np.ones(3), backend=backend)
    ref_grads = F.batch_norm_backward(d_out, ref_cache)
    buf = np.full(x.shape, np.nan, dtype=dtype)  # overwritten, never read
    out, cache = F.batch_norm_forward(x, gamma, beta, np.zeros(3), np.ones(3), out=buf, backend=backend)
    assert out is buf
    np.testing.assert_array_equal(out, ref_out)
    d_buf = np.full(x.shape, np.nan, dtype=dtype)
    grads = F.batch_norm_backward(d_out, cache, out=d_buf)
    assert grads[0] is d_buf
    for got, want in zip(grads, ref_grads):
        np.testing.assert_array_equal(got, want)


def test_out_buffer_errors(backend):
    x = np.ones((4, 3, 5, 5), np.float32)
    args = (np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"out has shape \(4, 3, 5, 4\) and dtype float32; expected shape \(4, 3, 5, 5\)"):
        F.batch_norm_forward(x, *args, out=np.empty((4, 3, 5, 4), np.float32), backend=backend)
    with pytest.raises(ValueError, match="out overlaps x"):  # the cache keeps x for backward
        F.batch_norm_forward(x, *args, out=x, backend=backend)
    _, cache = F.batch_norm_forward(x, *args, backend=backend)
    d_out = np.ones_like(x)
    with pytest.raises(ValueError, match="out overlaps d_out"):
        F.batch_norm_backward(d_out, cache, out=d_out)
    with pytest.raises(ValueError, match=r"dtype float64; expected shape \(4, 3, 5, 5\) and dtype float32"):
        F.batch_norm_backward(d_out, cache, out=np.empty(x.shape))


@pytest.mark.parametrize("n", [1100, 4097])
def test_large_batches_use_bigger_blocks(backend, n):
    """Over 1024 images the reductions sum blocks of more than 4 images (at most
    256 blocks); sums must still match the reference and not depend on the
    thread count."""
    import fastconv
    from fastconv._threads import max_threads

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((n, 32)) * 2 + 1).astype(np.float64)
    assert x.size >= PARALLEL_MIN_WORK  # else the C kernels run on one thread either way
    d_out = rng.standard_normal(x.shape)
    gamma, beta = _params(32, np.float64)

    def run():
        out, cache = F.batch_norm_forward(x, gamma, beta, np.zeros(32), np.ones(32), backend=backend)
        return (out, *F.batch_norm_backward(d_out, cache))

    ref, mean, var = naive.batch_norm_train(x, gamma, beta, 1e-5)
    fastconv.set_num_threads(1)
    one = run()
    fastconv.set_num_threads(max_threads())
    many = run()
    assert_close(one[0], ref)
    _, ref_cache = F.batch_norm_forward(x, gamma, beta, np.zeros(32), np.ones(32), backend="numpy")
    for got, want in zip(one[1:], F.batch_norm_backward(d_out, ref_cache)):
        assert_close(got, want)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("s", [49, 2500])  # a channel's arrays under / over 1 MB (the C kernel's two orders)
@pytest.mark.parametrize("has_mask", [0, 1])
@pytest.mark.parametrize("training", [0, 1])
def test_the_fused_backward_gives_the_two_pass_bits(backend, dtype, has_mask, training, s):
    """bn_bwd_fused (reduce, coefficients, apply channel by channel) equals
    bn_bwd_reduce + backward_terms + bn_bwd_apply bit for bit -- the path a
    synchronised BatchNorm takes -- over several image blocks (37 images)."""
    from fastconv.backends import _bn_terms, resolve

    kernels = resolve(backend)
    rng = np.random.default_rng(11)
    n, c = 37, 5
    dy, x, mask = (rng.standard_normal((n, c, s)).astype(dtype) for _ in range(3))
    mean = x.mean(axis=(0, 2)).astype(dtype)
    gamma, inv_std = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    sums_fused = np.empty(c, dtype), np.empty(c, dtype)
    d_x_fused = np.empty_like(x)
    kernels.bn_bwd_fused(dy, x, mean, mask, gamma, inv_std, *sums_fused, d_x_fused, n, c, s, has_mask, training)
    sums = np.empty(c, dtype), np.empty(c, dtype)
    kernels.bn_bwd_reduce(dy, x, mean, mask, *sums, n, c, s, has_mask)
    terms = _bn_terms.backward_terms(*sums, gamma, inv_std, n * s, training, dtype)
    d_x = np.empty_like(x)
    kernels.bn_bwd_apply(dy, x, mean, mask, *terms, d_x, n, c, s, has_mask)
    for got, want in zip((*sums_fused, d_x_fused), (*sums, d_x)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("s", [1, 49, 7200])  # the C kernel's orders: single values, a channel under / over 1 MB
@pytest.mark.parametrize("relu, has_res", [(0, 0), (1, 0), (1, 1)])
def test_the_fused_forward_gives_the_two_pass_bits(backend, dtype, relu, has_res, s):
    """bn_fwd_fused (statistics, coefficients, affine channel by channel)
    equals bn_stats + forward_terms + channel_affine bit for bit -- the path a
    synchronised BatchNorm and eval take -- over several image blocks."""
    from fastconv.backends import _bn_terms, resolve

    kernels = resolve(backend)
    rng = np.random.default_rng(12)
    n, c = 37, 5
    x = (rng.standard_normal((n, c, s)) * 3 + 50).astype(dtype)  # |mean| >> std: the shifted sums
    res = rng.standard_normal((n, c, s)).astype(dtype)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    stats_fused = np.empty(c, dtype), np.empty(c, dtype)
    out_fused = np.empty_like(x)
    kernels.bn_fwd_fused(x, gamma, beta, res, *stats_fused, out_fused, n, c, s, 1e-5, relu, has_res)
    stats = np.empty(c, dtype), np.empty(c, dtype)
    kernels.bn_stats(x, *stats, n, c, s)
    _, scale, shift = _bn_terms.forward_terms(*stats, gamma, beta, 1e-5, dtype)
    out = np.empty_like(x)
    kernels.channel_affine(x, scale, shift, res, out, n, c, s, relu, has_res)
    for got, want in zip((*stats_fused, out_fused), (*stats, out)):
        np.testing.assert_array_equal(got, want)
    assert_close(stats_fused[0], x.mean(axis=(0, 2), dtype=np.float64).astype(dtype))
