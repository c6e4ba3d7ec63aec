"""Speed-up of the large-shape kernels from 1 to 2 threads, next to the
speed-up of plain memory traffic measured the same way in the same run.

A kernel that must move B bytes cannot run faster than the memory system
moves B bytes, so on a machine whose two cores together draw little more
bandwidth than one core alone, no memory-bound kernel can scale 2x.  The
probes (a copy and a sum over 256 MB, Numba prange loops) show that ceiling
for this run; read each kernel's speed-up against them.

Timing: each pair of runs times one call at 1 thread and one at 2 (the order
swapped every pair, so drift and order hit both alike); the speed-up is the
median of the per-pair ratios, which a shared machine's slow phases affect
far less than a ratio of two separate medians.  Each timed call follows an
untimed one at the same count: the second thread sleeps through a 1-thread
call, and waking it costs 0.1-0.5 ms on this VM, which a kernel called in a
loop pays once.  Outputs are preallocated (``out=``): the OS zeroes every
page of a fresh array on first touch, ~4 ms for 33 MB here on one core
whatever the thread count (arrays over 32 MiB are always fresh: glibc maps
them anew on every allocation).

    python bench/thread_scaling.py [--backend c|numba] [--pairs 30]
"""
import argparse
import time

import numba
import numpy as np

import fastconv
import fastconv.functional as F


@numba.njit(parallel=True)
def _copy_probe(src, dst):
    for i in numba.prange(src.size):
        dst[i] = src[i]


@numba.njit(parallel=True, fastmath=True)  # fastmath: lets LLVM vectorise the sum
def _sum_probe(src):
    total = 0.0
    for i in numba.prange(src.size):
        total += src[i]
    return total


def set_threads(n):
    fastconv.set_num_threads(n)
    numba.set_num_threads(n)  # for the probes: fastconv sets Numba's count only once its backend is loaded


def time_pair(fn, times):
    """Time one call at each thread count into times[1] and times[2], the
    order swapped every pair; each timed call follows an untimed one at the
    same count (it wakes the pool that slept through the other count's call)."""
    for threads in (1, 2) if len(times[1]) % 2 == 0 else (2, 1):
        set_threads(threads)
        fn()
        start = time.perf_counter()
        fn()
        times[threads].append(time.perf_counter() - start)


def paired_scaling(fn, pairs):
    """(median ms at 1 thread, median ms at 2 threads, median of per-pair
    1-thread/2-thread ratios, ratio of the two fastest runs)."""
    times = {1: [], 2: []}
    for _ in range(pairs):
        time_pair(fn, times)
    one, two = np.array(times[1]), np.array(times[2])
    return 1e3 * np.median(one), 1e3 * np.median(two), float(np.median(one / two)), one.min() / two.min()


PROBES = ("memory probe: copy 256 MB", "memory probe: sum 256 MB")
KERNELS = ("im2col(out=)", "col2im(out=)", "max_pool2d(out=)", "max_pool2d_backward(out=)",
           "batch_norm_forward(out=)", "batch_norm_backward(out=)")


def memory_probes():
    """{name in PROBES: callable}"""
    src = np.ones(64 * 2**20, dtype=np.float32)  # 256 MB: far beyond any cache
    dst = np.empty_like(src)
    return dict(zip(PROBES, (lambda: _copy_probe(src, dst), lambda: _sum_probe(src))))


def kernels(backend):
    """{name in KERNELS: callable returning its result} on (128, 64, 32, 32), float32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 64, 32, 32), dtype=np.float32)
    col = F.im2col(x, 3, 3, padding=1)
    d_col = rng.standard_normal(col.shape, dtype=np.float32)
    x_back = np.empty_like(x)
    pooled, idx = F.max_pool2d(x, 2)
    pooled_out, idx_out = np.empty_like(pooled), np.empty_like(idx)
    d_x = np.empty_like(x)
    g, bt, rm, rv = (np.ones(64, np.float32), np.zeros(64, np.float32), np.zeros(64, np.float32),
                     np.ones(64, np.float32))
    bn_out, cache = F.batch_norm_forward(x, g, bt, rm, rv)
    d_bn = rng.standard_normal(x.shape, dtype=np.float32)
    b = backend
    return dict(zip(KERNELS, (
        lambda: F.im2col(x, 3, 3, padding=1, out=col, backend=b),
        lambda: F.col2im(d_col, x.shape, 3, 3, padding=1, out=x_back, backend=b),
        lambda: F.max_pool2d(x, 2, out=pooled_out, out_indices=idx_out, backend=b),
        lambda: F.max_pool2d_backward(pooled, idx, x.shape, out=d_x, backend=b),
        lambda: F.batch_norm_forward(x, g, bt, rm, rv, out=bn_out, backend=b),
        lambda: F.batch_norm_backward(d_bn, cache, out=d_x, backend=b),
    )))


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--backend", default="c")
    p.add_argument("--pairs", type=int, default=30, help="paired runs per row (default 30)")
    args = p.parse_args()
    print(f"backend {args.backend}, shape (128, 64, 32, 32), float32, {args.pairs} pairs per row")
    print(f"{'':28s} {'1 thread':>10s} {'2 threads':>10s} {'speed-up':>9s} {'fastest':>8s}")
    for name, fn in {**memory_probes(), **kernels(args.backend)}.items():
        one, two, ratio, best = paired_scaling(fn, args.pairs)
        print(f"{name:28s} {one:7.2f} ms {two:7.2f} ms {ratio:8.2f}x {best:7.2f}x")
    print("speed-up: median of per-pair ratios; fastest: fastest 1-thread run / fastest 2-thread run")


if __name__ == "__main__":
    main()
