"""One library's training steps on one network, in a process of its own.

    python bench/arch_worker.py --lib fastconv|torch --net NAME [--batch 64]
                                [--steps 30] [--loop optimizer|guides] [--threads 2]
                                [--data synthetic|mnist]

Prints one JSON line: {"step_ms": [...], "peak_rss_mb": ..., "loss": ...}.
``--serve`` instead answers requests on stdin, one JSON object per line
({"net": ..., "batch": ..., "steps": k}: k more steps of that network, built
on first use), for bench/bench_architectures.py to time PyTorch outside
its own process.
The loop is issue 14's: SoftmaxCrossEntropy, SGD(lr 0.01, momentum 0.9),
``backward(..., input_grad=False)``, inputs with mean 0 and std 1;
``--loop guides`` is the guides' own loop ([0, 1] inputs, a NumPy softmax
gradient, ``backward``, ``update_params(0.01)``; PyTorch runs its usual loop
on the same inputs).  The peak
resident set is the whole process's (``ru_maxrss``), so each run is a fresh
process.  With --lib torch this file never imports fastconv.

Data: ``synthetic`` (default) is one fixed random batch (normal; uniform
[0, 1] for the guides' loop).  ``mnist``: for the 1x28x28 networks, a fresh
batch of MNIST training images per step (the same sequence for both
libraries), normalised to mean 0 and std 1, or the raw [0, 1] pixels for the
guides' loop; other shapes stay synthetic.  Both libraries' step times
depend on the data (docs/performance.md, seventh session), so results say
which was used.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from arch_specs import NETWORKS  # noqa: E402


def fastconv_model(spec):
    import fastconv
    from fastconv.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D,
                                 MaxPool2D, ReLU, ResidualBlock)

    def layer(kind, *a):
        return {
            "conv": lambda: Conv2D(a[0], a[1], a[2], stride=a[3], padding=a[4], bias=a[5]),
            "dwconv": lambda: Conv2D(a[0], a[0], a[1], stride=a[2], padding=a[3], groups=a[0], bias=False),
            "bn": lambda: BatchNorm2D(a[0]), "bn1d": lambda: BatchNorm1D(a[0]), "relu": ReLU,
            "pool": lambda: MaxPool2D(a[0]), "gap": GlobalAvgPool2D, "flatten": Flatten,
            "dense": lambda: Dense(a[0], a[1], bias=a[2]), "dropout": lambda: Dropout(a[0]),
            "block": lambda: ResidualBlock(a[0], a[1], stride=a[2]),
        }[kind]()

    return fastconv.CNN([layer(*entry) for entry in spec])


def torch_model(spec):
    import torch
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.main = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                      nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                             if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.main(x) + self.shortcut(x))

    def layer(kind, *a):
        return {
            "conv": lambda: nn.Conv2d(a[0], a[1], a[2], a[3], a[4], bias=a[5]),
            "dwconv": lambda: nn.Conv2d(a[0], a[0], a[1], a[2], a[3], groups=a[0], bias=False),
            "bn": lambda: nn.BatchNorm2d(a[0]), "bn1d": lambda: nn.BatchNorm1d(a[0]), "relu": nn.ReLU,
            "pool": lambda: nn.MaxPool2d(a[0]), "gap": lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            "flatten": nn.Flatten, "dense": lambda: nn.Linear(a[0], a[1], bias=a[2]), "dropout": lambda: nn.Dropout(a[0]),
            "block": lambda: BasicBlock(*a),
        }[kind]()

    return nn.Sequential(*[layer(*entry) for entry in spec])


MNIST_BATCHES = 64  # distinct batches a run cycles through


def data(shape, batch, loop, seed=0, source="synthetic"):
    """(xs, ys): batches (K, batch, *shape) and labels (K, batch) that a run
    cycles through, one per step; K = 1 for synthetic data."""
    rng = np.random.default_rng(seed)
    if source == "mnist" and tuple(shape) == (1, 28, 28):
        x_train, y_train, mean, std = _mnist_train()
        idx = rng.integers(0, len(x_train), (MNIST_BATCHES, batch))
        xs = x_train[idx]
        if loop != "guides":  # the guides feed [0, 1] pixels
            xs = ((xs - mean) / std).astype(np.float32)
        return np.ascontiguousarray(xs), y_train[idx].astype(np.int64)
    if loop == "guides":  # the guides feed pixels in [0, 1]
        x = rng.random((batch, *shape), dtype=np.float32)
    else:
        x = rng.standard_normal((batch, *shape), dtype=np.float32)
    return x[None], rng.integers(0, 10, batch)[None]


def _mnist_train():
    """MNIST's training images (float32 in [0, 1]), labels, and the mean and
    std fastconv's networks normalise with -- through fastconv in a child
    process, as this one must not import it (PyTorch's side)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mnist.npz")
        code = ("import sys, numpy as np; from fastconv.datasets import load_mnist; "
                "from fastconv.architectures import MNIST_MEAN, MNIST_STD; "
                "x, y, _, _ = load_mnist(verbose=False); "
                "np.savez(sys.argv[1], x=x, y=y, mean=MNIST_MEAN, std=MNIST_STD)")
        subprocess.run([sys.executable, "-c", code, path], check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with np.load(path) as f:
            return f["x"], f["y"], float(f["mean"]), float(f["std"])


def run_fastconv(spec, xs, ys, steps, loop, threads):
    import fastconv

    fastconv.set_num_threads(threads)
    fastconv.seed(0)
    model = fastconv_model(spec)
    loss_fn = fastconv.SoftmaxCrossEntropy()
    opt = fastconv.SGD(model, 0.01, momentum=0.9)
    times, loss = [], None
    for k in range(steps):
        x, y = xs[k % len(xs)], ys[k % len(ys)]
        start = time.perf_counter()
        if loop == "guides":
            logits = model.forward(x)
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
            p[np.arange(len(y)), y] -= 1
            model.backward(p / len(y))
            model.update_params(0.01)
        else:
            loss = loss_fn.forward(model.forward(x), y)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
        times.append(time.perf_counter() - start)
    return times, float(loss)


def torch_stepper(spec, xs, ys, threads):
    """A function running k training steps of a fresh PyTorch model: (times, loss)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_model(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    xts, yts = [torch.from_numpy(x) for x in xs], [torch.from_numpy(y) for y in ys]
    done = 0  # steps run so far: the next batch

    def steps(k):
        nonlocal done
        times, loss = [], None
        for _ in range(k):
            xt, yt = xts[done % len(xts)], yts[done % len(yts)]
            done += 1
            start = time.perf_counter()
            opt.zero_grad()
            loss = loss_fn(model(xt), yt)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        return times, float(loss)

    return steps


def serve(threads):
    steppers = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["net"], int(request["batch"]))
        if key not in steppers:
            shape, spec = NETWORKS[key[0]]
            steppers[key] = torch_stepper(spec, *data(shape, key[1], "optimizer"), threads)
        times, loss = steppers[key](int(request["steps"]))
        print(json.dumps({"step_ms": [t * 1e3 for t in times], "loss": loss}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lib", choices=("fastconv", "torch"))
    p.add_argument("--net", choices=sorted(NETWORKS))
    p.add_argument("--serve", action="store_true", help="PyTorch steps on request (stdin/stdout JSON lines)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--loop", choices=("optimizer", "guides"), default="optimizer")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", choices=("synthetic", "mnist"), default="synthetic")
    args = p.parse_args()
    if args.serve:
        return serve(args.threads)
    if not (args.lib and args.net):
        p.error("--lib and --net are required (or --serve)")
    shape, spec = NETWORKS[args.net]
    xs, ys = data(shape, args.batch, args.loop, source=args.data)
    if args.lib == "fastconv":
        times, loss = run_fastconv(spec, xs, ys, args.warmup + args.steps, args.loop, args.threads)
    else:
        times, loss = torch_stepper(spec, xs, ys, args.threads)(args.warmup + args.steps)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"step_ms": [t * 1e3 for t in times[args.warmup:]], "peak_rss_mb": rss, "loss": loss}))


if __name__ == "__main__":
    main()
