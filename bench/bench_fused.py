"""The fused convolution + max pool of the seed network's two layers, every
backend, beside the same work done by the separate layers ("c+layers",
"numba+layers": Conv2D then MaxPool2D, the GEMM path) and PyTorch's conv2d +
max_pool2d (backward: max_unpool2d + conv2d_weight / conv2d_input).

* first layer: (64, 1, 28, 28), 32 filters 3x3, 2x2 pool: the direct kernel;
* second layer: (64, 32, 13, 13), 64 filters 3x3, 2x2 pool (11x11 -> 5x5):
  im2row + GEMM + row pool forward (C), winner-sparse gradients."""
import numpy as np
import pytest

import fastconv.functional as F
from fastconv import Conv2D, MaxPool2D
from conftest import run_case

# shape id -> (x shape, filters)
SHAPES = {
    "64x1x28x28 k3 32 pool2": ((64, 1, 28, 28), 32),
    "64x32x13x13 k3 64 pool2": ((64, 32, 13, 13), 64),
}
IMPLS = ("numpy", "numba", "numba+layers", "c", "c+layers", "torch")


def _data(shape_id):
    x_shape, f = SHAPES[shape_id]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((f, x_shape[1], 3, 3)) / np.sqrt(9 * x_shape[1])).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    out, idx = F.conv2d_maxpool(x, w, b, backend="numpy")
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    return x, w, b, out, idx, d_out


def _layers(w, b, backend):
    conv, pool = Conv2D(w.shape[1], w.shape[0], 3, backend=backend), MaxPool2D(2, backend=backend)
    conv.weights[...], conv.bias[...] = w, b
    return conv, pool


def _conv_size(x):
    return x.shape[2] - 2, x.shape[3] - 2


@pytest.mark.parametrize("shape_id", SHAPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_conv_maxpool_forward(benchmark, impl, shape_id):
    x, w, b, out, idx, _ = _data(shape_id)

    def call(backend):
        if backend.endswith("+layers"):
            conv, pool = _layers(w, b, backend.split("+")[0])
            return lambda: (pool.forward(conv.forward(x)),)  # its indices are plane-major: not compared
        return lambda: F.conv2d_maxpool(x, w, b, backend=backend)

    def torch_call(t):
        xt, wt, bt = t.from_numpy(x), t.from_numpy(w), t.from_numpy(b)
        return lambda: t.nn.functional.max_pool2d(t.nn.functional.conv2d(xt, wt, bt), 2, 2, return_indices=True)

    run_case(benchmark, impl, "conv2d+max_pool2d", shape_id, expected=(out, idx), call=call,
             torch_call=torch_call, torch_result=lambda r: (r[0].numpy(),),  # float32 near-ties may differ
             bytes_read=x.nbytes, bytes_written=out.nbytes + idx.nbytes)


def _layers_backward_params(x, w, b, d_out, backend):
    conv, pool = _layers(w, b, backend)
    pool.forward(conv.forward(x))

    def run():
        conv.backward_params_only(pool.backward(d_out))
        return conv.d_weights, conv.d_bias
    return run


@pytest.mark.parametrize("shape_id", SHAPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_conv_maxpool_backward_params(benchmark, impl, shape_id):
    """Weight and bias gradients from the pooled gradient and indices."""
    x, w, b, out, idx, d_out = _data(shape_id)
    d_w, d_b = F.conv2d_maxpool_backward_params(x, d_out, idx, w.shape, backend="numpy")

    def call(backend):
        if backend.endswith("+layers"):
            return _layers_backward_params(x, w, b, d_out, backend.split("+")[0])
        return lambda: F.conv2d_maxpool_backward_params(x, d_out, idx, w.shape, backend=backend)

    def torch_call(t):
        xt, gt, it = t.from_numpy(x), t.from_numpy(d_out), t.from_numpy(idx)

        def run():
            d_conv = t.nn.functional.max_unpool2d(gt, it, 2, 2, output_size=_conv_size(x))
            return t.nn.grad.conv2d_weight(xt, w.shape, d_conv), d_conv.sum(dim=(0, 2, 3))
        return run

    run_case(benchmark, impl, "conv2d+max_pool2d backward (params)", shape_id, expected=(d_w, d_b),
             call=call, torch_call=torch_call, torch_result=lambda r: (r[0].numpy(), r[1].numpy()),
             bytes_read=x.nbytes + d_out.nbytes + idx.nbytes, bytes_written=d_w.nbytes + d_b.nbytes)


@pytest.mark.parametrize("impl", IMPLS)
def test_conv_maxpool_backward_input(benchmark, impl):
    """The input gradient (second layer only: a first layer never needs it)."""
    shape_id = "64x32x13x13 k3 64 pool2"
    x, w, b, out, idx, d_out = _data(shape_id)
    d_x = F.conv2d_maxpool_backward_input(d_out, idx, w, x.shape, backend="numpy")

    if impl.endswith("+layers"):
        pytest.skip("Conv2D has no input-only backward: see the params case and bench_training")

    def call(backend):
        return lambda: F.conv2d_maxpool_backward_input(d_out, idx, w, x.shape, backend=backend)

    def torch_call(t):
        gt, it, wt = t.from_numpy(d_out), t.from_numpy(idx), t.from_numpy(w)

        def run():
            d_conv = t.nn.functional.max_unpool2d(gt, it, 2, 2, output_size=_conv_size(x))
            return t.nn.grad.conv2d_input(x.shape, wt, d_conv)
        return run

    run_case(benchmark, impl, "conv2d+max_pool2d backward (input)", shape_id, expected=d_x,
             call=call, torch_call=torch_call, torch_result=lambda r: r.numpy(),
             bytes_read=d_out.nbytes + idx.nbytes + w.nbytes, bytes_written=d_x.nbytes)
