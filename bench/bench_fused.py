"""The fused few-tap convolution + max pool (the seed network's first layer:
(64, 1, 28, 28), 32 filters 3x3, 2x2 pool), every backend, the same work done
by the separate layers ("c+layers", "numba+layers": Conv2D then MaxPool2D) and
PyTorch's conv2d + max_pool2d."""
import numpy as np
import pytest

import fastconv.functional as F
from fastconv import Conv2D, MaxPool2D
from conftest import run_case

SHAPE_ID = "64x1x28x28 k3 32 pool2"
IMPLS = ("numpy", "numba", "numba+layers", "c", "c+layers", "torch")


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((32, 1, 3, 3)) / 3).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    out, idx = F.conv2d_maxpool(x, w, b, backend="numpy")
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    d_w, d_b = F.conv2d_maxpool_backward_params(x, d_out, idx, w.shape, backend="numpy")
    return x, w, b, out, idx, d_out, d_w, d_b


def _layers(w, b, backend):
    conv, pool = Conv2D(1, 32, 3, backend=backend), MaxPool2D(2, backend=backend)
    conv.weights[...], conv.bias[...] = w, b
    return conv, pool


@pytest.mark.parametrize("impl", IMPLS)
def test_conv_maxpool_forward(benchmark, impl):
    x, w, b, out, idx, *_ = _data()

    def call(backend):
        if backend.endswith("+layers"):
            conv, pool = _layers(w, b, backend.split("+")[0])
            return lambda: (pool.forward(conv.forward(x)),)  # its indices are plane-major: not compared
        return lambda: F.conv2d_maxpool(x, w, b, backend=backend)

    def torch_call(t):
        xt, wt, bt = t.from_numpy(x), t.from_numpy(w), t.from_numpy(b)
        return lambda: t.nn.functional.max_pool2d(t.nn.functional.conv2d(xt, wt, bt), 2, 2, return_indices=True)

    run_case(benchmark, impl, "conv2d+max_pool2d", SHAPE_ID, expected=(out, idx), call=call,
             torch_call=torch_call, torch_result=lambda r: (r[0].numpy(),),  # float32 near-ties may differ
             bytes_read=x.nbytes, bytes_written=out.nbytes + idx.nbytes)


@pytest.mark.parametrize("impl", IMPLS)
def test_conv_maxpool_backward_params(benchmark, impl):
    """Weight and bias gradients from the pooled gradient and indices."""
    x, w, b, out, idx, d_out, d_w, d_b = _data()

    def call(backend):
        if backend.endswith("+layers"):
            conv, pool = _layers(w, b, backend.split("+")[0])
            y = conv.forward(x)
            pool.forward(y)

            def run():
                conv.backward_params_only(pool.backward(d_out))
                return conv.d_weights, conv.d_bias
            return run
        return lambda: F.conv2d_maxpool_backward_params(x, d_out, idx, w.shape, backend=backend)

    def torch_call(t):
        xt, gt, it = t.from_numpy(x), t.from_numpy(d_out), t.from_numpy(idx)

        def run():
            d_conv = t.nn.functional.max_unpool2d(gt, it, 2, 2, output_size=(26, 26))
            return t.nn.grad.conv2d_weight(xt, (32, 1, 3, 3), d_conv), d_conv.sum(dim=(0, 2, 3))
        return run

    run_case(benchmark, impl, "conv2d+max_pool2d backward (params)", SHAPE_ID, expected=(d_w, d_b),
             call=call, torch_call=torch_call, torch_result=lambda r: (r[0].numpy(), r[1].numpy()),
             bytes_read=x.nbytes + d_out.nbytes + idx.nbytes, bytes_written=d_w.nbytes + d_b.nbytes)
