"""Where a training step of the seed network spends its time, layer by layer.

    python bench/profile_step.py [--backend c|numba|numpy] [--steps 100] [--batch 64]

Runs the model's own execution order (CNN._schedule: ReLU->MaxPool2D runs as
pool->ReLU) with a timer around every layer's forward and backward, the loss
and the optimizer step; prints milliseconds per step.
"""
import argparse
import collections
import time

import numpy as np

import fastconv
from fastconv.architectures import seed_cnn


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--backend", default=None)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--random", action="store_true",
                   help="random pixels instead of an MNIST batch (pooling is data-dependent)")
    args = p.parse_args()
    if args.backend:
        fastconv.set_backend(args.backend)
    fastconv.seed(0)
    model = seed_cnn()
    opt = fastconv.SGD(model, 0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = fastconv.SoftmaxCrossEntropy()
    if args.random:
        rng = np.random.default_rng(0)
        x, y = rng.random((args.batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, args.batch)
    else:
        images, labels, _, _ = fastconv.datasets.load_mnist(verbose=False)
        x, y = images[:args.batch], labels[:args.batch]
    times = collections.defaultdict(float)

    def timed(name, fn, *a):
        t = time.perf_counter()
        result = fn(*a)
        times[name] += time.perf_counter() - t
        return result

    order = model._schedule()

    def step():
        h = x
        for i, layer in enumerate(order):
            h = timed(f"forward  {i}: {type(layer).__name__}", layer.forward, h)
        timed("loss", loss_fn.forward, h, y)
        d = loss_fn.backward()
        for i in reversed(range(len(order))):
            layer = order[i]
            if i == 0:
                timed(f"backward {i}: {type(layer).__name__} (params only)", layer.backward_params_only, d)
            else:
                d = timed(f"backward {i}: {type(layer).__name__}", layer.backward, d)
        timed("optimizer step", opt.step)

    for _ in range(10):
        step()
    times.clear()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    total = (time.perf_counter() - t) / args.steps * 1e3
    print(f"backend {fastconv.get_backend()}, threads {fastconv.get_num_threads()}: {total:.2f} ms per step")
    for name, seconds in times.items():
        print(f"  {name:40s} {seconds / args.steps * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
