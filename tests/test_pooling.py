"""Pooling: every backend against the loop-by-loop oracle, plus gradient checks."""
import numpy as np
import pytest

import fastconv.functional as F
from conftest import PARALLEL_MIN_WORK, assert_close
import naive

# (N, C, H, W), kernel, stride, padding
CASES = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0)),   # the common 2x2/2
    ((2, 3, 9, 7), (2, 2), (2, 2), (0, 0)),   # odd sizes: last row/col dropped
    ((2, 2, 7, 7), (3, 3), (1, 1), (0, 0)),   # overlapping windows
    ((2, 2, 7, 8), (3, 3), (2, 2), (1, 1)),   # padding
    ((1, 2, 9, 9), (2, 2), (3, 3), (0, 0)),   # stride > kernel
    ((2, 1, 6, 9), (2, 3), (1, 2), (1, 1)),   # non-square everything
    ((1, 1, 5, 5), (5, 5), (1, 1), (2, 2)),   # heavy padding (= half the kernel)
    ((3, 2, 1, 1), (1, 1), (1, 1), (0, 0)),   # 1x1 spatial
    ((2, 3, 4, 6), (4, 6), (1, 1), (0, 0)),   # window == input
]


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_max_pool_forward_and_backward(backend, dtype, shape, k, s, p):
    x = _inputs(shape, dtype)
    out, idx = F.max_pool2d(x, k, s, p, backend=backend)
    ref_out, ref_idx = naive.max_pool2d(x, k, s, p)
    assert_close(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    assert idx.dtype == np.int64
    d_out = _inputs(out.shape, dtype, 1)
    assert_close(F.max_pool2d_backward(d_out, idx, x.shape, backend=backend),
                 naive.max_pool2d_backward(d_out, ref_idx, x.shape))
    assert_close(F.max_unpool2d(d_out, idx, x.shape, backend=backend),
                 naive.max_unpool2d(d_out, ref_idx, x.shape))
    buf = np.full(x.shape, np.nan, dtype=dtype)  # out= is overwritten, not added to
    assert F.max_pool2d_backward(d_out, idx, x.shape, out=buf, backend=backend) is buf
    assert_close(buf, naive.max_pool2d_backward(d_out, ref_idx, x.shape))
    out_buf, idx_buf = np.full(out.shape, np.nan, dtype=dtype), np.full(out.shape, -7, dtype=np.int64)
    got, got_idx = F.max_pool2d(x, k, s, p, out=out_buf, out_indices=idx_buf, backend=backend)
    assert got is out_buf and got_idx is idx_buf
    np.testing.assert_array_equal(got, out)
    np.testing.assert_array_equal(got_idx, idx)


def test_ties_go_to_first_in_row_major_order(backend, dtype):
    x = np.zeros((1, 1, 4, 4), dtype=dtype)  # every window is a tie
    _, idx = F.max_pool2d(x, 2, backend=backend)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = 5  # two winners in the first window
    _, idx = F.max_pool2d(x, 2, backend=backend)
    assert idx[0, 0, 0, 0] == 1
    _, idx = F.max_pool2d(x, 3, stride=1, padding=1, backend=backend)
    assert idx[0, 0, 0, 0] == 1  # padding never wins, even against zeros


def test_nan_propagates_and_minus_inf_input(backend):
    x = np.full((1, 1, 4, 4), -np.inf)
    x[0, 0, 3, 2] = np.nan
    out, idx = F.max_pool2d(x, 2, backend=backend)
    assert np.isnan(out[0, 0, 1, 1]) and idx[0, 0, 1, 1] == 14
    assert out[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == 0  # a real pixel, not padding
    _, idx = F.max_pool2d(x, 3, stride=2, padding=1, backend=backend)
    assert idx[0, 0, 0, 0] == 0


def test_unpool_accepts_spatial_shape(backend):
    x = _inputs((2, 3, 6, 6), np.float64)
    out, idx = F.max_pool2d(x, 2, backend=backend)
    np.testing.assert_array_equal(F.max_unpool2d(out, idx, (6, 6), backend=backend),
                                  F.max_unpool2d(out, idx, x.shape, backend=backend))


def test_max_pool_gradcheck(backend):
    x = _inputs((2, 2, 7, 7), np.float64)  # continuous values: no ties
    out, idx = F.max_pool2d(x, 3, 2, 1, backend=backend)
    d_out = _inputs(out.shape, np.float64, 2)
    num = naive.numerical_grad(lambda t: F.max_pool2d(t, 3, 2, 1, backend=backend)[0], x, d_out)
    assert naive.rel_error(F.max_pool2d_backward(d_out, idx, x.shape, backend=backend), num) < 1e-6


@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_avg_pool_forward_and_backward(backend, dtype, shape, k, s, p):
    x = _inputs(shape, dtype)
    out = F.avg_pool2d(x, k, s, p, backend=backend)
    assert_close(out, naive.avg_pool2d(x, k, s, p))
    # backward is the adjoint of forward: <avg(x), g> == <x, avg_backward(g)>
    g = _inputs(out.shape, np.float64, 1)
    x64 = x.astype(np.float64)
    d_x = F.avg_pool2d_backward(g, x.shape, k, s, p, backend=backend)
    np.testing.assert_allclose(np.vdot(F.avg_pool2d(x64, k, s, p, backend="numpy"), g), np.vdot(x64, d_x), rtol=1e-10)


def test_avg_pool_gradcheck(backend):
    x = _inputs((2, 2, 6, 7), np.float64)
    d_out = _inputs(F.avg_pool2d(x, 3, 2, 1).shape, np.float64, 3)
    num = naive.numerical_grad(lambda t: F.avg_pool2d(t, 3, 2, 1, backend=backend), x, d_out)
    assert naive.rel_error(F.avg_pool2d_backward(d_out, x.shape, 3, 2, 1, backend=backend), num) < 1e-6


@pytest.mark.parametrize("shape,out_size", [((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 5), (5, 5)),
                                            ((2, 2, 4, 6), (1, 1)), ((1, 1, 3, 3), (5, 4))])
def test_adaptive_avg_pool(backend, dtype, shape, out_size):
    x = _inputs(shape, dtype)
    out = F.adaptive_avg_pool2d(x, out_size, backend=backend)
    assert_close(out, naive.adaptive_avg_pool2d(x, *out_size))
    d_out = _inputs(out.shape, np.float64, 4)
    x64 = x.astype(np.float64)
    num = naive.numerical_grad(lambda t: F.adaptive_avg_pool2d(t, out_size, backend=backend), x64, d_out)
    assert naive.rel_error(F.adaptive_avg_pool2d_backward(d_out, shape, backend=backend), num) < 1e-6


def test_global_avg_pool(backend, dtype):
    x = _inputs((3, 4, 5, 6), dtype)
    out = F.global_avg_pool2d(x, backend=backend)
    assert out.shape == (3, 4)
    assert_close(out, x.mean(axis=(2, 3), dtype=np.float64).astype(dtype))
    g = _inputs((3, 4), np.float64, 5)
    d_x = F.global_avg_pool2d_backward(g, x.shape, backend=backend)
    np.testing.assert_allclose(d_x, np.broadcast_to(g[:, :, None, None] / 30, x.shape), rtol=1e-12)


def test_non_contiguous_inputs(backend, dtype):
    base = _inputs((4, 6, 10, 12), dtype)
    x = base[::2, ::2, :, ::-1].transpose(0, 1, 3, 2)
    out, idx = F.max_pool2d(x, 2, backend=backend)
    ref_out, ref_idx = naive.max_pool2d(np.ascontiguousarray(x), (2, 2), (2, 2), (0, 0))
    assert_close(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    d_out = np.asfortranarray(_inputs(out.shape, dtype, 1))
    assert_close(F.max_pool2d_backward(d_out, np.asfortranarray(idx), x.shape, backend=backend),
                 naive.max_pool2d_backward(np.ascontiguousarray(d_out), ref_idx, x.shape))
    assert_close(F.avg_pool2d(x, 3, 1, 1, backend=backend),
                 naive.avg_pool2d(np.ascontiguousarray(x), (3, 3), (1, 1), (1, 1)))


def test_pool_and_batchnorm_identical_at_one_and_many_threads(fast_backend):
    import fastconv
    from fastconv._threads import max_threads

    rng = np.random.default_rng(9)
    x = rng.standard_normal((16, 8, 26, 22)).astype(np.float32)
    assert x.size >= PARALLEL_MIN_WORK  # else the C kernels run on one thread either way

    def run():
        out, idx = F.max_pool2d(x, 3, 2, 1, backend=fast_backend)
        bn, cache = F.batch_norm_forward(x, np.ones(8, np.float32), np.zeros(8, np.float32),
                                         np.zeros(8, np.float32), np.ones(8, np.float32), backend=fast_backend)
        return (out, idx, F.max_pool2d_backward(out, idx, x.shape, backend=fast_backend),
                F.avg_pool2d_backward(out, x.shape, 3, 2, 1, backend=fast_backend), bn,
                *F.batch_norm_backward(x, cache))

    fastconv.set_num_threads(1)
    one = run()
    fastconv.set_num_threads(max_threads())
    for a, b in zip(one, run()):
        np.testing.assert_array_equal(a, b)
