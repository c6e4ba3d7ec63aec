"""Pooling kernels: every backend, PyTorch's equivalents and the copy roofline.
2x2 windows with stride 2, float32."""
import numpy as np
import pytest

import fastconv.functional as F
from conftest import IMPLS, OUT_IMPLS, run_case

SHAPES = [(64, 32, 26, 26), (128, 64, 32, 32)]
IDS = ["x".join(map(str, s)) for s in SHAPES]
F32 = 4


def _data(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    out, idx = F.max_pool2d(x, 2, backend="numpy")
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    return x, out, idx, d_out


@pytest.mark.parametrize("impl", IMPLS + OUT_IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_max_pool_forward(benchmark, impl, shape):
    x, out, idx, _ = _data(shape)
    out_buf, idx_buf = np.empty_like(out), np.empty_like(idx)
    run_case(
        benchmark, impl, "max_pool2d+indices", "x".join(map(str, shape)),
        expected=(out, idx),
        call=lambda b: (lambda: F.max_pool2d(x, 2, backend=b)),
        out_call=lambda b: (lambda: F.max_pool2d(x, 2, out=out_buf, out_indices=idx_buf, backend=b)),
        torch_call=lambda t: (lambda xt=t.from_numpy(x): t.nn.functional.max_pool2d(xt, 2, 2, return_indices=True)),
        torch_result=lambda r: (r[0].numpy(), r[1].numpy()),
        bytes_read=x.nbytes, bytes_written=out.nbytes + idx.nbytes,
    )


@pytest.mark.parametrize("impl", IMPLS + OUT_IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_max_pool_backward(benchmark, impl, shape):
    x, out, idx, d_out = _data(shape)
    expected = F.max_pool2d_backward(d_out, idx, x.shape, backend="numpy")
    d_x = np.empty_like(x)

    def torch_call(t):
        g, xt, it = t.from_numpy(d_out), t.from_numpy(x), t.from_numpy(idx)
        return lambda: t.ops.aten.max_pool2d_with_indices_backward(g, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, it)

    run_case(
        benchmark, impl, "max_pool2d_backward", "x".join(map(str, shape)),
        expected=expected,
        call=lambda b: (lambda: F.max_pool2d_backward(d_out, idx, x.shape, backend=b)),
        out_call=lambda b: (lambda: F.max_pool2d_backward(d_out, idx, x.shape, out=d_x, backend=b)),
        torch_call=torch_call, torch_result=lambda r: r.numpy(),
        bytes_read=d_out.nbytes + idx.nbytes, bytes_written=x.nbytes,
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_max_unpool(benchmark, impl, shape):
    x, out, idx, _ = _data(shape)
    expected = F.max_unpool2d(out, idx, x.shape, backend="numpy")
    run_case(
        benchmark, impl, "max_unpool2d", "x".join(map(str, shape)),
        expected=expected,
        call=lambda b: (lambda: F.max_unpool2d(out, idx, x.shape, backend=b)),
        torch_call=lambda t: (lambda o=t.from_numpy(out), i=t.from_numpy(idx):
                              t.nn.functional.max_unpool2d(o, i, 2, 2, output_size=x.shape[2:])),
        torch_result=lambda r: r.numpy(),
        bytes_read=out.nbytes + idx.nbytes, bytes_written=x.nbytes,
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_avg_pool_forward(benchmark, impl, shape):
    x, out, _, _ = _data(shape)
    run_case(
        benchmark, impl, "avg_pool2d", "x".join(map(str, shape)),
        expected=F.avg_pool2d(x, 2, backend="numpy"),
        call=lambda b: (lambda: F.avg_pool2d(x, 2, backend=b)),
        torch_call=lambda t: (lambda xt=t.from_numpy(x): t.nn.functional.avg_pool2d(xt, 2, 2)),
        torch_result=lambda r: r.numpy(),
        bytes_read=x.nbytes, bytes_written=out.nbytes,
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_avg_pool_backward(benchmark, impl, shape):
    x, _, _, d_out = _data(shape)

    def torch_call(t):
        g, xt = t.from_numpy(d_out), t.from_numpy(x)
        return lambda: t.ops.aten.avg_pool2d_backward(g, xt, [2, 2], [2, 2], [0, 0], False, True, None)

    run_case(
        benchmark, impl, "avg_pool2d_backward", "x".join(map(str, shape)),
        expected=F.avg_pool2d_backward(d_out, x.shape, 2, backend="numpy"),
        call=lambda b: (lambda: F.avg_pool2d_backward(d_out, x.shape, 2, backend=b)),
        torch_call=torch_call, torch_result=lambda r: r.numpy(),
        bytes_read=d_out.nbytes, bytes_written=x.nbytes,
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_global_avg_pool(benchmark, impl, shape):
    x = _data(shape)[0]
    run_case(
        benchmark, impl, "global_avg_pool2d", "x".join(map(str, shape)),
        expected=F.global_avg_pool2d(x, backend="numpy"),
        call=lambda b: (lambda: F.global_avg_pool2d(x, backend=b)),
        torch_call=lambda t: (lambda xt=t.from_numpy(x): t.nn.functional.adaptive_avg_pool2d(xt, 1)),
        torch_result=lambda r: r.numpy().reshape(x.shape[:2]),
        bytes_read=x.nbytes, bytes_written=x.nbytes // (shape[2] * shape[3]),
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_adaptive_avg_pool_backward(benchmark, impl, shape):
    x = _data(shape)[0]
    rng = np.random.default_rng(1)
    d_out = rng.standard_normal((*shape[:2], 5, 5)).astype(np.float32)

    def torch_call(t):
        g, xt = t.from_numpy(d_out), t.from_numpy(x)
        return lambda: t.ops.aten._adaptive_avg_pool2d_backward(g, xt)

    run_case(
        benchmark, impl, "adaptive_avg_pool2d_backward(5x5)", "x".join(map(str, shape)),
        expected=F.adaptive_avg_pool2d_backward(d_out, x.shape, backend="numpy"),
        call=lambda b: (lambda: F.adaptive_avg_pool2d_backward(d_out, x.shape, backend=b)),
        torch_call=torch_call, torch_result=lambda r: r.numpy(),
        bytes_read=d_out.nbytes, bytes_written=x.nbytes,
    )
