"""The fused convolution + max pool (conv2d_maxpool and its winner-sparse
gradients), and the CNN stages that use it (ConvPoolReLU, CroppedConv): every
backend against loop oracles, gradient checks, error messages, and
whole-model equality with layer-by-layer runs."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.functional as F
from fastconv import (CNN, BatchNorm1D, BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, Normalize, ReLU,
                      SoftmaxCrossEntropy)
from fastconv.architectures import seed_cnn
from fastconv.layers.fused import BatchNormReLU, BatchNormReLUPool, ConvPoolReLU, CroppedConv
from conftest import PARALLEL_MIN_WORK, TOL, assert_close
import naive

P = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731

# (N, C, H, W), F, kernel, stride, padding, dilation, pool, pool stride
CASES = [
    ((3, 1, 12, 12), 4, 3, 1, 0, 1, 2, None),        # the seed network's first layer, small
    ((2, 1, 11, 9), 3, 3, 1, 0, 1, 2, None),         # odd sizes: the pool drops a row/column
    ((2, 2, 10, 7), 3, (3, 2), (2, 1), (1, 2), (1, 2), (2, 3), (1, 2)),  # everything non-square
    ((2, 3, 12, 12), 5, 3, 1, 1, 1, 3, 2),           # RGB, padding, overlapping pool windows
    ((2, 1, 9, 9), 2, 5, 1, 2, 1, 2, 2),             # 5x5 kernel
    ((1, 1, 5, 5), 2, 3, 2, 0, 1, 1, 1),             # stride 2, 1x1 pool
    # many taps (the wide gradient kernels): 72, 180 (several register passes), odd F
    ((2, 8, 9, 9), 5, 3, 1, 0, 1, 2, None),
    ((2, 20, 7, 8), 3, 3, 1, 1, 1, 2, None),
    ((2, 6, 10, 9), 4, (3, 2), (2, 1), (1, 0), (1, 2), (2, 2), (1, 2)),  # overlapping windows share winners
]


def _data(shape, f, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((f, shape[1], *P(k))).astype(dtype)
    return x, w, rng.standard_normal(f).astype(dtype)


def _oracle(x, w, b, s, p, d, pk, ps):
    conv = naive.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), P(s), P(p), P(d), 1)
    out, idx = naive.max_pool2d(conv, P(pk), P(pk if ps is None else ps), (0, 0))
    return conv, out, idx


@pytest.mark.parametrize("shape,f,k,s,p,d,pk,ps", CASES)
def test_conv2d_maxpool_matches_loops(backend, dtype, shape, f, k, s, p, d, pk, ps):
    x, w, b = _data(shape, f, k, dtype)
    conv, ref_out, ref_idx = _oracle(x, w, b, s, p, d, pk, ps)
    out, idx = F.conv2d_maxpool(x, w, b, s, p, d, pk, ps, backend=backend)
    assert_close(out, ref_out.astype(dtype))
    np.testing.assert_array_equal(idx, ref_idx)
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    d_conv = naive.max_pool2d_backward(g.astype(np.float64), ref_idx, conv.shape)
    ref_dw, ref_db = naive.conv2d_params_grad(x.astype(np.float64), d_conv, w.shape, P(s), P(p), P(d))
    d_w, d_b = F.conv2d_maxpool_backward_params(x, g, idx, w.shape, s, p, d, pk, ps, backend=backend)
    assert d_w.dtype == d_b.dtype == dtype
    np.testing.assert_allclose(d_w, ref_dw, **TOL[dtype])
    np.testing.assert_allclose(d_b, ref_db, **TOL[dtype])
    ref_dx = naive.conv2d_input_grad(w.astype(np.float64), d_conv, x.shape, P(s), P(p), P(d))
    d_x = F.conv2d_maxpool_backward_input(g, idx, w, x.shape, s, p, d, pk, ps, backend=backend)
    assert d_x.dtype == dtype and d_x.shape == x.shape
    np.testing.assert_allclose(d_x, ref_dx, **TOL[dtype])


@pytest.mark.parametrize("channels", [1, 7])  # few taps; many (the wide kernels)
def test_conv2d_maxpool_gradcheck(backend, channels):
    """Numerical gradient of sum(g * out) w.r.t. weights, bias and x (float64)."""
    x, w, b = _data((2, channels, 9, 8), 3, 3, np.float64)
    g = np.random.default_rng(2).standard_normal((2, 3, 4, 3))
    out, idx = F.conv2d_maxpool(x, w, b, padding=(1, 0), backend=backend)
    d_w, d_b = F.conv2d_maxpool_backward_params(x, g, idx, w.shape, padding=(1, 0), backend=backend)
    d_x = F.conv2d_maxpool_backward_input(g, idx, w, x.shape, padding=(1, 0), backend=backend)

    def loss(xv, wv, bv):
        return np.sum(g * F.conv2d_maxpool(xv, wv, bv, padding=(1, 0), backend=backend)[0])

    assert naive.rel_error(d_w, naive.numerical_grad(lambda wv: loss(x, wv, b), w, 1.0)) < 1e-7
    assert naive.rel_error(d_b, naive.numerical_grad(lambda bv: loss(x, w, bv), b, 1.0)) < 1e-7
    assert naive.rel_error(d_x, naive.numerical_grad(lambda xv: loss(xv, w, b), x, 1.0)) < 1e-7


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.sampled_from([1, 2, 3, 5, 12]), h=st.integers(3, 14), w=st.integers(3, 14),
       f=st.integers(1, 4), k=st.integers(1, 3), s=st.integers(1, 2), p=st.integers(0, 1),
       pk=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_conv2d_maxpool_random_shapes(n, c, h, w, f, k, s, p, pk, seed):
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    if min(oh, ow) < pk:
        return
    x, wt, b = _data((n, c, h, w), f, k, np.float64, seed)
    ref = [F.conv2d_maxpool(x, wt, b, s, p, 1, pk, backend="numpy")]
    g = np.random.default_rng(seed + 1).standard_normal(ref[0][0].shape)
    ref_grads = F.conv2d_maxpool_backward_params(x, g, ref[0][1], wt.shape, s, p, 1, pk, backend="numpy")
    ref_grads += (F.conv2d_maxpool_backward_input(g, ref[0][1], wt, x.shape, s, p, 1, pk, backend="numpy"),)
    for name in fastconv.available_backends():
        out, idx = F.conv2d_maxpool(x, wt, b, s, p, 1, pk, backend=name)
        np.testing.assert_allclose(out, ref[0][0], **TOL[np.float64])
        np.testing.assert_array_equal(idx, ref[0][1])
        grads = F.conv2d_maxpool_backward_params(x, g, idx, wt.shape, s, p, 1, pk, backend=name)
        grads += (F.conv2d_maxpool_backward_input(g, idx, wt, x.shape, s, p, 1, pk, backend=name),)
        for mine, theirs in zip(grads, ref_grads):
            np.testing.assert_allclose(mine, theirs, **TOL[np.float64])


@pytest.mark.parametrize("channels", [1, 6])  # the direct kernel; im2row + GEMM + row pool (C)
def test_conv2d_maxpool_ties_and_nan(backend, channels):
    """Blank regions give equal outputs (the first in the window wins) and a
    NaN input wins every window that reads it, as max_pool2d of the conv."""
    x, w, b = _data((2, channels, 10, 9), 3, 3, np.float64)
    x[:, :, :6] = 0  # every window here sees bias + 0: ties
    x[1, 0, 8, 4] = np.nan
    conv, ref_out, ref_idx = _oracle(x, w, b, 1, 0, 1, 2, None)
    out, idx = F.conv2d_maxpool(x, w, b, backend=backend)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(out, ref_out, **TOL[np.float64])  # NaN == NaN here
    assert np.isnan(out[1]).any()


def test_conv2d_maxpool_in_chunks_of_images(backend, monkeypatch):
    """A small im2row budget runs the GEMM path image by image: the same
    winners, and outputs equal up to the GEMM's rounding (BLAS blocks by size)."""
    from fastconv.functional import conv as conv_module
    x, w, b = _data((5, 7, 9, 8), 4, 3, np.float32)
    whole = F.conv2d_maxpool(x, w, b, padding=1, backend=backend)
    monkeypatch.setattr(conv_module, "MAX_ROW_BYTES", 1)
    chunked = F.conv2d_maxpool(x, w, b, padding=1, backend=backend)
    np.testing.assert_array_equal(whole[1], chunked[1])
    np.testing.assert_allclose(whole[0], chunked[0], **TOL[np.float32])


