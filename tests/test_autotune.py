"""The fused conv+pool+ReLU stage chooses its path by measurement (per
machine and shape), remembers the choice, and can be pinned; both paths give
the same results."""
import json

import numpy as np
import pytest

import fastconv
from fastconv import CNN, Conv2D, Dense, Flatten, MaxPool2D, ReLU, _autotune
from fastconv.layers.fused import ConvPoolReLU


def _model():
    fastconv.seed(4)
    return CNN([Conv2D(1, 6, 3), ReLU(), MaxPool2D(2), Conv2D(6, 8, 3), ReLU(), MaxPool2D(2), Flatten(),
                Dense(8 * 5 * 5, 10)])


@pytest.fixture
def c_backend():
    if "c" not in fastconv.available_backends():
        pytest.skip("the fused stage runs on the C backend")
    fastconv.set_backend("c")


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _autotune.forget()
    yield tmp_path
    _autotune.forget()


def _step(model, x):
    out = model.forward(x)
    d_x = model.backward(np.ones_like(out))
    return out, d_x, [g.copy() for _, _, g in model.parameters()]


def test_both_paths_give_the_same_results(c_backend, monkeypatch):
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    results = {}
    for setting, path in (("on", "fused"), ("off", "plain"), ("sparse", "sparse")):
        monkeypatch.setenv(_autotune.ENV_MODE, setting)
        model = _model()
        stages = [s for s in model._schedule() if isinstance(s, ConvPoolReLU)]
        assert stages, "the seed-shaped network has fused stages on the C backend"
        results[setting] = _step(model, x)
        assert {s._path for s in stages} == {path}
    out_b, dx_b, g_b = results["off"]
    for setting in ("on", "sparse"):
        out_a, dx_a, g_a = results[setting]
        np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dx_a, dx_b, rtol=1e-4, atol=1e-5)
        for a, b in zip(g_a, g_b):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_auto_measures_once_remembers_and_leaves_no_trace(c_backend, monkeypatch, own_cache):
    monkeypatch.setenv(_autotune.ENV_MODE, "auto")
    x = np.random.default_rng(1).random((4, 1, 28, 28)).astype(np.float32)
    model = _model()
    reference = CNN(_model().layers, fuse=False)
    out, d_x, grads = _step(model, x)
    ref_out, ref_dx, ref_grads = _step(reference, x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)  # the measurement changed nothing
    for a, b in zip(grads, ref_grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    files = list((own_cache / "fastconv" / "autotune").glob("*.json"))
    assert len(files) == 1
    decisions = json.loads(files[0].read_text())
    assert len(decisions) == 2 and set(decisions.values()) <= {"fused", "plain", "sparse"}
    # a new process (simulated) reads the file instead of measuring again
    from fastconv.backends import c_backend

    _autotune.forget()
    key, stored = next(iter(decisions.items()))
    boom = {"fused": lambda: pytest.fail("measured again"), "plain": lambda: pytest.fail("measured again")}
    assert _autotune.choose(key, boom, level=c_backend.TUNING_ID) == stored


def test_choices_are_remembered_per_build_of_the_kernels(c_backend, tmp_path):
    """A rebuilt extension (new kernels, same version) must measure again."""
    from fastconv.backends import c_backend

    assert c_backend.TUNING_ID.startswith(c_backend.ISA_LEVEL + "-")
    one, two = tmp_path / "a.so", tmp_path / "b.so"
    one.write_bytes(b"kernels 1")
    two.write_bytes(b"kernels 2")
    assert c_backend._tuning_id("v4", one) == c_backend._tuning_id("v4", one)
    assert c_backend._tuning_id("v4", one) != c_backend._tuning_id("v4", two)
    assert c_backend._tuning_id("v4", one) != c_backend._tuning_id("v3", one)


def test_choose_keeps_the_faster_and_a_bad_setting_is_refused(monkeypatch, own_cache):
    import time

    calls = []
    slow = lambda: (calls.append("slow"), time.sleep(0.01))  # noqa: E731
    fast = lambda: calls.append("fast")  # noqa: E731
    assert _autotune.choose("k", {"slow": slow, "fast": fast}) == "fast"
    # a warm-up and two agreeing rounds of 5 each, once: the second call remembers
    assert _autotune.choose("k", {"slow": slow, "fast": fast}) == "fast" and len(calls) == 22
    # a path fast only while the other is disturbed (its first round) does not win
    runs = {"steady": 0, "transient": 0}

    def steady():
        runs["steady"] += 1
        time.sleep(0.002 if runs["steady"] > 6 else 0.02)  # other work slows it during the first round

    def transient():
        runs["transient"] += 1
        time.sleep(0.006)

    assert _autotune.choose("k2", {"steady": steady, "transient": transient}) == "steady"
    assert runs == {"steady": 16, "transient": 16}  # round 1 to transient (one round alone: the wrong
    #                                                 choice), rounds 2 and 3 to steady
    monkeypatch.setenv(_autotune.ENV_MODE, "sometimes")
    with pytest.raises(ValueError, match="FASTCONV_FUSED_STAGES must be auto, on, off or sparse"):
        _autotune.mode()
