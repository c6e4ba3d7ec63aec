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


# ------------------------------------------------------------- ceil_mode
# Output sizes by PyTorch's rule (torch.nn.MaxPool2d(k, s, p, ceil_mode=True)):
# (size, kernel, stride, padding) -> outputs.
CEIL_SIZES = [
    (7, 2, 2, 0, 4),   # the last window holds one row
    (8, 2, 2, 0, 4),   # even: the same as floor mode
    (5, 2, 2, 1, 3),   # rounding up would start a window in the right padding: dropped
    (6, 3, 2, 1, 4),
    (10, 3, 3, 0, 4),
    (1, 1, 2, 0, 1),
]


@pytest.mark.parametrize("size,k,s,p,want", CEIL_SIZES)
def test_ceil_mode_output_sizes_follow_pytorchs_rule(backend, size, k, s, p, want):
    """The one Python rule, the oracle's and the C kernels' own check (which
    refuses any other size) agree on PyTorch's sizes."""
    from fastconv._geometry import pool_output_size

    assert pool_output_size(size, k, s, p, True) == naive.pool_out(size, k, s, p, True) == want
    x = _inputs((1, 1, size, size + 1), np.float64)
    out, _ = F.max_pool2d(x, k, s, p, ceil_mode=True, backend=backend)
    assert out.shape == (1, 1, want, naive.pool_out(size + 1, k, s, p, True))


# sizes where ceil mode adds a last, overhanging row or column of windows:
# odd planes under 2x2/2 (the unrolled paths' geometry) with rows shorter and
# longer than the C/Numba 8-output chunk, padding, non-square windows
CEIL_CASES = [
    ((2, 3, 7, 7), (2, 2), (2, 2), (0, 0)),
    ((2, 2, 9, 21), (2, 2), (2, 2), (0, 0)),
    ((1, 2, 17, 16), (2, 2), (2, 2), (0, 0)),
    ((2, 2, 8, 9), (3, 3), (2, 2), (1, 1)),
    ((1, 3, 10, 11), (3, 2), (3, 2), (0, 1)),
    ((1, 1, 1, 3), (1, 2), (2, 2), (0, 0)),
]


@pytest.mark.parametrize("shape,k,s,p", CEIL_CASES)
def test_ceil_mode_forward_and_backward_equal_the_oracle(backend, dtype, shape, k, s, p):
    x = _inputs(shape, dtype)
    out, idx = F.max_pool2d(x, k, s, p, ceil_mode=True, backend=backend)
    ref_out, ref_idx = naive.max_pool2d(x, k, s, p, ceil_mode=True)
    assert out.shape == ref_out.shape
    assert_close(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    d_out = _inputs(out.shape, dtype, 1)
    assert_close(F.max_pool2d_backward(d_out, idx, x.shape, backend=backend),
                 naive.max_pool2d_backward(d_out, ref_idx, x.shape))


def test_ceil_mode_last_window_never_reads_past_the_plane(backend):
    """A plane whose memory is followed by huge values: in ceil mode the
    overhanging last windows must take their max over the plane only."""
    big = np.full((1, 2, 7, 7), 1e30)
    big[0, 0] = _inputs((7, 7), np.float64)
    x = big[:, :1]  # plane 0 of a C-contiguous array: plane 1 follows it in memory
    assert x.flags.c_contiguous  # passed as is: no copy ends the plane
    out, idx = F.max_pool2d(x, 2, ceil_mode=True, backend=backend)
    ref_out, ref_idx = naive.max_pool2d(x, (2, 2), (2, 2), (0, 0), ceil_mode=True)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)


def test_ceil_mode_gradcheck(backend):
    x = _inputs((2, 2, 7, 8), np.float64)
    out, idx = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, backend=backend)
    d_out = _inputs(out.shape, np.float64, 2)
    num = naive.numerical_grad(lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True, backend=backend)[0], x, d_out)
    assert naive.rel_error(F.max_pool2d_backward(d_out, idx, x.shape, backend=backend), num) < 1e-6


def test_ceil_mode_must_be_a_bool():
    with pytest.raises(TypeError, match="ceil_mode must be True or False, got 'yes'"):
        F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, ceil_mode="yes")


def test_maxpool2d_layer_ceil_mode_saves_loads_and_is_not_fused(tmp_path, backend):
    """MaxPool2D(ceil_mode=True) in a CNN: the conv+pool fusions are floor-mode
    only, so the model runs the layers as themselves (and gives what they
    give one by one); the setting survives save/load."""
    import fastconv
    from fastconv.model import plan

    layers = [fastconv.Conv2D(1, 3, 3, backend=backend), fastconv.MaxPool2D(2, ceil_mode=True, backend=backend),
              fastconv.ReLU()]
    stages, rewritten = plan(layers)
    assert not rewritten and [type(s) for s in stages[1:]] == [fastconv.MaxPool2D, fastconv.ReLU]
    model = fastconv.CNN(layers)
    x = _inputs((2, 1, 9, 9), np.float32)
    out = model.forward(x)
    assert out.shape == (2, 3, 4, 4)  # 7x7 conv output -> 4x4 with ceil_mode
    manual = x
    for layer in layers:
        manual = layer.forward(manual)
    np.testing.assert_array_equal(out, manual)
    model.save(tmp_path / "m.npz")
    again = fastconv.load_model(tmp_path / "m.npz")
    assert again.layers[1].ceil_mode is True
    np.testing.assert_array_equal(again.forward(x), out)
    assert "ceil_mode" not in fastconv.MaxPool2D(2).get_config()  # floor-mode files unchanged