@pytest.mark.parametrize("channels", [1, 6])
def test_conv2d_maxpool_weight_gradient_of_a_large_batch(backend, channels):
    """More images than one wave of partial sums (64 blocks of 4): the waves
    add up to the reference's sum."""
    x, w, b = _data((301, channels, 6, 7), 3, 3, np.float64)
    out, idx = F.conv2d_maxpool(x, w, b, backend=backend)
    g = np.random.default_rng(3).standard_normal(out.shape)
    ref = F.conv2d_maxpool_backward_params(x, g, idx, w.shape, backend="numpy")
    for mine, theirs in zip(F.conv2d_maxpool_backward_params(x, g, idx, w.shape, backend=backend), ref):
        np.testing.assert_allclose(mine, theirs, **TOL[np.float64])


# The geometries C's phase kernels take (stride 1, no dilation, a 2x2/2 pool,
# at most 75 taps, kernel sides <= 5): rows of pooled outputs longer than one
# vector (float32 16 / float64 8 lanes with AVX-512), odd sizes whose last
# row or column the pool drops, padding, 3x3 / 5x5 and non-square kernels.
PHASE_CASES = [
    ((3, 1, 28, 28), 5, 3, 0),    # the seed network's first layer
    ((2, 1, 41, 37), 3, 3, 0),    # pooled rows of 19 / 17: two vectors, the last partial
    ((2, 3, 32, 32), 4, 3, 1),    # a CIFAR first layer: 27 taps, pooled 16 = one whole vector
    ((2, 3, 32, 32), 6, 5, 0),    # LeNet-5's first layer: 75 taps, the most the phase kernels take
    ((2, 2, 19, 35), 3, 5, 2),    # 5x5, padding 2
    ((2, 1, 9, 14), 2, (2, 3), (1, 0)),  # the generic (non-3x3/5x5) body
    ((1, 1, 3, 3), 1, 1, 0),      # a 1x1 kernel, one pooled output
    # pooled rows of whole vectors (8 / 16) under an odd width: the last input
    # column, read only by a dropped output, still gets its (zero) gradient
    ((2, 1, 19, 19), 2, 3, 0),
    ((2, 1, 35, 35), 2, 3, 0),
]


