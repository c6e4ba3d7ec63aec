"""Speed-up of the large-shape kernels from 1 to 2 threads (medians of 30
runs each, in alternating blocks).  Outputs are preallocated (``out=``): a fresh 33 MB
array costs page faults in the kernel of the OS, which do not scale.

    python bench/thread_scaling.py [--backend c|numba]
"""
import argparse
import time

import numpy as np

import fastconv
import fastconv.functional as F


def scaling(fn, blocks=6, runs=5):
    """Median ms at 1 and at 2 threads over alternating blocks of runs, so a
    drift of this shared machine hits both alike.  The first run of each
    block is not counted: it pays for waking the other core and warming its
    cache, which a training loop pays once, not per call."""
    times = {1: [], 2: []}
    for _ in range(blocks):
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            fn()
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                times[threads].append(time.perf_counter() - t)
    return 1e3 * float(np.median(times[1])), 1e3 * float(np.median(times[2]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="c")
    b = p.parse_args().backend
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 64, 32, 32), dtype=np.float32)
    col = F.im2col(x, 3, 3, padding=1)
    pooled, idx = F.max_pool2d(x, 2)
    d_x = np.empty_like(x)
    g, bt, rm, rv = (np.ones(64, np.float32), np.zeros(64, np.float32), np.zeros(64, np.float32),
                     np.ones(64, np.float32))
    _, cache = F.batch_norm_forward(x, g, bt, rm, rv)
    ops = {
        "im2col(out=)": lambda: F.im2col(x, 3, 3, padding=1, out=col, backend=b),
        "col2im(out=)": lambda: F.col2im(col, x.shape, 3, 3, padding=1, out=x, backend=b),
        "max_pool2d": lambda: F.max_pool2d(x, 2, backend=b),
        "max_pool2d_backward(out=)": lambda: F.max_pool2d_backward(pooled, idx, x.shape, out=d_x, backend=b),
        "batch_norm_forward": lambda: F.batch_norm_forward(x, g, bt, rm, rv, backend=b),
        "batch_norm_backward": lambda: F.batch_norm_backward(x, cache, backend=b),
    }
    print(f"backend {b}, shape (128, 64, 32, 32), float32")
    print(f"{'kernel':26s} {'1 thread':>10s} {'2 threads':>10s} {'speed-up':>9s}")
    for name, fn in ops.items():
        one, two = scaling(fn)
        print(f"{name:26s} {one:8.2f} ms {two:8.2f} ms {one / two:8.2f}x")


if __name__ == "__main__":
    main()
