"""Differential fuzz: every kernel family of a fast backend against the NumPy
reference on random configurations (shapes, strides, paddings, dilations,
dtypes, memory layouts), valid and invalid ones alike.

On a valid configuration both must agree (float64 to ~1e-10, float32 to
~1e-5, max-pool indices exactly); on an invalid one both must raise the same
exception type.  Used three ways:

* ``tests/test_fuzz.py`` runs a few hundred configurations per backend and
  per built instruction-set level in the default suite, and 10 000 with
  ``pytest -m slow``;
* ``python tests/fuzz_kernels.py --backend c --count 10000`` from the shell;
* under AddressSanitizer + UndefinedBehaviorSanitizer (docs/testing.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout without install

from fastconv import functional as F  # noqa: E402
from fastconv.optim import SGD  # noqa: E402

TOL = {np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5), np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11)}


def _layout(a: np.ndarray, rng) -> np.ndarray:
    """The same values in one of five memory layouts the wrappers must accept."""
    kind = rng.integers(5)
    if kind == 0:
        return np.ascontiguousarray(a)
    if kind == 1:
        return np.asfortranarray(a)
    if kind == 2:  # a strided view into a larger array
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == 3 and a.ndim == 4:  # an NCHW view of a CNHW array (what Conv2D returns)
        t = np.ascontiguousarray(a.transpose(1, 0, 2, 3))
        return t.transpose(1, 0, 2, 3)
    return a.copy()


def _config(rng):
    dtype = np.dtype(rng.choice([np.float32, np.float64]))
    n, c = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    return dtype, n, c, h, w, k, stride, padding, dilation


def _data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# Each case runs one kernel family with ``backend`` and returns its arrays.
def case_im2col(rng, backend):
    dtype, n, c, h, w, k, s, p, d = _config(rng)
    x = _data(rng, (n, c, h, w), dtype)
    col = F.im2col(_layout(x, rng), *k, s, p, d, backend=backend)
    return col, F.col2im(_layout(col, rng), x.shape, *k, s, p, d, backend=backend)


def case_max_pool(rng, backend):
    dtype, n, c, h, w, k, s, _, _ = _config(rng)
    p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
    x = _data(rng, (n, c, h, w), dtype)
    if rng.random() < 0.2:
        x[rng.random(x.shape) < 0.1] = np.nan
    if rng.random() < 0.2:
        x = np.round(x)  # ties
    ceil_mode = bool(rng.random() < 0.5)
    out, idx = F.max_pool2d(_layout(x, rng), k, s, p, ceil_mode=ceil_mode, backend=backend)
    d_x = F.max_pool2d_backward(_layout(_data(rng, out.shape, dtype), rng), idx, x.shape, backend=backend)
    return out, idx, d_x, F.max_unpool2d(out, idx, x.shape, backend=backend)


def case_avg_pool(rng, backend):
    dtype, n, c, h, w, k, s, _, _ = _config(rng)
    p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
    x = _data(rng, (n, c, h, w), dtype)
    out = F.avg_pool2d(_layout(x, rng), k, s, p, backend=backend)
    return out, F.avg_pool2d_backward(_layout(_data(rng, out.shape, dtype), rng), x.shape, k, s, p, backend=backend)


def case_adaptive_pool(rng, backend):
    dtype, n, c, h, w, *_ = _config(rng)
    size = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    x = _data(rng, (n, c, h, w), dtype)
    out = F.adaptive_avg_pool2d(_layout(x, rng), size, backend=backend)
    return out, F.adaptive_avg_pool2d_backward(_layout(_data(rng, out.shape, dtype), rng), x.shape, backend=backend)


def case_batchnorm(rng, backend):
    dtype, n, c, h, w, *_ = _config(rng)
    shape = (n + 1, c, h, w) if rng.random() < 0.7 else (n + 1, c)
    x = _data(rng, shape, dtype) * 3 + 1
    gamma, beta = _data(rng, (c,), dtype), _data(rng, (c,), dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    training = bool(rng.random() < 0.8)
    out, cache = F.batch_norm_forward(_layout(x, rng), gamma, beta, rm, rv, training=training, backend=backend)
    return (out, rm, rv, *F.batch_norm_backward(_layout(_data(rng, shape, dtype), rng), cache, backend=backend))


def case_bn_relu_pool(rng, backend):
    """BatchNorm + ReLU + max pool as one stage: maps up to 40 wide reach the
    C kernels' vector chunks, their overlapping tails and short rows."""
    dtype, n, c, *_ = _config(rng)
    h, w = int(rng.integers(1, 20)), int(rng.integers(1, 41))
    k = [(2, 2), (3, 3), (2, 3), (1, 1), (3, 2)][int(rng.integers(5))]
    stride = k if rng.random() < 0.8 else (int(rng.integers(1, 5)), int(rng.integers(1, 5)))  # some overlap
    x = _data(rng, (n + 1, c, h, w), dtype) * 2 + 0.5
    if rng.random() < 0.2:
        x = np.round(x)  # ties
    if rng.random() < 0.1:
        x[rng.random(x.shape) < 0.05] = np.nan
    gamma, beta = _data(rng, (c,), dtype), _data(rng, (c,), dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    training = bool(rng.random() < 0.8)
    out, cache = F.batch_norm_relu_max_pool(_layout(x, rng), gamma, beta, rm, rv, k, stride, training=training,
                                            backend=backend)
    grads = F.batch_norm_relu_max_pool_backward(_layout(_data(rng, out.shape, dtype), rng), cache)
    return (out, cache.code, rm, rv, *grads)


def case_conv_maxpool(rng, backend):
    dtype, n, c, h, w, k, s, p, d = _config(rng)
    f = int(rng.integers(1, 6))
    pool = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    pool_stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    x = _data(rng, (n, c, h + 4, w + 4), dtype)
    wts, b = _data(rng, (f, c, *k), dtype), _data(rng, (f,), dtype)
    relu = bool(rng.random() < 0.5)
    geo = dict(stride=s, padding=p, dilation=d, pool_size=pool, pool_stride=pool_stride)
    out, idx = F.conv2d_maxpool(_layout(x, rng), wts, b, relu=relu, **geo, backend=backend)
    relu_out = out if relu else None
    g = _data(rng, out.shape, dtype)
    d_w, d_b = F.conv2d_maxpool_backward_params(x, g, idx, wts.shape, relu_out=relu_out, **geo, backend=backend)
    d_x = F.conv2d_maxpool_backward_input(g, idx, wts, x.shape, relu_out=relu_out, **geo, backend=backend)
    return out, idx, d_w, d_b, d_x


def case_sgd(rng, backend):
    import fastconv

    dtype = np.dtype(rng.choice([np.float32, np.float64]))
    shape = tuple(int(v) for v in rng.integers(1, 9, size=int(rng.integers(1, 4))))
    value, grad = _data(rng, shape, dtype), _data(rng, shape, dtype)
    momentum = 0.9 if rng.random() < 0.6 else 0.0
    opt = SGD([("p", value, grad)], lr=float(rng.random()), momentum=momentum,
              nesterov=momentum > 0 and bool(rng.random() < 0.5), weight_decay=float(rng.choice([0, 1e-3])))
    with fastconv.use_backend(backend):
        opt.step()
        opt.step()
    return (value,)


CASES = (case_im2col, case_max_pool, case_avg_pool, case_adaptive_pool, case_batchnorm, case_conv_maxpool,
         case_sgd, case_bn_relu_pool)


def _outcome(case, seed, backend):
    try:
        return case(np.random.default_rng(seed), backend), None
    except (ValueError, TypeError, IndexError) as exc:
        return None, exc


def run(backend: str, count: int, start: int = 0) -> dict:
    """Run ``count`` configurations (seeds start..start+count, spread over the
    cases); AssertionError describing the first mismatch."""
    checked = refused = 0
    for seed in range(start, start + count):
        case = CASES[seed % len(CASES)]
        got, got_err = _outcome(case, seed, backend)
        want, want_err = _outcome(case, seed, "numpy")
        where = f"{case.__name__} seed={seed} backend={backend}"
        if want_err is not None or got_err is not None:
            assert type(got_err) is type(want_err), (
                f"{where}: the reference gave {want_err!r}, the backend {got_err!r}")
            refused += 1
            continue
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
            if a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, **TOL[a.dtype], err_msg=where)
            else:
                np.testing.assert_array_equal(a, b, err_msg=where)
        checked += 1
    return dict(checked=checked, refused=refused)


def main(argv=None):
    p = argparse.ArgumentParser(description="Differential fuzz of a fastconv backend against the NumPy reference.")
    p.add_argument("--backend", default="c", help="backend to check (default: c)")
    p.add_argument("--count", type=int, default=10_000, help="random configurations (default: 10000)")
    p.add_argument("--start", type=int, default=0, help="first seed (default: 0)")
    args = p.parse_args(argv)
    result = run(args.backend, args.count, args.start)
    print(f"{args.backend}: {result['checked']} configurations agreed with the reference, "
          f"{result['refused']} invalid ones refused alike")


if __name__ == "__main__":
    main()