@pytest.mark.parametrize("shape,f,k,p", PHASE_CASES)
def test_conv2d_maxpool_phase_geometries(backend, dtype, shape, f, k, p):
    """Every pooled column of every row, with and without the ReLU mask, as
    the reference gives it (the C backend runs its phase kernels here)."""
    x, w, b = _data(shape, f, k, dtype, seed=sum(shape))
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))  # the reference in double
    ref_out, ref_idx = F.conv2d_maxpool(x64, w64, b64, padding=p, backend="numpy")
    out, idx = F.conv2d_maxpool(x, w, b, padding=p, backend=backend)
    np.testing.assert_allclose(out, ref_out, **TOL[dtype])
    np.testing.assert_array_equal(idx, ref_idx)
    g = np.random.default_rng(7).standard_normal(out.shape).astype(dtype)
    relu_out = np.maximum(out, 0)
    for mask in (None, relu_out):
        m64 = None if mask is None else mask.astype(np.float64)
        ref = F.conv2d_maxpool_backward_params(x64, g.astype(np.float64), idx, w.shape, padding=p, relu_out=m64,
                                               backend="numpy")
        ref += (F.conv2d_maxpool_backward_input(g.astype(np.float64), idx, w64, x.shape, padding=p, relu_out=m64,
                                                backend="numpy"),)
        got = F.conv2d_maxpool_backward_params(x, g, idx, w.shape, padding=p, relu_out=mask, backend=backend)
        got += (F.conv2d_maxpool_backward_input(g, idx, w, x.shape, padding=p, relu_out=mask, backend=backend),)
        for a, r in zip(got, ref):
            np.testing.assert_allclose(a, r, **TOL[dtype])


