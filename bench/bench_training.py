"""Whole-network speed: a Conv2D forward+backward, one training step and a
fraction of an epoch of the guides' MNIST network, for every backend and
PyTorch (same threads, float32, batch 64, SGD with momentum).

Each is validated first: fastconv backends against the NumPy reference
backend, PyTorch against fastconv from the same weights."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import SGD, Conv2D, SoftmaxCrossEntropy
from fastconv.architectures import seed_cnn
from conftest import check, need, set_group

IMPLS = ("numpy", "numba", "c", "torch")
BATCH = 64


def torch_seed_cnn(torch, model):
    """The same network in PyTorch, with fastconv model's weights."""
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
    ours = [l for l in model.layers if hasattr(l, "weights")]
    theirs = [m for m in net if hasattr(m, "weight")]
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            w = a.weights if a.weights.ndim == 4 else a.weights.T  # Dense stores (in, out)
            b.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            b.bias.copy_(torch.from_numpy(a.bias))
    return net


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((BATCH, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, BATCH)


def _fastconv_step(backend, seed=0):
    fastconv.seed(seed)
    model = seed_cnn()
    for layer in model.layers:
        layer.backend = backend
    opt = SGD(model, lr=0.01, momentum=0.9)
    loss_fn = SoftmaxCrossEntropy()

    def step(xb, yb):
        loss = loss_fn.forward(model.forward(xb), yb)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        return loss

    return model, step


def _torch_step(torch, model):
    net = torch_seed_cnn(torch, model)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        opt.zero_grad()
        loss = loss_fn(net(torch.from_numpy(xb)), torch.from_numpy(yb))
        loss.backward()
        opt.step()
        return loss.item()

    return net, step


@pytest.mark.parametrize("impl", IMPLS)
def test_conv2d_forward_backward(benchmark, impl):
    """(128, 64, 32, 32), 3x3, padding 1, 64 -> 64 channels."""
    set_group(benchmark, "Conv2D fwd+bwd", "128x64x32x32 k3 p1 64->64", impl)
    torch = need(impl)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 64, 32, 32)).astype(np.float32)
    g = rng.standard_normal((128, 64, 32, 32)).astype(np.float32)
    ref = Conv2D(64, 64, 3, padding=1, rng=0, backend="numpy")
    ref_out, ref_dx = ref.forward(x), ref.backward(g)
    if impl == "torch":
        conv = torch.nn.Conv2d(64, 64, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(ref.weights))
            conv.bias.zero_()
        xt, gt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

        def run():
            xt.grad = None
            out = conv(xt)
            out.backward(gt)
            return out.detach().numpy(), xt.grad.numpy()
    else:
        layer = Conv2D(64, 64, 3, padding=1, rng=0, backend=impl)

        def run():
            return layer.forward(x), layer.backward(g)
    out, dx = run()
    check(out, ref_out)
    check(dx, ref_dx)
    benchmark(run)


@pytest.mark.parametrize("impl", IMPLS)
def test_training_step(benchmark, impl):
    """One SGD step of the seed network on a batch of 64."""
    set_group(benchmark, "train step", "seed CNN, batch 64", impl)
    torch = need(impl)
    xb, yb = _batch()
    ref_model, ref_step = _fastconv_step("numpy")
    ref_step(xb, yb)
    model, step = _fastconv_step("numpy" if impl == "torch" else impl)
    if impl == "torch":
        net, step = _torch_step(torch, model)
        step(xb, yb)
        theirs = [p.detach().numpy() for p in net.parameters()]
        ours = [v if v.ndim != 2 else v.T for v in ref_model.params()]
    else:
        step(xb, yb)
        theirs, ours = model.params(), ref_model.params()
    for a, b in zip(theirs, ours):  # the same step from the same weights
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    benchmark(step, xb, yb)


@pytest.fixture(scope="module")
def mnist_slice():
    x, y, _, _ = fastconv.datasets.load_mnist(verbose=False)
    return x[:6400], y[:6400]


