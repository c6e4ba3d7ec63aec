"""im2col / col2im: every backend against the loop-by-loop oracle."""
import numpy as np
import pytest

import fastconv
from fastconv._threads import max_threads
from conftest import PARALLEL_MIN_WORK, assert_close
import naive

# (N, C, H, W), (FH, FW), stride, padding, dilation
CASES = [
    ((2, 3, 7, 7), (3, 3), 1, 0, 1),
    ((2, 3, 8, 6), (3, 3), 1, 1, 1),
    ((1, 1, 5, 5), (1, 1), 1, 0, 1),             # 1x1 kernel
    ((2, 2, 6, 7), (1, 1), 2, 0, 1),             # 1x1 kernel, strided
    ((2, 2, 4, 5), (4, 5), 1, 0, 1),             # kernel == input
    ((1, 2, 4, 5), (4, 5), 1, 2, 1),             # kernel == input, padded
    ((2, 1, 9, 9), (2, 2), 3, 0, 1),             # stride > kernel
    ((2, 3, 9, 11), (3, 2), (2, 1), (1, 2), 1),  # tuple stride/padding, non-square
    ((1, 2, 10, 9), (3, 3), 1, 2, 2),            # dilation 2
    ((2, 2, 12, 10), (2, 3), (1, 2), (0, 3), (3, 2)),  # everything tuple
    ((3, 4, 5, 5), (5, 5), 2, 3, 1),             # padding > kernel/2
    ((1, 1, 1, 1), (1, 1), 1, 0, 1),             # single pixel
    ((2, 3, 6, 6), (3, 3), 4, 1, 1),             # stride leaves the tail unused
]


def _pairs(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("shape,k,stride,padding,dilation", CASES)
def test_im2col_matches_naive(backend, dtype, shape, k, stride, padding, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    expected = naive.im2col(x, *k, _pairs(stride), _pairs(padding), _pairs(dilation))
    got = fastconv.im2col(x, *k, stride=stride, padding=padding, dilation=dilation, backend=backend)
    assert_close(got, expected)


@pytest.mark.parametrize("shape,k,stride,padding,dilation", CASES)
def test_col2im_matches_naive(backend, dtype, shape, k, stride, padding, dilation):
    rng = np.random.default_rng(1)
    x_shape = shape
    cols = naive.im2col(np.zeros(shape), *k, _pairs(stride), _pairs(padding), _pairs(dilation)).shape
    col = rng.standard_normal(cols).astype(dtype)
    expected = naive.col2im(col, x_shape, *k, _pairs(stride), _pairs(padding), _pairs(dilation))
    got = fastconv.col2im(col, x_shape, *k, stride=stride, padding=padding, dilation=dilation,
                          backend=backend)
    assert_close(got, expected)


def test_overlapping_windows_accumulate(backend):
    # A 3x3 window with stride 1 over an all-ones column matrix: the centre
    # pixel of a 5x5 image is covered by 9 windows, a corner by 1.
    col = np.ones((9, 9))
    x = fastconv.col2im(col, (1, 1, 5, 5), 3, 3, backend=backend)
    assert x[0, 0, 2, 2] == 9 and x[0, 0, 0, 0] == 1 and x[0, 0, 0, 2] == 3


def test_seeds_layout(backend):
    """The exact index formula of the from-scratch guides."""
    x = np.arange(2 * 2 * 4 * 4, dtype=np.float64).reshape(2, 2, 4, 4)
    col = fastconv.im2col(x, 2, 2, stride=2, backend=backend)
    oh = ow = 2
    for c in range(2):
        for i in range(2):
            for j in range(2):
                for n in range(2):
                    for y in range(oh):
                        for z in range(ow):
                            assert col[(c * 2 + i) * 2 + j, (n * oh + y) * ow + z] == x[n, c, y * 2 + i, z * 2 + j]


def test_non_contiguous_inputs(backend, dtype):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((4, 6, 9, 10)).astype(dtype)
    views = [base[::2, 1::2, :, ::2], base.transpose(0, 1, 3, 2), np.asfortranarray(base)]
    for x in views:
        assert not x.flags.c_contiguous
        expected = naive.im2col(np.ascontiguousarray(x), 3, 3, (1, 1), (1, 1), (1, 1))
        assert_close(fastconv.im2col(x, 3, 3, padding=1, backend=backend), expected)
        col = rng.standard_normal(expected.shape).astype(dtype)
        col_view = np.asfortranarray(col)
        expected_x = naive.col2im(col, x.shape, 3, 3, (1, 1), (1, 1), (1, 1))
        assert_close(fastconv.col2im(col_view, x.shape, 3, 3, padding=1, backend=backend), expected_x)


def test_output_dtype_follows_input(backend, dtype):
    x = np.ones((1, 1, 4, 4), dtype=dtype)
    col = fastconv.im2col(x, 2, 2, backend=backend)
    assert col.dtype == dtype
    assert fastconv.col2im(col, x.shape, 2, 2, backend=backend).dtype == dtype


@pytest.mark.parametrize("fn", ["im2col", "col2im"])
def test_same_result_at_one_and_many_threads(fast_backend, fn):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 5, 13, 11))
    col = rng.standard_normal((5 * 9, 16 * 11 * 9))
    assert col.size >= PARALLEL_MIN_WORK  # else the C kernels run on one thread either way
    run = {
        "im2col": lambda: fastconv.im2col(x, 3, 3, backend=fast_backend),
        "col2im": lambda: fastconv.col2im(col, x.shape, 3, 3, backend=fast_backend),
    }[fn]
    fastconv.set_num_threads(1)
    one = run()
    fastconv.set_num_threads(max_threads())
    two = run()
    np.testing.assert_array_equal(one, two)  # disjoint writes: bit-identical


def test_out_buffers_are_filled_and_returned(backend, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 7, 6)).astype(dtype)
    expected = naive.im2col(x, 3, 3, (1, 1), (1, 1), (1, 1))
    out = np.full(expected.shape, np.nan, dtype=dtype)  # stale contents must not leak
    assert fastconv.im2col(x, 3, 3, padding=1, out=out, backend=backend) is out
    assert_close(out, expected)
    x_out = np.full(x.shape, np.nan, dtype=dtype)
    assert fastconv.col2im(expected, x.shape, 3, 3, padding=1, out=x_out, backend=backend) is x_out
    assert_close(x_out, naive.col2im(expected, x.shape, 3, 3, (1, 1), (1, 1), (1, 1)))
