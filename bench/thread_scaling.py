"""Speed-up of the large-shape kernels from 1 to 2 threads (median of 20).

    python bench/thread_scaling.py [--backend c|numba]
"""
import argparse
import time

import numpy as np

import fastconv
import fastconv.functional as F


def median_ms(fn, repeat=20):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="c")
    b = p.parse_args().backend
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 64, 32, 32), dtype=np.float32)
    col = F.im2col(x, 3, 3, padding=1)
    pooled, idx = F.max_pool2d(x, 2)
    g, bt, rm, rv = (np.ones(64, np.float32), np.zeros(64, np.float32), np.zeros(64, np.float32),
                     np.ones(64, np.float32))
    _, cache = F.batch_norm_forward(x, g, bt, rm, rv)
    ops = {
        "im2col(out=)": lambda: F.im2col(x, 3, 3, padding=1, out=col, backend=b),
        "col2im(out=)": lambda: F.col2im(col, x.shape, 3, 3, padding=1, out=x, backend=b),
        "max_pool2d": lambda: F.max_pool2d(x, 2, backend=b),
        "max_pool2d_backward": lambda: F.max_pool2d_backward(pooled, idx, x.shape, backend=b),
        "batch_norm_forward": lambda: F.batch_norm_forward(x, g, bt, rm, rv, backend=b),
        "batch_norm_backward": lambda: F.batch_norm_backward(x, cache, backend=b),
    }
    print(f"backend {b}, shape (128, 64, 32, 32), float32")
    print(f"{'kernel':22s} {'1 thread':>10s} {'2 threads':>10s} {'speed-up':>9s}")
    for name, fn in ops.items():
        fastconv.set_num_threads(1)
        one = median_ms(fn)
        fastconv.set_num_threads(2)
        two = median_ms(fn)
        print(f"{name:22s} {one:8.2f} ms {two:8.2f} ms {one / two:8.2f}x")


if __name__ == "__main__":
    main()
