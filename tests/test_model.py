"""Container, save/load, losses, optimizers, schedules, gradcheck itself, signal helpers."""
import json
import zipfile

import numpy as np
import pytest

import fastconv
from fastconv import (CNN, SGD, Adam, AdamW, BatchNorm2D, Conv2D, CosineAnnealingLR, Dense, Dropout,
                      Flatten, MaxPool2D, OneCycleLR, ReLU, ResidualBlock, Softmax, SoftmaxCrossEntropy,
                      StepLR, load_model)
from fastconv import signal
import naive


def seed_cnn():
    return CNN([Conv2D(1, 32, kernel_size=3), ReLU(), MaxPool2D(2, 2),
                Conv2D(32, 64, kernel_size=3), ReLU(), MaxPool2D(2, 2),
                Flatten(), Dense(64 * 5 * 5, 128), ReLU(), Dense(128, 10), Softmax()])


def test_summary_counts_the_seed_cnn():
    text = seed_cnn().summary((1, 28, 28))
    assert "total parameters: 225,034" in text
    assert "(None, 64, 5, 5)" in text and "(None, 1600)" in text


def test_gradcheck_catches_a_wrong_gradient():
    class Broken(Dense):
        def backward(self, d_out):
            return 2 * super().backward(d_out)

    assert fastconv.gradcheck(Broken(4, 3), np.ones((2, 4))) > 0.1


def test_save_load_round_trip(tmp_path):
    fastconv.seed(0)
    model = CNN([Conv2D(1, 4, 3), BatchNorm2D(4), ReLU(), ResidualBlock(4, 8, stride=2), Flatten(),
                 Dropout(0.5), Dense(8 * 4 * 4, 10), Softmax()])
    x = np.random.default_rng(1).random((5, 1, 10, 10)).astype(np.float32)
    model.forward(x)  # move the BatchNorm running statistics off their defaults
    model.eval()
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = load_model(path)
    loaded.eval()
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert [n for n, _, _ in loaded.parameters()] == [n for n, _, _ in model.parameters()]
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away
    with np.load(path, allow_pickle=False) as data:  # plain arrays, no pickle
        assert json.loads(str(data["__fastconv_model__"]))["format"] == "fastconv.model"


def test_corrupt_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "m.npz"
    seed_cnn().save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.npz is not a readable fastconv model"):
        load_model(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(ValueError, match="garbage.npz"):
        load_model(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(ValueError, match=r"foreign\.npz is not a fastconv model"):
        load_model(foreign)
    # a model whose arrays do not fit its architecture
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.namelist():
            if item != "param:layers.0.weights.npy":
                dst.writestr(item, src.read(item))
    with pytest.raises(ValueError, match=r"bad\.npz: missing arrays \['param:layers.0.weights'\]"):
        load_model(bad)


def test_cross_entropy_matches_softmax_path():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 10)) * 5
    labels = rng.integers(0, 10, 6)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert value == pytest.approx(-np.log(p[np.arange(6), labels]).mean())
    np.testing.assert_allclose(loss.backward(), (p - np.eye(10)[labels]) / 6, atol=1e-12)
    assert loss.forward(logits, np.eye(10)[labels]) == pytest.approx(value)  # one-hot labels
    num = naive.numerical_grad(lambda z: np.array(loss.forward(z, labels)), logits.copy(), np.array(1.0))
    loss.forward(logits, labels)
    np.testing.assert_allclose(loss.backward(), num, atol=1e-8)
    assert np.isfinite(SoftmaxCrossEntropy().forward(np.array([[1e4, -1e4]]), np.array([1])))  # stable


def test_label_smoothing():
    loss = SoftmaxCrossEntropy(label_smoothing=0.1)
    logits = np.zeros((2, 4))
    loss.forward(logits, np.array([0, 1]))
    target = np.full((2, 4), 0.025)
    target[0, 0] = target[1, 1] = 0.925
    np.testing.assert_allclose(loss.backward(), (0.25 - target) / 2)


def test_loss_label_errors():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="do not match logits"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.zeros((2, 4)))


def _one_param(value, grad):
    return [("w", np.array(value, dtype=np.float64), np.array(grad, dtype=np.float64))]


def test_sgd_momentum_and_nesterov_match_pytorch_formulas():
    params = _one_param([1.0, 2.0], [0.5, -1.0])
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    w, g = params[0][1], params[0][2]
    v = np.zeros(2)
    expected = w.copy()
    for _ in range(3):
        gg = g + 0.01 * expected
        v = 0.9 * v + gg if _ else gg
        expected = expected - 0.1 * v
        opt.step()
    np.testing.assert_allclose(w, expected)
    params = _one_param([1.0], [1.0])
    opt = SGD(params, lr=0.1, momentum=0.5, nesterov=True)
    opt.step()
    np.testing.assert_allclose(params[0][1], [1.0 - 0.1 * (1 + 0.5 * 1)])


