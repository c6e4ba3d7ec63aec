"""Shared pieces of the pytest-benchmark suite.

Every benchmark in a group times one operation on one shape, by each backend,
by PyTorch where it is importable, and by ``np.copyto`` of the bytes the
operation must move (the copy roofline).  A result is checked against the NumPy
reference before it is timed, and a warm-up call keeps Numba's compile out of
the timings.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.backends import BACKEND_NAMES, BackendUnavailableError, load

IMPLS = (*BACKEND_NAMES, "torch", "copy")
# "<backend>+out": the same call writing into a preallocated ``out=`` buffer,
# as a training loop that reuses its buffers does (no fresh pages to fault in).
OUT_IMPLS = ("numba+out", "c+out")
TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-5), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}


def pytest_report_header(config):
    return (f"fastconv {fastconv.__version__}: backends={fastconv.available_backends()} "
            f"threads={fastconv.get_num_threads()} torch={_torch_version()}")


def _torch_version():
    try:
        import torch
    except ImportError:
        return "not installed"
    return torch.__version__


@pytest.fixture(scope="session", autouse=True)
def _same_threads_everywhere():
    """fastconv and torch on the same number of threads."""
    n = fastconv.get_num_threads()
    fastconv.set_num_threads(n)  # also pins BLAS
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def need(impl: str):
    """Skip unless ``impl`` can run here; return torch for "torch"."""
    if impl == "torch":
        return pytest.importorskip("torch")
    name = impl.split("+")[0]
    if name in BACKEND_NAMES:
        try:
            load(name)
        except BackendUnavailableError as exc:
            pytest.skip(str(exc))
    return None


def check(actual, expected):
    """Validate a result before timing it: a benchmark of a wrong answer is void."""
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.dtype.kind in "iu":  # indices: exact
        return np.testing.assert_array_equal(actual, expected)
    tol = dict(TOL[np.dtype(expected.dtype)])
    # reductions (BatchNorm's d_gamma sums ~1e5 terms, PyTorch in float32):
    # absolute error scales with the largest entry, not with each entry
    tol["atol"] *= max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, **tol)


def copy_roofline(benchmark, bytes_read: int, bytes_written: int, dtype=np.float32):
    """Time np.copyto of (read + written) / 2 bytes: a copy reads and writes
    the same amount, so this moves as many bytes as the kernel must."""
    count = (bytes_read + bytes_written) // 2 // np.dtype(dtype).itemsize
    src = np.random.default_rng(0).standard_normal(count).astype(dtype)
    dst = np.empty_like(src)
    benchmark.extra_info["bytes_moved"] = bytes_read + bytes_written
    benchmark(np.copyto, dst, src)
    np.testing.assert_array_equal(dst, src)


def set_group(benchmark, op: str, shape_id: str, impl: str):
    benchmark.group = f"{op} {shape_id}"
    benchmark.extra_info.update(op=op, shape=shape_id, impl=impl)


def run_case(benchmark, impl, op, shape_id, *, expected, call, out_call=None, torch_call=None,
             torch_result=None, bytes_read, bytes_written, dtype=np.float32):
    """One benchmark of a group: validate, warm up, time.

    call(backend) -> fastconv callable; out_call(backend) -> the same writing
    into preallocated ``out=`` buffers (the "+out" impls); torch_call(torch)
    -> torch callable; torch_result(value) -> the NumPy array to compare with
    ``expected`` (which is a tuple of arrays or one array)."""
    set_group(benchmark, op, shape_id, impl)
    torch = need(impl)
    if impl == "copy":
        return copy_roofline(benchmark, bytes_read, bytes_written, dtype)
    expected = expected if isinstance(expected, tuple) else (expected,)
    if impl == "torch":
        if torch_call is None:
            pytest.skip(f"no PyTorch equivalent of {op}")
        run = torch_call(torch)
        got = torch_result(run())
    else:
        name, _, variant = impl.partition("+")
        run = out_call(name) if variant == "out" else call(impl)
        got = run()  # warm-up: Numba compiles here, not in the timing
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, expected):
        check(g, e)
    benchmark(run)
