"""Bad input: a clear exception that names the problem and the fix."""
import numpy as np
import pytest

import fastconv

X = np.zeros((2, 3, 8, 8), dtype=np.float32)


def test_wrong_ndim_suggests_batch_axis(backend):
    with pytest.raises(ValueError, match=r"4-D array \(N, C, H, W\), got shape \(3, 8, 8\); add a batch axis with x\[None\]"):
        fastconv.im2col(X[0], 3, 3, backend=backend)
    with pytest.raises(ValueError, match=r"got shape \(8,\)"):
        fastconv.im2col(X[0, 0, 0], 3, 3, backend=backend)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.complex128, np.float16, bool])
def test_bad_dtype(backend, dtype):
    with pytest.raises(TypeError, match=r"float32 or float64.*astype"):
        fastconv.im2col(X.astype(dtype), 3, 3, backend=backend)
    with pytest.raises(TypeError, match=r"col has dtype"):
        fastconv.col2im(np.zeros((27, 72), dtype=dtype), X.shape, 3, 3, backend=backend)


def test_not_an_array():
    with pytest.raises(TypeError, match="must be a NumPy array, got str"):
        fastconv.im2col("image", 3, 3)


@pytest.mark.parametrize("kw,match", [
    (dict(stride=0), "stride must be positive, got 0"),
    (dict(stride=(1, -2)), "stride must be positive, got -2"),
    (dict(dilation=0), "dilation must be positive"),
    (dict(padding=-1), r"padding must be >= 0, got -1"),
    (dict(padding=(1, 2, 3)), r"padding must be an int or an \(h, w\) pair"),
    (dict(stride=1.5), "stride must be an int"),
])
def test_bad_geometry(backend, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fastconv.im2col(X, 3, 3, backend=backend, **kw)
    with pytest.raises((ValueError, TypeError), match=match):
        fastconv.col2im(np.zeros((27, 72), np.float32), X.shape, 3, 3, backend=backend, **kw)


def test_bad_kernel_size(backend):
    with pytest.raises(ValueError, match="FH \\(kernel height\\) must be positive"):
        fastconv.im2col(X, 0, 3, backend=backend)


def test_kernel_larger_than_padded_input(backend):
    with pytest.raises(ValueError, match=r"kernel \(9, 3\).*spans \(9, 3\), larger than the padded input \(8, 8\)"):
        fastconv.im2col(X, 9, 3, backend=backend)
    with pytest.raises(ValueError, match=r"spans \(9, 9\)"):
        fastconv.im2col(X, 5, 5, dilation=2, backend=backend)
    # ...but padding can make it fit
    assert fastconv.im2col(X, 9, 3, padding=1, backend=backend).shape == (3 * 9 * 3, 2 * 2 * 8)


def test_col_shape_mismatch(backend):
    with pytest.raises(ValueError, match=r"col has shape \(27, 70\).*expects \(C\*FH\*FW, N\*OH\*OW\) = \(27, 72\)"):
        fastconv.col2im(np.zeros((27, 70), np.float32), X.shape, 3, 3, backend=backend)
    with pytest.raises(ValueError, match=r"x_shape must be a 4-tuple"):
        fastconv.col2im(np.zeros((27, 72), np.float32), (3, 8, 8), 3, 3, backend=backend)
    with pytest.raises(ValueError, match=r"expected col to be a 2-D array"):
        fastconv.col2im(np.zeros((27, 72, 1), np.float32), X.shape, 3, 3, backend=backend)


def test_c_kernel_rejects_inconsistent_sizes():
    """The C layer checks sizes itself, so a wrong call is an error, not a crash."""
    if "c" not in fastconv.available_backends():
        pytest.skip("C backend not built")
    from fastconv._geometry import ConvGeometry, PoolGeometry
    from fastconv.backends import c_backend

    x = np.zeros((1, 1, 4, 4))
    col = np.zeros((4, 9))
    with pytest.raises(ValueError, match="fc_im2col: a size argument"):
        c_backend.im2col(x, col, ConvGeometry(1, 1, 4, 4, 1, 2, 2, 1, 1, 0, 0, 1, 1, 5, 5, 1))  # OH/OW wrong
    out, idx = np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), np.int64)
    with pytest.raises(ValueError, match="fc_maxpool_fwd: a size argument"):
        c_backend.maxpool_fwd(x, out, idx, PoolGeometry(1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 3, 2))  # OH wrong


def test_bad_out_buffer(backend):
    with pytest.raises(ValueError, match=r"out has shape \(27, 71\) and dtype float32; expected shape \(27, 72\)"):
        fastconv.im2col(X, 3, 3, out=np.empty((27, 71), np.float32), backend=backend)
    with pytest.raises(ValueError, match=r"dtype float64; expected shape \(27, 72\) and dtype float32"):
        fastconv.im2col(X, 3, 3, out=np.empty((27, 72)), backend=backend)
    with pytest.raises(ValueError, match="C-contiguous"):
        fastconv.im2col(X, 3, 3, out=np.empty((72, 27), np.float32).T, backend=backend)
    with pytest.raises(ValueError, match=r"expected shape \(2, 3, 8, 8\)"):
        fastconv.col2im(np.zeros((27, 72), np.float32), X.shape, 3, 3, out=np.empty((2, 3, 8, 7), np.float32), backend=backend)
    pooled, idx = fastconv.functional.max_pool2d(X, 2, backend=backend)
    with pytest.raises(ValueError, match=r"expected shape \(2, 3, 8, 8\)"):
        fastconv.functional.max_pool2d_backward(pooled, idx, X.shape, out=np.empty((2, 3, 8, 7), np.float32),
                                                backend=backend)
    with pytest.raises(ValueError, match=r"out_indices has shape \(2, 3, 4, 4\) and dtype int32; expected shape "
                                         r"\(2, 3, 4, 4\) and dtype int64"):
        fastconv.functional.max_pool2d(X, 2, out_indices=np.empty((2, 3, 4, 4), np.int32), backend=backend)
    with pytest.raises(ValueError, match="out overlaps x"):
        fastconv.functional.max_pool2d(X, 2, out=X.reshape(-1)[:96].reshape(2, 3, 4, 4), backend=backend)
    col = fastconv.im2col(X, 3, 3, backend=backend)
    with pytest.raises(ValueError, match="out overlaps col"):
        fastconv.col2im(col, X.shape, 3, 3, out=col.reshape(-1)[:X.size].reshape(X.shape), backend=backend)