@pytest.mark.parametrize("channels", [1, 6])
def test_conv2d_maxpool_with_relu(backend, dtype, channels):
    """relu=True is the ReLU of the pooled output; relu_out makes the
    gradients those of d_out * (out > 0), the ReLU's backward."""
    x, w, b = _data((3, channels, 9, 10), 4, 3, dtype)
    plain, idx = F.conv2d_maxpool(x, w, b, padding=1, backend=backend)
    out, idx_relu = F.conv2d_maxpool(x, w, b, padding=1, relu=True, backend=backend)
    np.testing.assert_array_equal(out, np.maximum(plain, 0))
    np.testing.assert_array_equal(idx_relu, idx)
    assert (out == 0).any() and (out > 0).any()
    g = np.random.default_rng(5).standard_normal(out.shape).astype(dtype)
    g_relu = g * (out > 0)
    ref = F.conv2d_maxpool_backward_params(x, g_relu, idx, w.shape, padding=1, backend="numpy")
    ref += (F.conv2d_maxpool_backward_input(g_relu, idx, w, x.shape, padding=1, backend="numpy"),)
    got = F.conv2d_maxpool_backward_params(x, g, idx, w.shape, padding=1, relu_out=out, backend=backend)
    got += (F.conv2d_maxpool_backward_input(g, idx, w, x.shape, padding=1, relu_out=out, backend=backend),)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, **TOL[dtype])
    with pytest.raises(ValueError, match="relu_out has shape"):
        F.conv2d_maxpool_backward_params(x, g, idx, w.shape, padding=1, relu_out=out[:1], backend=backend)
    with pytest.raises(TypeError, match="relu_out"):
        F.conv2d_maxpool_backward_input(g, idx, w, x.shape, padding=1, relu_out=out.astype(np.float16),
                                        backend=backend)


def test_conv2d_maxpool_errors(backend):
    x, w, b = _data((2, 1, 8, 8), 3, 3, np.float32)
    with pytest.raises(ValueError, match="expect 1 input channels"):
        F.conv2d_maxpool(np.zeros((2, 2, 8, 8), np.float32), w, b, backend=backend)
    with pytest.raises(TypeError, match="x is float32 but weights is float64"):
        F.conv2d_maxpool(x, w.astype(np.float64), b, backend=backend)
    with pytest.raises(ValueError, match=r"must be \(3,\)"):
        F.conv2d_maxpool(x, w, b[:2], backend=backend)
    out, idx = F.conv2d_maxpool(x, w, b, backend=backend)
    bad = idx.copy()
    bad[0, 0, 0, 0] = 5 * 6 + 5  # a real position, but in another pooling window
    with pytest.raises(ValueError, match="outside their pooling windows"):
        F.conv2d_maxpool_backward_params(x, out, bad, w.shape, backend=backend)
    with pytest.raises(ValueError, match="int64 array of shape"):
        F.conv2d_maxpool_backward_params(x, out, idx[:1], w.shape, backend=backend)
    with pytest.raises(ValueError, match="d_out has shape"):
        F.conv2d_maxpool_backward_params(x, out[:1], idx, w.shape, backend=backend)
    with pytest.raises(ValueError, match="outside their pooling windows"):
        F.conv2d_maxpool_backward_input(out, bad, w, x.shape, backend=backend)
    with pytest.raises(ValueError, match="d_out has shape"):
        F.conv2d_maxpool_backward_input(out, idx, w, (2, 1, 10, 10), backend=backend)
    with pytest.raises(ValueError, match="expect 1 input channels"):
        F.conv2d_maxpool_backward_input(out, idx, w, (2, 3, 8, 8), backend=backend)
    with pytest.raises(TypeError, match="d_out is float32 but weights is float64"):
        F.conv2d_maxpool_backward_input(out, idx, w.astype(np.float64), x.shape, backend=backend)
    wide_x, wide_w, _ = _data((2, 9, 8, 8), 3, 3, np.float32)  # the wide kernels check windows too
    out, idx = F.conv2d_maxpool(wide_x, wide_w, backend=backend)
    bad = idx.copy()
    bad[1, 2, 1, 0] = -1
    with pytest.raises(ValueError, match="outside their pooling windows"):
        F.conv2d_maxpool_backward_params(wide_x, out, bad, wide_w.shape, backend=backend)


# ------------------------------------------------------------------ CNN stages
def _layer_by_layer(model, x, y):
    """Forward and backward through model.layers in order, no schedule."""
    loss = SoftmaxCrossEntropy()
    h = x
    for layer in model.layers:
        h = layer.forward(h)
    loss.forward(h, y)
    d = loss.backward()
    for layer in reversed(model.layers):
        d = layer.backward(d)
    return h, d, [g.copy() for g in model.grads()]


