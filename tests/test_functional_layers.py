"""The functional tier: conv2d / conv2d_backward, linear / linear_backward,
relu / relu_backward against loop oracles and central differences, on every
backend, hypothesis-drawn geometry included."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastconv import functional as F
from fastconv.backends import _gemm_conv
import naive
from conftest import TOL


def _data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 3), groups=st.sampled_from([1, 2]), cg=st.integers(1, 3), fg=st.integers(1, 3),
       h=st.integers(3, 9), w=st.integers(3, 9), k=st.integers(1, 3), s=st.integers(1, 2), p=st.integers(0, 2),
       d=st.integers(1, 2), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d_and_its_backward_match_the_loops(backend, dtype, n, groups, cg, fg, h, w, k, s, p, d, bias, seed):
    rng = np.random.default_rng(seed)
    if (k - 1) * d + 1 > min(h, w) + 2 * p:
        return  # a kernel larger than the padded input: refused, tested in test_errors
    x = _data(rng, (n, cg * groups, h, w), dtype)
    wts = _data(rng, (fg * groups, cg, k, k), dtype)
    b = _data(rng, (fg * groups,), dtype) if bias else None
    out, cache = F.conv2d(x, wts, b, s, p, d, groups, backend=backend)
    geo = ((s, s), (p, p), (d, d))
    want = naive.conv2d(x.astype(np.float64), wts.astype(np.float64), None if b is None else b.astype(np.float64),
                        *geo, groups)
    np.testing.assert_allclose(out, want, **TOL[dtype])
    g = _data(rng, out.shape, dtype)
    d_x, d_w, d_b = F.conv2d_backward(g, cache)
    assert d_x.dtype == d_w.dtype == dtype
    if groups == 1:
        want_dw, want_db = naive.conv2d_params_grad(x, g, wts.shape, *geo)
        np.testing.assert_allclose(d_w, want_dw, **TOL[dtype])
        np.testing.assert_allclose(d_x, naive.conv2d_input_grad(wts, g, x.shape, *geo), **TOL[dtype])
        if bias:
            np.testing.assert_allclose(d_b, want_db, **TOL[dtype])
    assert F.conv2d_backward(g, cache, input_grad=False)[0] is None


def test_conv2d_backward_against_central_differences(backend):
    rng = np.random.default_rng(0)
    x, wts, b = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    geo = dict(stride=(1, 2), padding=1, dilation=(2, 1), groups=2, backend=backend)
    out, cache = F.conv2d(x, wts, b, **geo)
    g = rng.standard_normal(out.shape)
    d_x, d_w, d_b = F.conv2d_backward(g, cache)
    assert naive.rel_error(d_x, naive.numerical_grad(lambda v: F.conv2d(v, wts, b, **geo)[0], x.copy(), g)) < 1e-8
    assert naive.rel_error(d_w, naive.numerical_grad(lambda v: F.conv2d(x, v, b, **geo)[0], wts.copy(), g)) < 1e-8
    assert naive.rel_error(d_b, naive.numerical_grad(lambda v: F.conv2d(x, wts, v, **geo)[0], b.copy(), g)) < 1e-8


def test_chunked_conv2d_equals_one_chunk(backend, monkeypatch):
    """The im2col + matmul driver (the NumPy and Numba backends' convolution)
    gives the same answer whatever its chunk of images."""
    rng = np.random.default_rng(1)
    x, wts = rng.standard_normal((5, 3, 7, 7)), rng.standard_normal((4, 3, 3, 3))
    whole, cw = F.conv2d(x, wts, None, padding=1, backend=backend)
    assert _gemm_conv.images_per_chunk(cw.geometry, 8) == 5
    monkeypatch.setattr(_gemm_conv, "MAX_COL_BYTES", 27 * 49 * 8)  # one image per chunk
    assert _gemm_conv.images_per_chunk(cw.geometry, 8) == 1
    chunked, cc = F.conv2d(x, wts, None, padding=1, backend=backend)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    g = rng.standard_normal(whole.shape)
    for a, b in zip(F.conv2d_backward(g, cc), F.conv2d_backward(g, cw)):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_linear_and_relu_with_their_backward(backend):
    rng = np.random.default_rng(2)
    x, wts, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    out, cache = F.linear(x, wts, b, backend=backend)
    np.testing.assert_allclose(out, x @ wts + b)
    g = rng.standard_normal(out.shape)
    d_x, d_w, d_b = F.linear_backward(g, cache)
    grad_of = lambda fn, v: naive.numerical_grad(fn, v.copy(), g)  # noqa: E731
    np.testing.assert_allclose(d_x, grad_of(lambda v: F.linear(v, wts, b, backend=backend)[0], x), rtol=1e-7)
    np.testing.assert_allclose(d_w, grad_of(lambda v: F.linear(x, v, b, backend=backend)[0], wts), rtol=1e-7)
    np.testing.assert_allclose(d_b, grad_of(lambda v: F.linear(x, wts, v, backend=backend)[0], b), rtol=1e-7)
    y, rcache = F.relu(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(F.relu_backward(g[:, :1].repeat(4, 1), rcache), g[:, :1].repeat(4, 1) * (x > 0))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 20), k=st.integers(1, 40), f=st.integers(1, 80), bias=st.booleans(),
       input_grad=st.booleans(), strided=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_and_its_backward_match_the_loops(backend, dtype, n, k, f, bias, input_grad, strided, seed):
    """Every backend's linear_fwd / linear_bwd (the C backend's register tiles
    with their partial rows and vectors) against float64 sums in order."""
    rng = np.random.default_rng(seed)
    x = _data(rng, (n, 2 * k), dtype)
    x = x[:, ::2] if strided else np.ascontiguousarray(x[:, :k])  # a view is copied, then computed the same
    wts, b, g = _data(rng, (k, f), dtype), _data(rng, (f,), dtype) if bias else None, _data(rng, (n, f), dtype)
    x64, w64, g64 = (v.astype(np.float64) for v in (x, wts, g))
    out, cache = F.linear(x, wts, b, backend=backend)
    assert out.dtype == dtype and out.shape == (n, f)
    np.testing.assert_allclose(out, x64 @ w64 + (0 if b is None else b), **TOL[dtype])
    d_x, d_w, d_b = F.linear_backward(g, cache, input_grad=input_grad)
    np.testing.assert_allclose(d_w, x64.T @ g64, **TOL[dtype])
    assert (d_b is None) == (b is None) and (d_x is None) == (not input_grad)
    if b is not None:
        np.testing.assert_allclose(d_b, g64.sum(axis=0), **TOL[dtype])
    if input_grad:
        np.testing.assert_allclose(d_x, g64 @ w64.T, **TOL[dtype])


def test_the_c_linear_gives_the_same_bits_at_any_thread_count(dtype):
    """Each output is one sum in a fixed order on one thread (csrc/linear_tmpl.h);
    the NumPy and Numba backends run NumPy's matmul, whose BLAS makes no such promise."""
    import fastconv

    fast_backend = "c"
    if fast_backend not in fastconv.available_backends():
        pytest.skip("the C backend is not built")
    rng = np.random.default_rng(9)
    x, wts, b, g = (_data(rng, shape, dtype) for shape in ((70, 300), (300, 130), (130,), (70, 130)))
    results = []
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        out, cache = F.linear(x, wts, b, backend=fast_backend)
        results.append((out, *F.linear_backward(g, cache)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


_LINEAR_DIGEST = """
import hashlib, numpy as np
from fastconv import functional as F
rng = np.random.default_rng(1)
x, w, b, g = (rng.standard_normal(s).astype(np.float32) for s in ((70, 300), (300, 130), (130,), (70, 130)))
out, cache = F.linear(x, w, b, backend="c")
print(hashlib.sha1(b"".join(a.tobytes() for a in (out, *F.linear_backward(g, cache)))).hexdigest())
"""


def test_the_c_linear_gives_the_same_bits_on_the_avx2_and_avx512_builds():
    """One chain of fused multiply-adds per output, whatever the vector width:
    a model trains to the same weights on an AVX2 and an AVX-512 machine."""
    import os
    import subprocess
    import sys

    from fastconv.backends import BackendUnavailableError, load

    try:
        c = load("c")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    if not {"v3", "v4"} <= set(c.built_levels()) or c.lib.fc_cpu_level() < 4:
        pytest.skip("needs the v3 and v4 extensions and a CPU that runs both")
    digests = {subprocess.run([sys.executable, "-c", _LINEAR_DIGEST], env={**os.environ, c.ENV_ISA: level},
                              capture_output=True, text=True, check=True).stdout for level in ("v3", "v4")}
    assert len(digests) == 1


@pytest.mark.parametrize("layout", ["contiguous", "strided view", "int64"])
def test_relu_its_gradient_and_add_equal_numpy_in_every_backend(backend, dtype, layout):
    """The kernels (contiguous float arrays, above and below the one-thread
    size) and the NumPy fallback (views, other dtypes) give NumPy's results."""
    rng = np.random.default_rng(5)
    for shape in [(3, 4, 5, 5), (64, 8, 16, 16)]:
        x, g, b = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
        x.flat[:3] = [np.nan, -0.0, 0.0]
        if layout == "strided view":
            x, g, b = x[:, ::2], g[:, ::2], b[:, ::2]
        elif layout == "int64":
            x, g, b = (np.round(np.nan_to_num(v) * 10).astype(np.int64) for v in (x, g, b))
        y, cache = F.relu(x, backend=backend)
        np.testing.assert_array_equal(y, np.maximum(x, x.dtype.type(0)))
        assert y.dtype == x.dtype and np.array_equal(np.signbit(y), np.signbit(np.maximum(x, x.dtype.type(0))))
        np.testing.assert_array_equal(F.relu_backward(g, cache, backend=backend), g * (cache > 0))
        g_inf = g.copy()
        g_inf.flat[0] = np.inf if g.dtype.kind == "f" else 0  # at x's NaN (output not > 0): inf * 0 is NaN
        with np.errstate(invalid="ignore"):
            summed = F.relu_backward(g_inf, cache, add=b, backend=backend)
            np.testing.assert_array_equal(summed, b + g_inf * (cache > 0))  # the same bits as the two passes
        assert summed.dtype == g.dtype and summed is not b
        np.testing.assert_array_equal(F.add(x, b, backend=backend), x + b)
        into = x.copy()
        assert F.add(into, b, out=into, backend=backend) is into  # in place
        np.testing.assert_array_equal(into, x + b)
    with pytest.raises(ValueError, match="shape"):
        F.add(np.ones(3), np.ones(4), backend=backend)
    with pytest.raises(ValueError, match=r"add has shape \(4,\); d_out has \(3,\)"):
        F.relu_backward(np.ones(3), np.ones(3), add=np.ones(4), backend=backend)


def test_functional_errors_name_what_is_wrong():
    x = np.ones((2, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="groups=2 expect 6 input channels"):
        F.conv2d(x, np.ones((4, 3, 3, 3), np.float32), groups=2)
    with pytest.raises(ValueError, match="bias has shape \\(3,\\); the weights have 4 filters"):
        F.conv2d(x, np.ones((4, 4, 3, 3), np.float32), np.ones(3, np.float32))
    out, cache = F.conv2d(x, np.ones((4, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="d_out has shape \\(2, 4, 2, 2\\), but the forward output was \\(2, 4, 3, 3\\)"):
        F.conv2d_backward(np.ones((2, 4, 2, 2), np.float32), cache)
    with pytest.raises(TypeError, match="Conv2dCache returned by conv2d"):
        F.conv2d_backward(out, (x,))
    with pytest.raises(ValueError, match="x has 3 features but weights of shape \\(4, 2\\) take 4"):
        F.linear(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="bias has shape \\(3,\\); the weights have 2 output features"):
        F.linear(np.ones((2, 4)), np.ones((4, 2)), np.ones(3))
    with pytest.raises(ValueError, match="d_out has shape \\(2, 3\\); the forward output was \\(2, 2\\)"):
        F.linear_backward(np.ones((2, 3)), F.linear(np.ones((2, 4)), np.ones((4, 2)))[1])
    with pytest.raises(ValueError, match="d_out has shape \\(2, 3\\); the forward output was \\(2, 2\\)"):
        F.relu_backward(np.ones((2, 3)), F.relu(np.ones((2, 2)))[1])


@pytest.mark.parametrize("shape,rows,cols", [((2, 3, 13, 13), 12, 12), ((1, 70, 9, 40), 9, 33),
                                             ((3, 2, 5, 6), 1, 1), ((2, 2, 4, 4), 4, 4)])
def test_crop_and_pad_planes_in_every_backend(backend, dtype, shape, rows, cols):
    """crop_hw is the top-left rows x cols of every plane, contiguous; pad_hw
    puts them back with zeros around (CroppedConv's forward and gradient)."""
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    cropped = F.crop_hw(x, rows, cols, backend=backend)
    assert cropped.flags.c_contiguous and cropped.dtype == dtype
    np.testing.assert_array_equal(cropped, x[:, :, :rows, :cols])
    padded = F.pad_hw(cropped, shape[2], shape[3], backend=backend)
    want = np.zeros_like(x)
    want[:, :, :rows, :cols] = x[:, :, :rows, :cols]
    np.testing.assert_array_equal(padded, want)
    # a strided input (NumPy does it) gives the same
    np.testing.assert_array_equal(F.crop_hw(x[:, :, ::1, ::-1], rows, cols, backend=backend),
                                  x[:, :, :rows, ::-1][:, :, :, :cols])


def test_crop_and_pad_planes_refuse_what_does_not_fit(backend):
    x = np.zeros((1, 1, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"the crop \(5, 5\) must lie within the planes \(4, 5\)"):
        F.crop_hw(x, 5, 5, backend=backend)
    with pytest.raises(ValueError, match=r"the crop \(0, 2\)"):
        F.crop_hw(x, 0, 2, backend=backend)
    with pytest.raises(ValueError, match=r"do not fit in \(3, 5\)"):
        F.pad_hw(x, 3, 5, backend=backend)
    with pytest.raises(ValueError, match=r"must be \(N, C, H, W\)"):
        F.pad_hw(x[0], 4, 5, backend=backend)