class TorchWorker:
    """PyTorch's training steps in a clean interpreter (bench/torch_worker.py):
    with fastconv imported, PyTorch would share the OpenMP spin count it sets
    (GOMP_SPINCOUNT).  The worker gets the user's environment (without the
    policy fastconv set), the data once, and per run fastconv's initial weights."""

    def __init__(self, x, y, threads, tmp_path):
        env = fastconv._threads.user_environment()
        self.tmp = tmp_path
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("torch_worker.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        np.savez(tmp_path / "data.npz", x=x, y=y)
        self._ask({"data": str(tmp_path / "data.npz")})
        self._ask({"threads": threads})

    def _ask(self, request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch_worker.py exited (code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def weights_of(self, model):
        """Save a fastconv seed network's weights for the next fraction()."""
        layers = [layer for layer in model.layers if hasattr(layer, "weights")]
        arrays = {f"w{k}": layer.weights for k, layer in enumerate(layers)}
        arrays.update({f"b{k}": layer.bias for k, layer in enumerate(layers)})
        np.savez(self.tmp / "weights.npz", **arrays)

    def fraction(self):
        """One pass over the data from the saved weights: (seconds, losses)."""
        reply = self._ask({"fraction": str(self.tmp / "weights.npz"), "batch": BATCH})
        return reply["seconds"], reply["losses"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def torch_worker(mnist_slice, tmp_path_factory):
    pytest.importorskip("torch")
    worker = TorchWorker(*mnist_slice, fastconv.get_num_threads(), tmp_path_factory.mktemp("torch_worker"))
    yield worker
    worker.close()


def _fresh_step(backend):
    """A new seed network's training step on ``backend``."""
    return _fastconv_step(backend)[1]


def _run_fraction(step, x, y):
    """100 steps; (mean loss of the first 10, of the last 10)."""
    losses = [step(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    return np.mean(losses[:10]), np.mean(losses[-10:])


@pytest.mark.parametrize("impl", ("numba", "c", "torch"))
def test_epoch_fraction(benchmark, impl, mnist_slice, request):
    """100 steps (6 400 real MNIST images) from a fresh model; x 9.375 = one epoch.
    PyTorch runs in its own process (TorchWorker), from the same initial weights."""
    set_group(benchmark, "epoch fraction", "seed CNN, 100 steps of 64", impl)
    need(impl)
    x, y = mnist_slice
    if impl == "torch":
        worker = request.getfixturevalue("torch_worker")

        def setup():
            worker.weights_of(_fastconv_step("c")[0])
            return (), {}

        def run():
            losses = worker.fraction()[1]
            return np.mean(losses[:10]), np.mean(losses[-10:])

        first, last = run(*setup()[0])
        assert last < 0.5 * first, (first, last)  # it trains
        benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
        return
    first, last = _run_fraction(_fresh_step(impl), x, y)
    assert last < 0.5 * first, (first, last)  # it trains
    benchmark.pedantic(lambda step: _run_fraction(step, x, y), setup=lambda: ((_fresh_step(impl),), {}),
                       rounds=3, iterations=1)


def test_epoch_fraction_interleaved(benchmark, mnist_slice, request):
    """The same epoch fraction for C, Numba and PyTorch in turn, 5 rounds:
    this VM drifts by up to 50 % within minutes, and the separate benchmarks
    above run a minute apart, so these ratios are the ones to trust.  PyTorch
    runs in its own process (TorchWorker).  The per-implementation medians go
    to extra_info["medians"] (report.py lists them as their own group); the
    timing itself is of one whole round."""
    set_group(benchmark, "epoch fraction interleaved", "seed CNN, 100 steps of 64", "c+numba+torch")
    try:
        import torch  # noqa: F401  (only to know whether the worker can run)
        worker = request.getfixturevalue("torch_worker")
    except ImportError:
        worker = None
    impls = [i for i in ("c", "numba") if i in fastconv.available_backends()] + (["torch"] if worker else [])
    x, y = mnist_slice
    times = {impl: [] for impl in impls}

    def one_round():
        for impl in impls:
            if impl == "torch":
                worker.weights_of(_fastconv_step("c")[0])
                seconds, losses = worker.fraction()
                first, last = np.mean(losses[:10]), np.mean(losses[-10:])
            else:
                step = _fresh_step(impl)
                start = time.perf_counter()
                first, last = _run_fraction(step, x, y)
                seconds = time.perf_counter() - start
            times[impl].append(seconds)
            assert last < 0.5 * first, (impl, first, last)  # it trains

    benchmark.pedantic(one_round, rounds=5, iterations=1)
    benchmark.extra_info["medians"] = {impl: float(np.median(t)) for impl, t in times.items()}
