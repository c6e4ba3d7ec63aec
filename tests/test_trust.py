"""Regression tests of issue 12: bad input, untrusted files and the drop-in
promise give a clear exception or the right answer on every backend, never a
crash, a hang or a silently wrong result."""
import json
import os
import threading
import zipfile

import numpy as np
import pytest

import fastconv
from fastconv import CNN, SGD, Adam, Conv2D, Dense, Flatten, MaxPool2D, ReLU, BatchNorm2D, load_model
from fastconv import functional as F
from fastconv.layers.base import LAYER_REGISTRY
from fastconv.model import read_model_file


def _tiny_model():
    fastconv.seed(0)
    return CNN([Conv2D(1, 2, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(2 * 3 * 3, 3)])


def _step_ready(model):
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    model.backward(model.forward(x))
    return model


# ------------------------------------------------------------ optimizer
@pytest.mark.parametrize("bad", ["short", "transposed", "dtype"])
def test_sgd_refuses_a_gradient_that_does_not_fit(backend, bad):
    w = np.ones((3, 4), np.float32)
    g = {"short": np.ones(5, np.float32), "transposed": np.ones((4, 3), np.float32),
         "dtype": np.ones((3, 4))}[bad]
    opt = SGD([("w", w, g)], lr=0.1, momentum=0.9)
    with fastconv.use_backend(backend), pytest.raises((ValueError, TypeError), match="gradient of 'w' has"):
        opt.step()
    np.testing.assert_array_equal(w, 1)  # nothing was applied


def test_sgd_refuses_a_velocity_of_another_shape_from_a_checkpoint(backend):
    model = _step_ready(_tiny_model())
    opt = SGD(model, lr=0.1, momentum=0.9)
    opt.step()
    state = opt.state_dict()
    name = next(k for k in state if k.endswith("/velocity"))
    state[name] = state[name].ravel()[:3]  # what a crafted checkpoint holds
    fresh = SGD(model, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=f"optimizer state '{name}' has shape \\(3,\\)"):
        fresh.load_state_dict(state)
    assert fresh.state == {} and fresh.steps == 0  # unchanged
    # and a velocity swapped in after loading never reaches the kernel either
    fresh.load_state_dict(opt.state_dict())
    first = next(iter(fresh.state))
    fresh.state[first]["velocity"] = np.zeros(1, np.float32)
    with fastconv.use_backend(backend), pytest.raises(ValueError, match="has shape \\(1,\\)"):
        fresh.step()


@pytest.mark.parametrize("change, match", [
    (lambda s: s.update({"nope/velocity": np.zeros(2)}), "names no parameter"),
    (lambda s: s.update({next(k for k in s if "/" in k).rsplit("/", 1)[0] + "/m": np.zeros(2)}),
     "keeps velocity, not 'm'"),
    (lambda s: s.pop("__lr__"), "lacks '__lr__'"),
    (lambda s: s.update(__lr__=np.array(float("nan"))), "finite learning rate"),
    (lambda s: s.update(__steps__=np.array([1, 2])), "must be a number"),
    (lambda s: s.update({next(k for k in s if "/" in k): np.array(["a"])}), "numeric array"),
])
def test_load_state_dict_treats_the_state_as_untrusted(change, match):
    model = _step_ready(_tiny_model())
    opt = SGD(model, lr=0.1, momentum=0.9)
    opt.step()
    state = dict(opt.state_dict())
    change(state)
    with pytest.raises(ValueError, match=match):
        SGD(model, lr=0.1, momentum=0.9).load_state_dict(state)


def test_adam_state_needs_both_moments():
    model = _step_ready(_tiny_model())
    opt = Adam(model)
    opt.step()
    state = {k: v for k, v in opt.state_dict().items() if not k.endswith("/v")}
    with pytest.raises(ValueError, match="needs all of \\['m', 'v'\\]"):
        Adam(model).load_state_dict(state)


# ------------------------------------------------------------ geometry
HUGE = [2**62, 2**63, 2**64 + 1]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("arg", ["stride", "padding", "dilation"])
def test_absurd_conv_geometry_is_refused_before_any_kernel(backend, arg, value):
    x = np.ones((1, 1, 5, 5), np.float32)
    with pytest.raises(ValueError, match=f"{arg} must be at most 2147483647, got {value}"):
        F.im2col(x, 3, 3, **{arg: value}, backend=backend)
    with pytest.raises(ValueError, match=f"{arg} must be at most"):
        F.conv2d_maxpool(x, np.ones((1, 1, 3, 3), np.float32), **{arg: value}, backend=backend)


@pytest.mark.parametrize("arg", ["kernel_size", "stride", "padding"])
def test_absurd_pool_geometry_is_refused(backend, arg):
    x = np.ones((1, 1, 5, 5), np.float32)
    kw = dict(kernel_size=2, stride=1, padding=0)
    kw[arg] = 2**63
    with pytest.raises(ValueError, match=f"{arg} must be at most"):
        F.max_pool2d(x, **kw, backend=backend)


def test_products_past_the_kernels_index_range_are_refused(backend):
    """Each integer in range, the sizes they imply not: a padded plane of
    2**31 x 2**31 and an output of as many positions."""
    x = np.ones((1, 1, 2, 2), np.float32)
    big = 2**30
    with pytest.raises(ValueError, match="more than fastconv's kernels can index"):
        F.im2col(x, 1, 1, padding=big, backend=backend)
    with pytest.raises(ValueError, match="more than fastconv's kernels can index"):
        F.conv2d_maxpool(x, np.ones((1, 1, 1, 1), np.float32), padding=big, pool_size=2**30,
                         backend=backend)


def test_an_empty_plane_is_not_made_valid_by_padding(backend):
    x = np.ones((1, 1, 0, 4), np.float32)
    with pytest.raises(ValueError, match="x is empty: shape \\(1, 1, 0, 4\\)"):
        F.max_pool2d(x, 2, padding=1, backend=backend)
    with pytest.raises(ValueError, match="x_shape\\[2\\] must be positive, got 0"):
        F.col2im(np.ones((4, 3), np.float32), (1, 1, 0, 4), 2, 2, padding=1, backend=backend)


def test_empty_batch_gives_one_clear_message(backend):
    x = np.zeros((0, 1, 8, 8), np.float32)
    with fastconv.use_backend(backend):
        with pytest.raises(ValueError, match="input is empty \\(shape \\(0, 1, 8, 8\\)\\)"):
            Conv2D(1, 2, 3).forward(x)
        with pytest.raises(ValueError, match="input is empty"):
            _tiny_model().forward(x)
    with pytest.raises(ValueError, match="x is empty"):
        F.im2col(x, 3, 3, backend=backend)


# ------------------------------------------------------------ numerics
def test_batchnorm_of_nan_gives_nan_as_pytorch(backend):
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    x[1, 1, 2, 2] = np.nan
    running_mean, running_var = np.zeros(3, np.float32), np.ones(3, np.float32)
    out, _ = F.batch_norm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), running_mean, running_var,
                                  backend=backend)
    assert np.isnan(out[:, 1]).all() and np.isfinite(out[:, [0, 2]]).all()
    assert np.isnan(running_var[1]) and np.isnan(running_mean[1])
    assert np.isfinite(running_var[[0, 2]]).all()