def test_adam_and_adamw():
    params = _one_param([1.0, -1.0], [0.2, -0.4])
    opt = Adam(params, lr=0.01)
    opt.step()
    # first Adam step moves each weight by lr * sign(grad) (bias-corrected)
    np.testing.assert_allclose(params[0][1], [1.0 - 0.01, -1.0 + 0.01], rtol=1e-6)
    params = _one_param([1.0], [0.0])
    AdamW(params, lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(params[0][1], [1.0 - 0.1 * 0.5])  # decoupled decay only


def test_optimizer_follows_a_model_and_zero_grad():
    model = CNN([Dense(3, 2)])
    opt = SGD(model, lr=0.5)
    model.forward(np.ones((1, 3)))
    model.backward(np.ones((1, 2)))
    w0 = model.layers[0].weights.copy()
    opt.step()
    np.testing.assert_allclose(model.layers[0].weights, w0 - 0.5)
    opt.zero_grad()
    assert all(not g.any() for g in model.grads())


def test_schedules():
    opt = SGD(_one_param([0.0], [0.0]), lr=1.0)
    s = StepLR(opt, step_size=2, gamma=0.5)
    assert [s.step() for _ in range(4)] == [1.0, 0.5, 0.5, 0.25]
    opt = SGD(_one_param([0.0], [0.0]), lr=1.0)
    c = CosineAnnealingLR(opt, T_max=4)
    lrs = [c.step() for _ in range(4)]
    np.testing.assert_allclose(lrs, [0.5 * (1 + np.cos(np.pi * t / 4)) for t in range(1, 5)], atol=1e-12)
    opt = SGD(_one_param([0.0], [0.0]), lr=1.0)
    o = OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.3)
    lrs = [opt.lr] + [o.step() for _ in range(10)]
    assert lrs[0] == pytest.approx(1 / 25) and max(lrs) == pytest.approx(1.0) and lrs[-1] < 1e-4


def test_signal_helpers_match_loops():
    rng = np.random.default_rng(0)
    img = rng.random((9, 8))
    out = signal.conv2d(img, signal.SOBEL_X, stride=2, padding=1)
    ref = naive.conv2d(img[None, None], signal.SOBEL_X[None, None], None, (2, 2), (1, 1), (1, 1), 1)[0, 0]
    np.testing.assert_allclose(out, ref)
    sig = rng.random(20)
    k = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(signal.conv1d(sig, k), np.correlate(sig, k, mode="valid"))
    np.testing.assert_allclose(signal.conv1d(sig, k, padding=1), np.correlate(np.pad(sig, 1), k, mode="valid"))
    multi = rng.random((3, 7, 7))
    kern = rng.random((2, 3, 3, 3))
    np.testing.assert_allclose(signal.conv2d_multichannel(multi, kern),
                               naive.conv2d(multi[None], kern, None, (1, 1), (0, 0), (1, 1), 1)[0])
    assert signal.output_size(28, 3) == 26 and signal.output_size(26, 2, stride=2) == 13
    assert signal.receptive_field(seed_cnn().layers) == (10, 10)
    assert signal.count_params(seed_cnn()) == 225_034
    with pytest.raises(ValueError, match="does not fit"):
        signal.output_size(2, 5)


def test_relu_pool_reordering_changes_nothing():
    """CNN runs ReLU->MaxPool2D as pool-then-ReLU: same outputs and gradients
    as running the layers one by one in the order given."""
    fastconv.seed(4)
    model = CNN([Conv2D(2, 3, 3, padding=1), ReLU(), MaxPool2D(3, 2, padding=1), Flatten(), Dense(3 * 4 * 4, 5)])
    x = np.random.default_rng(0).standard_normal((4, 2, 8, 8))
    x[:, :, :4] = -np.abs(x[:, :, :4]) - 5  # whole windows negative: ReLU ties at zero
    out = model.forward(x)
    d_x = model.backward(np.ones_like(out))
    grads = [g.copy() for g in model.grads()]
    y = x
    for layer in model.layers:
        y = layer.forward(y)
    d = np.ones_like(y)
    for layer in reversed(model.layers):
        d = layer.backward(d)
    np.testing.assert_allclose(out, y, rtol=1e-6)
    np.testing.assert_allclose(d_x, d, rtol=1e-6, atol=1e-7)
    for a, b in zip(grads, model.grads()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [type(l).__name__ for l in model._schedule()] == ["Conv2D", "MaxPool2D", "ReLU", "Flatten", "Dense"]


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.0, False, 0.01), (0.9, False, 5e-4),
                                                  (0.9, True, 5e-4)])
def test_sgd_kernels_match_the_reference(backend, dtype, momentum, nesterov, wd):
    """Each backend's one-pass SGD update equals the NumPy reference's over several steps."""
    rng = np.random.default_rng(0)
    start, grads = rng.standard_normal(1000).astype(dtype), rng.standard_normal((4, 1000)).astype(dtype)
    results = []
    for name in ("numpy", backend):
        fastconv.set_backend(name)
        value, grad = start.copy(), np.empty_like(start)
        opt = SGD([("w", value, grad)], lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
        for g in grads:
            grad[...] = g
            opt.step()
        results.append(value)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_sgd_updates_a_non_contiguous_parameter():
    value, grad = np.ones((4, 4))[:, ::2], np.ones((4, 4))[:, ::2]
    SGD([("w", value, grad)], lr=0.5, momentum=0.9).step()
    np.testing.assert_allclose(value, 0.5)


@pytest.mark.parametrize("first", ["dense", "conv"])
def test_backward_without_the_input_gradient_gives_the_same_parameter_gradients(backend, first):
    """input_grad=False stops at the first layer with parameters, which then
    computes only its own gradients (Dense and Conv2D backward_params_only)."""
    rng = np.random.default_rng(4)
    if first == "dense":
        layers = [Flatten(), Dense(48, 20, rng=rng, backend=backend), ReLU(), Dense(20, 5, rng=rng, backend=backend)]
    else:
        layers = [Conv2D(3, 4, 3, rng=rng, backend=backend), ReLU(), Flatten(),
                  Dense(4 * 2 * 2, 5, rng=rng, backend=backend)]
    model = CNN(layers)
    x, d = rng.standard_normal((6, 3, 4, 4)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    grads = []
    for input_grad in (True, False):
        model.forward(x)
        d_x = model.backward(d, input_grad=input_grad)
        assert (d_x is None) == (not input_grad)
        grads.append([g.copy() for _, _, g in model.parameters()])
    for with_dx, without in zip(*grads):
        np.testing.assert_array_equal(with_dx, without)