def _scheduled(model, x, y, input_grad):
    loss = SoftmaxCrossEntropy()
    out = model.forward(x)
    loss.forward(out, y)
    d = model.backward(loss.backward(), input_grad=input_grad)
    return out, d, [g.copy() for g in model.grads()]


MODELS = {
    "seed": lambda: seed_cnn(),
    # leading parameter-free layer; odd 27x27 input: CroppedConv crops the first conv too
    "normalize_odd": lambda: CNN([Normalize(0.1, 0.3), Conv2D(1, 4, 3), ReLU(), MaxPool2D(2),
                                  Conv2D(4, 6, 3), MaxPool2D(2), ReLU(), Flatten(), Dense(6 * 5 * 5, 10)]),
    # padded convolutions: no cropping, no fusion with padding on the pool
    "padded": lambda: CNN([Conv2D(1, 4, 3, padding=1), ReLU(), MaxPool2D(3, 2, padding=1),
                           Conv2D(4, 4, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(4 * 7 * 7, 10)]),
    # BatchNorm + ReLU stages, 2D and 1D, in training and (below) in eval
    "batchnorm": lambda: CNN([Conv2D(1, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2),
                              Conv2D(4, 6, 3), BatchNorm2D(6), ReLU(), Flatten(), Dense(6 * 12 * 12, 16),
                              BatchNorm1D(16), ReLU(), Dense(16, 10)]),
    "batchnorm_eval": lambda: MODELS["batchnorm"]().eval(),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("stages", ["on", "sparse"])  # fused both ways; plain forward + sparse backward
def test_cnn_stages_match_layer_by_layer(backend, name, input_grad, stages, monkeypatch):
    monkeypatch.setenv("FASTCONV_FUSED_STAGES", stages)
    fastconv.set_backend(backend)
    fastconv.seed(0)
    model = MODELS[name]().astype(np.float64)
    size = 27 if name == "normalize_odd" else 28
    x = np.random.default_rng(0).random((5, 1, size, size))
    y = np.arange(5) % 10
    out, d_x, grads = _scheduled(model, x, y, input_grad)
    ref_out, ref_dx, ref_grads = _layer_by_layer(model, x, y)
    np.testing.assert_allclose(out, ref_out, **TOL[np.float64])
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, **TOL[np.float64])
    if input_grad:
        np.testing.assert_allclose(d_x, ref_dx, **TOL[np.float64])
    else:
        assert d_x is None


def test_batchnorm_and_relu_run_as_one_stage_that_updates_the_batchnorm():
    model = MODELS["batchnorm"]()
    stages = model._schedule()
    # (with the pool after it as one stage where the backend fuses that: test_bn_pool.py)
    fused = [s for s in stages if isinstance(s, (BatchNormReLU, BatchNormReLUPool))]
    assert len(fused) == 3 and [type(s.bn) for s in fused] == [BatchNorm2D, BatchNorm2D, BatchNorm1D]
    bn = model.layers[1]
    before = bn.running_mean.copy()
    x = np.random.default_rng(1).random((4, 1, 28, 28)).astype(np.float32)
    out = model.forward(x)
    assert not np.array_equal(bn.running_mean, before)  # the running statistics moved, as unfused
    model.backward(np.ones_like(out))
    assert np.any(bn.d_gamma != 0)
    with pytest.raises(RuntimeError, match="ran fused"):  # its own backward now refuses
        bn.backward(np.ones((4, 4, 28, 28), np.float32))
    assert [type(s) for s in CNN(model.layers, fuse=False)._schedule()] == [type(layer) for layer in model.layers]


def test_schedule_fuses_and_crops_the_seed_network():
    fastconv.set_backend("c") if "c" in fastconv.available_backends() else pytest.skip("no C backend")
    model = seed_cnn()
    kinds = [type(s).__name__ for s in model._schedule()]
    assert kinds[:3] == ["ConvPoolReLU", "ConvPoolReLU", "Flatten"]
    assert model._schedule() is model._schedule()  # cached: forward and backward share stages
    fastconv.set_backend("numpy")  # the reference runs layer by layer (and crops)
    assert isinstance(model._schedule()[0], CroppedConv)
    assert not any(isinstance(s, ConvPoolReLU) for s in model._schedule())
    out = model.forward(np.zeros((2, 1, 28, 28), np.float32))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("channels", [2, 11])
def test_conv2d_maxpool_same_bits_at_any_thread_count(fast_backend, channels):
    """The weight gradient sums fixed blocks of images in a fixed order; the
    input gradient is per image."""
    x, w, b = _data((32, channels, 14, 13), 24, 3, np.float32, seed=3)
    # the smallest parallel work: C's pool over the GEMM's rows (4 per pooled
    # output), Numba's calls on x, out and indices (out's shape: 32, 24, 6, 5)
    assert min(4 * 32 * 24 * 6 * 5, x.size + 2 * 32 * 24 * 6 * 5) >= PARALLEL_MIN_WORK
    results = []
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        out, idx = F.conv2d_maxpool(x, w, b, backend=fast_backend)
        results.append((out, idx, *F.conv2d_maxpool_backward_params(x, out, idx, w.shape, backend=fast_backend),
                        F.conv2d_maxpool_backward_input(out, idx, w, x.shape, backend=fast_backend)))
    for run in results[1:]:
        for a, b_ in zip(results[0], run):
            np.testing.assert_array_equal(a, b_)


def test_fused_stages_are_layers_that_own_nothing_and_are_never_saved():
    """The stages the fusion table builds are Layers (parameters are their
    layers' own arrays, not copies) but never enter the registry a saved
    model is rebuilt from."""
    from fastconv.layers.base import LAYER_REGISTRY, Layer

    conv, pool, relu = fastconv.Conv2D(1, 4, 3), fastconv.MaxPool2D(2), fastconv.ReLU()
    for stage in (ConvPoolReLU(conv, pool, relu), CroppedConv(conv, pool)):
        assert isinstance(stage, Layer)
        names = [name for name, _, _ in stage.parameters()]
        assert names == ["layers.0.weights", "layers.0.bias"]
        assert next(stage.parameters())[1] is conv.weights
        assert type(stage).__name__ not in LAYER_REGISTRY
        with pytest.raises(TypeError, match="execution stage of CNN"):
            stage.get_config()
        assert repr(conv) in repr(stage)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("block", ["ResidualBlock", "Bottleneck"])
@pytest.mark.parametrize("cin, stride", [(4, 2), (8, 1)], ids=["projection", "identity"])
def test_residual_blocks_fuse_their_batchnorm_and_relu_with_the_same_results(block, training, cin, stride):
    """A block runs its main path through the fusion table (BatchNorm + ReLU as
    one stage) and its last BatchNorm, the add and the ReLU as one pass (with
    an identity shortcut the ReLU's gradient and the sum are one pass too);
    block.fuse = False runs each sub-layer as itself: same output, same
    gradients.  A fused inner layer's own backward then refuses."""
    from fastconv.layers import blocks

    fastconv.seed(3)
    fused = getattr(blocks, block)(cin, 8, stride=stride, dtype=np.float64)
    plain = getattr(blocks, block)(cin, 8, stride=stride, dtype=np.float64)
    assert (fused.shortcut == []) == (stride == 1)
    for (_, a, _), (_, b, _) in zip(fused.parameters(), plain.parameters()):
        b[...] = a
    plain.fuse = False
    fused.train(training), plain.train(training)
    x = np.random.default_rng(4).standard_normal((3, cin, 9, 9))
    out, ref = fused.forward(x), plain.forward(x)
    np.testing.assert_allclose(out, ref, **TOL[np.float64])
    d = np.random.default_rng(5).standard_normal(out.shape)
    np.testing.assert_allclose(fused.backward(d), plain.backward(d), **TOL[np.float64])
    for (name, _, ga), (_, _, gb) in zip(fused.parameters(), plain.parameters()):
        np.testing.assert_allclose(ga, gb, **TOL[np.float64], err_msg=name)
    assert any(isinstance(s, BatchNormReLU) for s in fused._main_stages()[0])
    for inner in (fused.main[1], fused.main[-1], fused.relu):
        with pytest.raises(RuntimeError, match="ran fused"):
            inner.backward(np.ones(out.shape))
