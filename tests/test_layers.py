"""Layers and blocks: forward against references, gradcheck < 1e-6 in float64."""
import numpy as np
import pytest

import fastconv
from fastconv.backends import _gemm_conv
from fastconv import (AdaptiveAvgPool2D, AvgPool2D, BatchNorm1D, BatchNorm2D, Bottleneck, CNN, Conv2D,
                      Dense, DepthwiseSeparableConv, Dropout, Dropout2D, Flatten, GlobalAvgPool2D,
                      LeakyReLU, MaxPool2D, ReLU, ResidualBlock, SEBlock, Sigmoid, Softmax)
import naive

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.standard_normal(shape)


CONV_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2)),
    dict(in_channels=2, out_channels=2, kernel_size=3, padding=2, dilation=2),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4),  # depthwise
    dict(in_channels=3, out_channels=2, kernel_size=1, bias=False),
]


@pytest.mark.parametrize("cfg", CONV_CASES)
def test_conv_forward_matches_direct_loops(backend, cfg):
    layer = Conv2D(**cfg, dtype=np.float64, backend=backend, rng=1)
    if layer.bias is not None:
        layer.bias[...] = RNG.standard_normal(layer.bias.shape)
    x = _x(2, cfg["in_channels"], 7, 6)
    expected = naive.conv2d(x, layer.weights, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cfg", CONV_CASES)
def test_conv_gradcheck(backend, cfg):
    layer = Conv2D(**cfg, backend=backend, rng=2)
    assert fastconv.gradcheck(layer, _x(2, cfg["in_channels"], 7, 6)) < 1e-6


def test_conv_float32_matches_float64(backend):
    layer = Conv2D(3, 5, 3, padding=1, backend=backend, rng=3)
    x = _x(4, 3, 9, 9).astype(np.float32)
    out32 = layer.forward(x)
    d32 = layer.backward(np.ones_like(out32))
    layer64 = Conv2D(3, 5, 3, padding=1, dtype=np.float64, backend=backend, rng=3)
    out64 = layer64.forward(x.astype(np.float64))
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d32, layer64.backward(np.ones_like(out64)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.d_weights, layer64.d_weights, rtol=1e-4, atol=1e-4)
    assert out32.dtype == np.float32 and d32.dtype == np.float32


LAYERS = [
    (lambda: MaxPool2D(2, 2), (2, 3, 6, 6)),
    (lambda: MaxPool2D(3, 2, padding=1), (2, 2, 7, 7)),
    (lambda: AvgPool2D(2), (2, 3, 6, 5)),
    (lambda: AvgPool2D(3, 1, padding=1), (1, 2, 5, 5)),
    (lambda: GlobalAvgPool2D(), (2, 3, 4, 5)),
    (lambda: AdaptiveAvgPool2D((2, 3)), (2, 2, 5, 7)),
    (lambda: BatchNorm2D(3), (4, 3, 3, 3)),
    (lambda: BatchNorm2D(3).eval(), (4, 3, 3, 3)),
    (lambda: BatchNorm1D(5), (6, 5)),
    (lambda: Dense(7, 4), (3, 7)),
    (lambda: ReLU(), (3, 4, 5)),
    (lambda: LeakyReLU(0.1), (3, 4, 5)),
    (lambda: Sigmoid(), (3, 6)),
    (lambda: Softmax(), (3, 6)),
    (lambda: Dropout(0.3, rng=0), (4, 6)),
    (lambda: Dropout2D(0.5, rng=0), (3, 4, 3, 3)),
    (lambda: Flatten(), (2, 3, 2, 2)),
    (lambda: ResidualBlock(3, 3), (2, 3, 6, 6)),
    (lambda: ResidualBlock(2, 4, stride=2), (2, 2, 6, 6)),
    (lambda: Bottleneck(4, 8, stride=2), (2, 4, 6, 6)),
    (lambda: SEBlock(8, reduction=4), (2, 8, 3, 3)),
    (lambda: DepthwiseSeparableConv(3, 5), (2, 3, 6, 6)),
]


@pytest.mark.parametrize("make,shape", LAYERS, ids=lambda v: "" if callable(v) else str(v))
def test_layer_gradcheck(make, shape):
    layer = make()
    err = fastconv.gradcheck(layer, _x(*shape))
    assert err < 1e-6, f"{layer!r}: {err}"


def test_seed_model_gradcheck():
    fastconv.seed(0)
    model = CNN([Conv2D(1, 4, 3), ReLU(), MaxPool2D(2), Conv2D(4, 6, 3), BatchNorm2D(6), ReLU(),
                 Flatten(), Dense(6 * 2 * 2, 8), Dropout(0.2), ReLU(), Dense(8, 3), Softmax()])
    assert fastconv.gradcheck(model, _x(3, 1, 10, 10)) < 1e-6


def test_softmax_backward_turns_dprobs_into_dlogits():
    """The guides' loop: d_probs = -onehot / ((probs + 1e-8) * N) through Softmax ~ (probs - onehot) / N."""
    logits = _x(5, 10)
    onehot = np.eye(10)[RNG.integers(0, 10, 5)]
    sm = Softmax()
    probs = sm.forward(logits)
    d_logits = sm.backward(-onehot / ((probs + 1e-8) * 5))
    np.testing.assert_allclose(d_logits, (probs - onehot) / 5, atol=1e-6)


def test_dense_shape_mismatch_names_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Dense\(in_features=1600, out_features=128.*expects 1600 input features, got input of shape \(4, 1352\)"):
        Dense(1600, 128).forward(np.zeros((4, 1352)))


def test_conv_channel_mismatch_and_rank():
    with pytest.raises(ValueError, match=r"Conv2D\(in_channels=3.*expects 3 input channels, got input of shape \(2, 1, 8, 8\)"):
        Conv2D(3, 4, 3).forward(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"expects a \(N, C, H, W\) input, got shape \(1, 8, 8\); add a batch axis"):
        Conv2D(1, 4, 3).forward(np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        Conv2D(4, 6, 3, groups=3)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        Dense(3, 2).backward(np.zeros((1, 2)))


def test_batchnorm_train_eval_modes():
    bn = BatchNorm2D(2, momentum=0.5)
    x = _x(8, 2, 3, 3).astype(np.float32) * 3 + 1
    out = bn.forward(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert not np.allclose(bn.running_mean, 0)  # updated in training
    rm = bn.running_mean.copy()
    bn.eval()
    bn.forward(x)
    np.testing.assert_array_equal(bn.running_mean, rm)  # untouched in eval


def test_dropout_is_identity_in_eval_and_scales_in_training():
    d = Dropout(0.25, rng=0)
    x = np.ones((2000, 50), np.float32)
    y = d.forward(x)
    assert set(np.unique(y)) <= {0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert abs(y.mean() - 1) < 0.02  # inverted dropout keeps the expectation
    d.eval()
    assert d.forward(x) is x
    d2 = Dropout2D(0.5, rng=0)
    y2 = d2.forward(np.ones((4, 6, 3, 3), np.float32))
    assert np.all(y2.std(axis=(2, 3)) == 0)  # whole channels


def test_seed_makes_init_deterministic():
    fastconv.seed(123)
    a = Conv2D(2, 3, 3).weights.copy()
    fastconv.seed(123)
    np.testing.assert_array_equal(Conv2D(2, 3, 3).weights, a)
    np.testing.assert_array_equal(Conv2D(2, 3, 3, rng=7).weights, Conv2D(2, 3, 3, rng=7).weights)


def test_he_init_scale():
    w = Conv2D(64, 64, 3, rng=0).weights
    assert abs(w.std() - np.sqrt(2 / (64 * 9))) < 0.002
    assert abs(Dense(1000, 500, rng=0).weights.std() - np.sqrt(2 / 1000)) < 0.002


def test_parameters_and_grads_api():
    model = CNN([Conv2D(1, 2, 3), BatchNorm2D(2), Flatten(), Dense(2 * 4 * 4, 3)])
    names = [n for n, _, _ in model.parameters()]
    assert names == ["layers.0.weights", "layers.0.bias", "layers.1.gamma", "layers.1.beta",
                     "layers.3.weights", "layers.3.bias"]
    assert [v.shape for v in model.params()] == [g.shape for g in model.grads()]
    assert [n for n, _ in model.buffers()] == ["layers.1.running_mean", "layers.1.running_var"]
    model.eval()
    assert not model.layers[1].training
    model.train()
    assert model.layers[1].training


def test_update_params_is_plain_sgd_on_everything():
    model = CNN([Conv2D(1, 2, 3), BatchNorm2D(2), Flatten(), Dense(2 * 4 * 4, 3)])
    x = _x(4, 1, 6, 6).astype(np.float32)
    out = model.forward(x)
    model.backward(np.ones_like(out))
    before = [v.copy() for v in model.params()]
    model.update_params(0.1)
    for b, v, g in zip(before, model.params(), model.grads()):
        np.testing.assert_allclose(v, b - 0.1 * g, rtol=1e-6)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_batch_chunking_matches_whole_batch(backend, groups, monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 4, 9, 8))
    whole = Conv2D(4, 6, 3, padding=1, stride=(1, 2), groups=groups, dtype=np.float64, backend=backend, rng=0)
    chunked = Conv2D(4, 6, 3, padding=1, stride=(1, 2), groups=groups, dtype=np.float64, backend=backend, rng=0)
    out_w = whole.forward(x)
    # the im2col + matmul driver (NumPy, Numba): 3 images per chunk, chunks of 3, 3, 1
    monkeypatch.setattr(_gemm_conv, "MAX_COL_BYTES", 3 * 4 * 9 * 9 * 4 * 8)
    assert _gemm_conv.images_per_chunk(whole._cache.geometry, 8) == 3
    out_c = chunked.forward(x)
    np.testing.assert_allclose(out_c, out_w, rtol=1e-12)
    g = rng.standard_normal(out_w.shape)
    np.testing.assert_allclose(chunked.backward(g), whole.backward(g), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(chunked.d_weights, whole.d_weights, rtol=1e-12)
    np.testing.assert_allclose(chunked.d_bias, whole.d_bias, rtol=1e-12)
    assert fastconv.gradcheck(chunked, x[:4]) < 1e-6


def test_conv_peak_memory_is_bounded():
    """Issue target: a Conv2D forward+backward on (128, 64, 32, 32), 3x3, pad 1,
    64 -> 64 uses at most 64 MB beyond its input, output, d_out, d_x and
    weights (the whole-batch im2col alone would be 302 MB)."""
    import tracemalloc

    layer = Conv2D(64, 64, 3, padding=1, rng=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 64, 32, 32), dtype=np.float32)
    d_out = rng.standard_normal((128, 64, 32, 32), dtype=np.float32)
    tracemalloc.start()
    out = layer.forward(x)
    d_x = layer.backward(d_out)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    beyond = peak - out.nbytes - d_x.nbytes  # x, d_out and weights predate tracing
    assert beyond <= 64 * 2**20, f"{beyond / 2**20:.1f} MB beyond inputs/outputs"
