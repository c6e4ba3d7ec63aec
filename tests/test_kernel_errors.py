"""Bad input to the pooling and BatchNorm functions: clear exceptions."""
import numpy as np
import pytest

import fastconv.functional as F

X = np.zeros((2, 3, 8, 8), dtype=np.float32)


def test_pool_wrong_ndim(backend):
    with pytest.raises(ValueError, match=r"4-D array \(N, C, H, W\), got shape \(3, 8, 8\); add a batch axis"):
        F.max_pool2d(X[0], 2, backend=backend)
    with pytest.raises(ValueError, match="4-D"):
        F.avg_pool2d(X[0, 0], 2, backend=backend)


def test_pool_window_larger_than_input(backend):
    with pytest.raises(ValueError, match=r"pooling window \(9, 9\).*larger than the padded input \(8, 8\)"):
        F.max_pool2d(X, 9, backend=backend)


def test_pool_padding_more_than_half_the_kernel(backend):
    with pytest.raises(ValueError, match=r"padding \(2, 2\) is more than half the kernel \(3, 3\)"):
        F.max_pool2d(X, 3, 1, 2, backend=backend)
    with pytest.raises(ValueError, match="more than half"):
        F.avg_pool2d(X, 2, 2, (0, 2), backend=backend)


def test_pool_bad_geometry(backend):
    with pytest.raises(ValueError, match="stride must be positive"):
        F.max_pool2d(X, 2, 0, backend=backend)
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        F.avg_pool2d(X, 0, backend=backend)


def test_indices_shape_mismatch(backend):
    out, idx = F.max_pool2d(X, 2, backend=backend)
    with pytest.raises(ValueError, match=r"indices has shape \(2, 3, 4, 3\) but d_out has shape \(2, 3, 4, 4\)"):
        F.max_pool2d_backward(out, idx[..., :3], X.shape, backend=backend)
    with pytest.raises(TypeError, match="indices must be an integer array"):
        F.max_pool2d_backward(out, idx.astype(np.float32), X.shape, backend=backend)


def test_indices_out_of_range(backend):
    out, idx = F.max_pool2d(X, 2, backend=backend)
    idx = idx.copy()
    idx[1, 2, 3, 3] = 64  # one past the 8x8 plane
    with pytest.raises(ValueError, match=r"indices point outside the \(H, W\) = \(8, 8\) plane"):
        F.max_pool2d_backward(out, idx, X.shape, backend=backend)
    idx[1, 2, 3, 3] = -1
    with pytest.raises(ValueError, match="outside"):
        F.max_unpool2d(out, idx, X.shape, backend=backend)


def test_pool_backward_shape_mismatch(backend):
    with pytest.raises(ValueError, match=r"N and C must match"):
        F.avg_pool2d_backward(np.zeros((2, 4, 4, 4), np.float32), X.shape, 2, backend=backend)
    with pytest.raises(ValueError, match=r"spatial shape \(3, 3\), but pooling"):
        F.avg_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), X.shape, 2, backend=backend)


def _bn(x=X, c=3, **kw):
    args = dict(gamma=np.ones(c, np.float32), beta=np.zeros(c, np.float32),
                running_mean=np.zeros(c, np.float32), running_var=np.ones(c, np.float32))
    args.update(kw)
    return F.batch_norm_forward(x, args["gamma"], args["beta"], args["running_mean"], args["running_var"],
                                training=kw.get("training", True))


def test_bn_channel_mismatch():
    with pytest.raises(ValueError, match=r"gamma has shape \(4,\), but x has 3 channels"):
        _bn(gamma=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"running_var has shape \(2,\), but x has 3 channels"):
        _bn(running_var=np.ones(2, np.float32))


def test_bn_wrong_ndim():
    with pytest.raises(ValueError, match=r"2-D or 4-D array \(N, C\) or \(N, C, H, W\), got shape \(3, 8, 8\)"):
        _bn(x=X[0])


def test_bn_single_value_per_channel_in_training():
    with pytest.raises(ValueError, match=r"more than one value per channel.*\(1, 3, 1, 1\)"):
        _bn(x=np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match="more than one value per channel"):
        _bn(x=np.zeros((1, 3), np.float32))
    _bn(x=np.zeros((1, 3, 1, 1), np.float32), training=False)  # fine in eval


def test_bn_running_stats_must_be_writeable_arrays():
    rv = np.ones(3, np.float32)
    rv.flags.writeable = False
    with pytest.raises(ValueError, match="running_var is read-only"):
        _bn(running_var=rv)
    with pytest.raises(TypeError, match="running_mean must be a NumPy array"):
        _bn(running_mean=[0.0, 0.0, 0.0])


def test_bn_integer_input():
    with pytest.raises(TypeError, match="x has dtype int64"):
        _bn(x=np.zeros((2, 3, 4, 4), np.int64))


def test_bn_backward_bad_grad():
    _, cache = _bn()
    with pytest.raises(ValueError, match=r"d_out has shape \(2, 3, 8, 7\) but the forward input had \(2, 3, 8, 8\)"):
        F.batch_norm_backward(np.zeros((2, 3, 8, 7), np.float32), cache)
    with pytest.raises(TypeError, match="d_out is float64 but the forward input is float32"):
        F.batch_norm_backward(np.zeros(X.shape), cache)
    with pytest.raises(TypeError, match="BatchNormCache"):
        F.batch_norm_backward(np.zeros(X.shape, np.float32), (X,))