@pytest.mark.parametrize("k", [2, 3])
def test_max_pool_nan_policy_is_the_first_nan_on_every_backend(backend, k):
    x = np.arange(2 * 3 * 6 * 6, dtype=np.float64).reshape(2, 3, 6, 6)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = np.nan  # two NaNs in the first window
    x[1, 2, 5, 5] = x[1, 2, 4, 5] = np.nan
    out, idx = F.max_pool2d(x, k, backend=backend)
    assert np.isnan(out[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1  # row-major: (0, 1) before (1, 0)
    last = (6 // k - 1)
    assert np.isnan(out[1, 2, last, last]) and idx[1, 2, last, last] == 4 * 6 + 5
    ref_out, ref_idx = F.max_pool2d(x, k, backend="numpy")
    np.testing.assert_array_equal(idx, ref_idx)


# ------------------------------------------------------------ buffers and shapes
def test_batchnorm_out_may_not_overlap_the_running_statistics(backend):
    x = np.ones((4, 3), np.float32)
    stats = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="out overlaps running_mean"):
        F.batch_norm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), stats[0], np.ones(3, np.float32),
                             out=stats, backend=backend)
    np.testing.assert_array_equal(stats, 0)


def test_adaptive_avg_pool_backward_checks_d_out():
    layer = fastconv.AdaptiveAvgPool2D(2)
    layer.forward(np.ones((1, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match="d_out has shape \\(1, 3, 3, 3\\), but the forward output was \\(1, 3, 2, 2\\)"):
        layer.backward(np.ones((1, 3, 3, 3), np.float32))


# ------------------------------------------------------------ files
def _write_npz(path, entries):
    np.savez(path, **entries)


@pytest.mark.parametrize("meta, match", [
    (7, "must be a JSON object, got int"),
    ([1, 2], "must be a JSON object, got list"),
    ({"format": "fastconv.model"}, "format version is None"),
    ({"format": "fastconv.model", "version": 1}, "no architecture object"),
    ({"format": "fastconv.model", "version": 1, "architecture": {"layers": 3}}, "'layers' must be a list"),
    ({"format": "fastconv.model", "version": 1, "architecture": {"layers": [5]}}, "a layer entry must be"),
    ({"format": "fastconv.model", "version": 1, "architecture": {"layers": [{"class": "Dense", "config": [1]}]}},
     "config of layer Dense must be an object"),
    ({"format": "fastconv.model", "version": "2", "architecture": {}}, "expected an integer"),
])
def test_crafted_model_metadata_gives_a_value_error_naming_the_file(tmp_path, meta, match):
    path = tmp_path / "crafted.npz"
    _write_npz(path, {"__fastconv_model__": np.array(json.dumps(meta))})
    with pytest.raises(ValueError, match=match) as info:
        load_model(path)
    assert "crafted.npz" in str(info.value)


def test_truncated_model_and_checkpoint_files(tmp_path):
    from fastconv.train import load_checkpoint

    model = _tiny_model()
    model.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        (tmp_path / "cut.npz").write_bytes(data[:cut])
        with pytest.raises(ValueError, match="cut.npz is not a readable"):
            load_model(tmp_path / "cut.npz")
        with pytest.raises(ValueError, match="cut.npz is not a readable"):
            load_checkpoint(tmp_path / "cut.npz")
    assert load_model(tmp_path / "m.npz").num_params() == model.num_params()


def test_a_small_file_cannot_ask_for_a_huge_allocation(tmp_path):
    """A .npy header declaring 75 GiB inside a file of a few hundred bytes."""
    header = np.lib.format
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as z:
        with z.open("__fastconv_model__.npy", "w") as f:
            header.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (20_000_000_000,)})
    assert path.stat().st_size < 400
    with pytest.raises(ValueError, match="declares shape \\(20000000000,\\)"):
        read_model_file(path)


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "pickle.npz"
    np.savez(path, __fastconv_model__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="holds Python objects"):
        read_model_file(path)


