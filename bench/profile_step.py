"""Where a training step spends its time, layer by layer.

    python bench/profile_step.py [--net seed|NAME] [--backend c|numba|numpy] [--steps 100] [--batch 64]

--net: the seed network (fastconv.architectures.seed_cnn, on an MNIST batch), or
any network of bench/arch_specs.py (on one random N(0, 1) batch of its shape).

Runs the model's own execution order (CNN._schedule: ReLU->MaxPool2D runs as
pool->ReLU) with a timer around every layer's forward and backward, the loss
and the optimizer step; prints milliseconds per step.
"""
import argparse
import collections
import os
import sys
import time

import numpy as np

import fastconv
from fastconv.architectures import seed_cnn


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--net", default="seed")
    p.add_argument("--backend", default=None)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--random", action="store_true",
                   help="random pixels instead of an MNIST batch (pooling is data-dependent)")
    args = p.parse_args()
    if args.backend:
        fastconv.set_backend(args.backend)
    fastconv.seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, args.batch)
    if args.net != "seed":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from arch_specs import NETWORKS
        from arch_worker import fastconv_model

        shape, spec = NETWORKS[args.net]
        model, x = fastconv_model(spec), rng.standard_normal((args.batch, *shape)).astype(np.float32)
    else:
        model = seed_cnn()
        if args.random:
            x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
        else:
            images, labels, _, _ = fastconv.datasets.load_mnist(verbose=False)
            x, y = images[:args.batch], labels[:args.batch]
    opt = fastconv.SGD(model, 0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = fastconv.SoftmaxCrossEntropy()
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
            if i == 0 and hasattr(layer, "backward_params_only"):
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
