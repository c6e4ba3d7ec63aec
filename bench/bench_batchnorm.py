"""BatchNorm forward (training) and backward: every backend, PyTorch and the
copy roofline.  Bytes counted for the roofline are those of a two-pass
algorithm, the least a training BatchNorm can move when x does not fit in
cache: forward reads x twice (statistics, then normalise) and writes out;
backward reads dy and x twice (reduce, then apply) and writes dx."""
import numpy as np
import pytest

import fastconv.functional as F
from conftest import IMPLS, OUT_IMPLS, run_case

SHAPES = [(64, 32, 26, 26), (128, 64, 32, 32)]
IDS = ["x".join(map(str, s)) for s in SHAPES]


def _data(shape):
    rng = np.random.default_rng(0)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    d_out = rng.standard_normal(shape).astype(np.float32)
    return x, gamma, beta, d_out


@pytest.mark.parametrize("impl", IMPLS + OUT_IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_batch_norm_forward(benchmark, impl, shape):
    x, gamma, beta, _ = _data(shape)
    c = shape[1]
    expected, _ = F.batch_norm_forward(x, gamma, beta, np.zeros(c, np.float32), np.ones(c, np.float32), backend="numpy")

    def call(b, out=None):
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        return lambda: F.batch_norm_forward(x, gamma, beta, rm, rv, out=out, backend=b)[0]

    def torch_call(t):
        xt, g, bt = t.from_numpy(x), t.from_numpy(gamma), t.from_numpy(beta)
        rm, rv = t.zeros(c), t.ones(c)
        return lambda: t.nn.functional.batch_norm(xt, rm, rv, g, bt, training=True, momentum=0.1, eps=1e-5)

    run_case(benchmark, impl, "batch_norm_forward", "x".join(map(str, shape)), expected=expected,
             call=call, out_call=lambda b: call(b, np.empty_like(x)), torch_call=torch_call,
             torch_result=lambda r: r.numpy(), bytes_read=2 * x.nbytes, bytes_written=x.nbytes)


@pytest.mark.parametrize("impl", IMPLS + OUT_IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_batch_norm_backward(benchmark, impl, shape):
    x, gamma, beta, d_out = _data(shape)
    c = shape[1]
    _, cache = F.batch_norm_forward(x, gamma, beta, np.zeros(c, np.float32), np.ones(c, np.float32), backend="numpy")
    expected = F.batch_norm_backward(d_out, cache)

    def call(b, out=None):
        _, cache_b = F.batch_norm_forward(x, gamma, beta, np.zeros(c, np.float32), np.ones(c, np.float32), backend=b)
        return lambda: F.batch_norm_backward(d_out, cache_b, out=out)

    def torch_call(t):
        xt, g, bt, gt = t.from_numpy(x), t.from_numpy(gamma), t.from_numpy(beta), t.from_numpy(d_out)
        rm, rv = t.zeros(c), t.ones(c)
        _, save_mean, save_invstd = t.ops.aten.native_batch_norm(xt, g, bt, rm, rv, True, 0.1, 1e-5)
        return lambda: t.ops.aten.native_batch_norm_backward(
            gt, xt, g, rm, rv, save_mean, save_invstd, True, 1e-5, [True, True, True])

    run_case(benchmark, impl, "batch_norm_backward", "x".join(map(str, shape)), expected=expected,
             call=call, out_call=lambda b: call(b, np.empty_like(x)), torch_call=torch_call,
             torch_result=lambda r: tuple(v.numpy() for v in r), bytes_read=4 * x.nbytes, bytes_written=x.nbytes)
