"""Whole training steps of issue 14's networks (bench/arch_specs.py) at batch
64 and 128: fastconv's fast backends in this process, PyTorch in a process
of its own (bench/arch_worker.py --serve; see bench/torch_worker.py for why),
each round STEPS_PER_ROUND steps of issue 14's loop.  Then the convolutions
of the CIFAR networks alone, in GFLOP/s next to this machine's large-SGEMM
GFLOP/s measured in the same run (extra_info).

For the alternating per-round ratios, peak memory and the geometric mean,
run ``python bench/architectures.py`` (docs/performance.md).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastconv
from conftest import check, need, set_group
from fastconv import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arch_worker  # noqa: E402
from arch_specs import NETWORKS, conv_layers  # noqa: E402

STEPS_PER_ROUND = 3
BATCHES = (64, 128)


@pytest.fixture(scope="module")
def torch_server():
    pytest.importorskip("torch")
    proc = subprocess.Popen([sys.executable, arch_worker.__file__, "--serve", "--threads",
                             str(fastconv.get_num_threads())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=fastconv._threads.user_environment())

    def steps(net, batch, k):
        proc.stdin.write(json.dumps({"net": net, "batch": batch, "steps": k}) + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    yield steps
    proc.stdin.close()
    proc.wait(timeout=60)


def _check_against_reference(model, x, y, backend):
    """One step's logits and gradients equal the NumPy reference's, same
    weights and the same dropout masks: a benchmark of a wrong answer is void."""
    results = []
    for name in ("numpy", backend):
        with fastconv.use_backend(name):
            for layer in model.layers:
                if isinstance(layer, fastconv.layers.Dropout):
                    layer.rng = np.random.default_rng(1)  # the same masks in both passes
            loss_fn = fastconv.SoftmaxCrossEntropy()
            logits = model.forward(x)
            loss_fn.forward(logits, y)
            model.backward(loss_fn.backward())
            results.append([logits.copy(), *(g.copy() for g in model.grads())])
    for got, want in zip(results[1], results[0]):
        check(got, want)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("net", sorted(NETWORKS))
@pytest.mark.parametrize("impl", ("c", "numba", "torch"))
def test_training_step(benchmark, impl, net, batch, request):
    set_group(benchmark, "architecture step", f"{net} batch {batch} x{STEPS_PER_ROUND}", impl)
    shape, spec = NETWORKS[net]
    xs, ys = arch_worker.data(shape, batch, "optimizer")
    x, y = xs[0], ys[0]
    if impl == "torch":
        steps = request.getfixturevalue("torch_server")
        steps(net, batch, 3)  # warm up
        benchmark.pedantic(lambda: steps(net, batch, STEPS_PER_ROUND), rounds=7, iterations=1)
        return
    need(impl)
    fastconv.seed(0)
    model = arch_worker.fastconv_model(spec)
    _check_against_reference(model, x[:8], y[:8], impl)
    loss_fn = fastconv.SoftmaxCrossEntropy()
    opt = fastconv.SGD(model, 0.01, momentum=0.9)

    def run():
        for _ in range(STEPS_PER_ROUND):
            loss_fn.forward(model.forward(x), y)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()

    with fastconv.use_backend(impl):
        run()  # warm up (Numba compiles, the autotuner decides)
        benchmark.pedantic(run, rounds=7, iterations=1)


@pytest.fixture(scope="module")
def sgemm_gflops():
    """This machine's large-SGEMM GFLOP/s (NumPy's BLAS, fastconv's thread count)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    c = a @ a
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.matmul(a, a, out=c)
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def _cifar_convs():
    seen = []
    for net in ("vgg_small", "resnet_small", "simple_cnn", "mobilenet_small"):
        for conv in conv_layers(net):
            if conv not in seen:
                seen.append(conv)
    return seen


@pytest.mark.parametrize("conv", _cifar_convs(), ids=lambda c: "{}-{}k{}s{}p{}g{}h{}".format(*c))
@pytest.mark.parametrize("impl", ("c", "numba", "torch"))
def test_convolution_gflops(benchmark, impl, conv, sgemm_gflops):
    cin, cout, k, stride, pad, groups, h = conv
    set_group(benchmark, "convolution fwd+bwd", f"64x{cin}x{h}x{h} k{k} s{stride} p{pad} {cin}->{cout} g{groups}", impl)
    torch = need(impl)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, cin, h, h), dtype=np.float32)
    w = rng.standard_normal((cout, cin // groups, k, k), dtype=np.float32) * np.float32(0.1)
    ref, ref_cache = F.conv2d(x, w, None, stride, pad, 1, groups, backend="numpy")
    d_out = rng.standard_normal(ref.shape, dtype=np.float32)
    ref_dx, ref_dw, _ = F.conv2d_backward(d_out, ref_cache)
    if impl == "torch":
        conv_t = torch.nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
        with torch.no_grad():
            conv_t.weight.copy_(torch.from_numpy(w))
        xt, gt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(d_out)

        def run():
            xt.grad = conv_t.weight.grad = None
            out = conv_t(xt)
            out.backward(gt)
            return out.detach().numpy(), xt.grad.numpy(), conv_t.weight.grad.numpy()
    else:
        def run():
            out, cache = F.conv2d(x, w, None, stride, pad, 1, groups, backend=impl)
            return (out, *F.conv2d_backward(d_out, cache)[:2])
    for got, want in zip(run(), (ref, ref_dx, ref_dw)):
        check(got, want)
    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    if benchmark.stats is None:  # --benchmark-disable: checked, not timed
        return
    flops = 3 * 2 * ref.size * (cin // groups) * k * k  # forward, input and weight gradients
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update(gflops=flops / seconds / 1e9, sgemm_gflops=sgemm_gflops,
                                fraction_of_sgemm=flops / seconds / 1e9 / sgemm_gflops)
