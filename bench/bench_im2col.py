"""im2col / col2im: every backend, PyTorch unfold/fold and the copy roofline."""
import numpy as np
import pytest

import fastconv
from conftest import IMPLS, OUT_IMPLS, check, copy_roofline, need, set_group

# (N, C, H, W, k, pad), stride 1
SHAPES = [(64, 1, 28, 28, 3, 0), (64, 32, 13, 13, 3, 0), (128, 64, 32, 32, 3, 1)]
IDS = ["x".join(map(str, s)) for s in SHAPES]


def _setup(shape):
    n, c, h, w, k, p = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
    col = rng.standard_normal((c * k * k, n * oh * ow)).astype(np.float32)
    return x, col, k, p


@pytest.mark.parametrize("impl", IMPLS + OUT_IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_im2col(benchmark, impl, shape):
    torch = need(impl)
    set_group(benchmark, "im2col", "x".join(map(str, shape)), impl)
    x, col, k, p = _setup(shape)
    if impl == "copy":
        return copy_roofline(benchmark, x.nbytes, col.nbytes)
    expected = fastconv.im2col(x, k, k, padding=p, backend="numpy")
    if impl == "torch":
        xt = torch.from_numpy(x)
        run = lambda: torch.nn.functional.unfold(xt, k, padding=p)
        # unfold's layout is (N, C*k*k, L); ours is (C*k*k, N*L)
        check(run().numpy().transpose(1, 0, 2).reshape(expected.shape), expected)
    else:
        name, _, out = impl.partition("+")
        buf = np.empty_like(expected) if out else None
        run = lambda: fastconv.im2col(x, k, k, padding=p, out=buf, backend=name)
        check(run(), expected)  # also the warm-up (JIT compile)
    benchmark(run)


@pytest.mark.parametrize("impl", IMPLS + OUT_IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_col2im(benchmark, impl, shape):
    torch = need(impl)
    set_group(benchmark, "col2im", "x".join(map(str, shape)), impl)
    x, col, k, p = _setup(shape)
    if impl == "copy":
        return copy_roofline(benchmark, col.nbytes, x.nbytes)
    expected = fastconv.col2im(col, x.shape, k, k, padding=p, backend="numpy")
    if impl == "torch":
        n, c, h, w = x.shape
        ct = torch.from_numpy(np.ascontiguousarray(
            col.reshape(c * k * k, n, -1).transpose(1, 0, 2)))
        run = lambda: torch.nn.functional.fold(ct, (h, w), k, padding=p)
        check(run().numpy(), expected)
    else:
        name, _, out = impl.partition("+")
        buf = np.empty_like(expected) if out else None
        run = lambda: fastconv.col2im(col, x.shape, k, k, padding=p, out=buf, backend=name)
        check(run(), expected)
    benchmark(run)
