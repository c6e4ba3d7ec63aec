"""1 -> 2 threads on the large-shape kernels, in the benchmark suite.

The measurement is thread_scaling.py's: single calls at 1 and 2 threads,
alternating (the order swapped every pair), outputs preallocated, next to the
memory probes (a copy and a sum over 256 MB) timed the same way in the same
run (each timed call after an untimed one at the same count: see
thread_scaling.py).  Each benchmark round is one pair of timed calls; extra_info["thread_scaling"]
holds both medians and the median per-pair speed-up, which report.py lists in
a table of its own.  Before timing, a kernel's 1- and 2-thread results must be
identical (every kernel writes disjoint memory) and equal the NumPy reference.
"""
import numpy as np
import pytest

import fastconv
from conftest import check, need, set_group
from fastconv._threads import max_threads
from thread_scaling import KERNELS, PROBES, kernels, memory_probes, set_threads, time_pair

PAIRS = 15

pytestmark = pytest.mark.skipif(max_threads() < 2, reason="needs 2 threads")


@pytest.fixture(scope="module")
def built():
    """{backend: kernels(backend)}, filled on first use (the arrays take ~0.7 GB per backend)."""
    return {}


def _arrays(result):
    """Copies of the arrays a kernel call returned (BatchNorm forward also returns its cache)."""
    items = result if isinstance(result, tuple) else (result,)
    return [np.array(a) for a in items if isinstance(a, np.ndarray)]


def _time_pairs(benchmark, impl, fn):
    times = {1: [], 2: []}
    default = fastconv.get_num_threads()
    try:
        benchmark.pedantic(time_pair, args=(fn, times), rounds=PAIRS, iterations=1)
    finally:
        set_threads(default)
    one, two = np.array(times[1]), np.array(times[2])
    benchmark.extra_info["thread_scaling"] = {
        "impl": impl, "one": float(np.median(one)), "two": float(np.median(two)),
        "speedup": float(np.median(one / two))}


@pytest.mark.parametrize("name", PROBES)
def test_memory_probe(benchmark, name):
    set_group(benchmark, f"1 vs 2 threads: {name}", "", "numba")
    _time_pairs(benchmark, "numba", memory_probes()[name])


@pytest.mark.parametrize("impl", ["c", "numba"])
@pytest.mark.parametrize("name", KERNELS)
def test_kernel(benchmark, built, impl, name):
    need(impl)
    set_group(benchmark, f"1 vs 2 threads: {name}", "128x64x32x32", impl)
    for backend in (impl, "numpy"):
        if backend not in built:
            built[backend] = kernels(backend)
    fn = built[impl][name]
    default = fastconv.get_num_threads()
    try:
        set_threads(1)
        at_one = _arrays(fn())
        set_threads(2)
        at_two = _arrays(fn())
    finally:
        set_threads(default)
    for a, b in zip(at_one, at_two):
        np.testing.assert_array_equal(a, b)  # disjoint writes: bit-identical at any thread count
    for a, ref in zip(at_one, _arrays(built["numpy"][name]())):
        check(a, ref)
    _time_pairs(benchmark, impl, fn)