def test_saved_files_get_the_usual_mode_and_an_interrupted_write_is_replaced(tmp_path):
    model = _tiny_model()
    (tmp_path / "model.npz.tmp").write_bytes(b"left by a killed write")
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "model.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "model.npz").stat().st_mode & 0o777 == 0o644
    assert not (tmp_path / "model.npz.tmp").exists()
    assert load_model(tmp_path / "model.npz").num_params() == model.num_params()


# ------------------------------------------------------------ threads
def test_use_backend_is_thread_local():
    names = fastconv.available_backends()
    if len(names) < 2:
        pytest.skip("needs two backends")
    a, b = names[-1], names[0]
    inside, seen = threading.Barrier(2), {}

    def worker(name):
        with fastconv.use_backend(name):
            inside.wait()  # both blocks open at once
            seen[name] = fastconv.get_backend()
            inside.wait()
        seen[name + " after"] = fastconv.get_backend()

    before = fastconv.get_backend()
    threads = [threading.Thread(target=worker, args=(n,)) for n in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen[a] == a and seen[b] == b
    assert seen[a + " after"] == seen[b + " after"] == before == fastconv.get_backend()


def test_set_backend_stays_process_wide():
    names = fastconv.available_backends()
    fastconv.set_backend(names[0])
    seen = []
    t = threading.Thread(target=lambda: seen.append(fastconv.get_backend()))
    t.start()
    t.join(30)
    assert seen == [names[0]]


# ------------------------------------------------------------ drop-in promise
def test_float64_weights_assigned_as_the_guides_do_are_converted(backend):
    rng = np.random.default_rng(0)
    conv, dense, bn = Conv2D(1, 4, 3, backend=backend), Dense(4 * 6 * 6, 3), BatchNorm2D(4, backend=backend)
    conv.weights = rng.standard_normal((4, 1, 3, 3))  # float64, as np.random.randn gives
    conv.bias = [0.0, 0.1, 0.2, 0.3]  # a list, even
    dense.weights = rng.standard_normal((4 * 6 * 6, 3)) * 0.1
    bn.gamma = np.full(4, 2.0)
    model = CNN([conv, bn, ReLU(), Flatten(), dense])
    assert conv.weights.dtype == dense.weights.dtype == bn.gamma.dtype == np.float32
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    with fastconv.use_backend(backend):
        out = model.forward(x)
        model.backward(np.ones_like(out))
    assert out.dtype == np.float32 and conv.d_weights.dtype == np.float32
    np.testing.assert_allclose(conv.bias, [0, 0.1, 0.2, 0.3], rtol=1e-6)
    with pytest.raises(ValueError, match="Conv2D.weights has shape \\(4, 1, 3, 3\\); the assigned array has shape \\(3, 3\\)"):
        conv.weights = np.ones((3, 3))
    model.astype(np.float64)  # an explicit conversion still changes the dtype
    assert conv.weights.dtype == np.float64 and conv.d_weights.dtype == np.float64


class TutorialDense:
    """Guide 003's own Dense, as a user writes it."""

    def __init__(self, n_in, n_out, rng):
        self.weights = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        self.bias = np.zeros(n_out)
        self.d_weights = self.d_bias = None
        self.input_cache = None

    def forward(self, x):
        self.input_cache = x
        return x @ self.weights + self.bias

    def backward(self, d_out):
        self.d_weights = self.input_cache.T @ d_out
        self.d_bias = np.sum(d_out, axis=0)
        return d_out @ self.weights.T


def test_cnn_takes_a_tutorials_own_layer(backend):
    rng = np.random.default_rng(0)
    own = TutorialDense(2 * 3 * 3, 3, rng)
    model = CNN([Conv2D(1, 2, 3, backend=backend), ReLU(), MaxPool2D(2, backend=backend), Flatten(), own])
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    out = model.forward(x)
    model.backward(np.ones_like(out))
    names = [n for n, _, _ in model.parameters()]
    assert "layers.4.weights" in names and "layers.4.bias" in names
    w0 = own.weights.copy()
    model.update_params(0.1)
    np.testing.assert_allclose(own.weights, w0 - 0.1 * own.d_weights)
    with pytest.raises(TypeError, match="layer 1 is int: expected a fastconv Layer or an object with forward"):
        CNN([ReLU(), 3])


def test_a_users_class_named_relu_runs_as_written():
    class ReLU:  # noqa: N801 - a tutorial's own class, same name as fastconv's
        def forward(self, x):
            self.x = x
            return 2 * x

        def backward(self, d_out):
            return 2 * d_out

    class Conv2D(fastconv.Conv2D):  # a user subclass named like the built-in
        pass

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 9, 9)).astype(np.float32)
    for backend in fastconv.available_backends():
        fastconv.set_backend(backend)
        fastconv.seed(1)
        conv = fastconv.Conv2D(1, 3, 3)
        model = CNN([conv, ReLU(), MaxPool2D(2)])
        expected = F.max_pool2d(2 * np.ascontiguousarray(conv.forward(x)), 2, backend="numpy")[0]
        np.testing.assert_allclose(model.forward(x), expected, rtol=1e-5, atol=1e-6)
    assert LAYER_REGISTRY["ReLU"] is fastconv.ReLU and LAYER_REGISTRY["Conv2D"] is fastconv.Conv2D


def _hand_backward(model, d_out):
    for layer in reversed(model.layers):
        d_out = layer.backward(d_out)
    return d_out


def test_hand_written_backward_after_model_forward_is_right_or_refused(backend):
    """The guides' container calls each layer's backward; after a fused
    model.forward that must refuse clearly, never return wrong gradients."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1, 12, 12)).astype(np.float32)
    fastconv.set_backend(backend)
    fastconv.seed(2)
    fused = CNN([Conv2D(1, 4, 3), ReLU(), MaxPool2D(2), Conv2D(4, 4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(4, 2)])
    fastconv.seed(2)
    plain = CNN([Conv2D(1, 4, 3), ReLU(), MaxPool2D(2), Conv2D(4, 4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(4, 2)],
                fuse=False)
    out = fused.forward(x)
    # an earlier pass left caches behind: they must not be used silently
    d_out = np.ones_like(out)
    with pytest.raises(RuntimeError, match="ran fused with its neighbours inside CNN.forward.*fuse=False"):
        _hand_backward(fused, d_out)
    # model.backward still works after the refused attempt
    d_fused = fused.backward(d_out)
    np.testing.assert_allclose(plain.forward(x), out, rtol=1e-5, atol=1e-6)
    d_hand = _hand_backward(plain, d_out)
    np.testing.assert_allclose(d_hand, d_fused, rtol=1e-4, atol=1e-5)
    for (n, _, ga), (_, _, gb) in zip(fused.parameters(), plain.parameters()):
        np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-5, err_msg=n)
    # a layer's own forward clears the mark: then its own backward is right again
    layer = fused.layers[0]
    y = layer.forward(x)
    assert layer.backward(np.ones_like(y)).shape == x.shape
