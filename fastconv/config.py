"""Defaults in one place, with environment overrides.

Environment variables (read when first needed):

* ``FASTCONV_BACKEND``      -- backend used when none is set in code
  (``numpy``, ``numba`` or ``c``).
* ``FASTCONV_NUM_THREADS``  -- start value of :func:`fastconv.get_num_threads`.
* ``FASTCONV_NUMBA_CACHE``  -- ``0`` disables Numba's on-disk compile cache.
* ``FASTCONV_TUNE_BLAS``    -- ``0`` leaves OpenBLAS's idle-thread polling as
  it is (see fastconv/_blas_tuning.py).
* ``FASTCONV_TUNE_MALLOC``  -- ``0`` leaves glibc's mmap and trim thresholds
  as they are (see fastconv/_malloc_tuning.py).
* ``FASTCONV_ARRAY_CACHE_MB`` -- megabytes of freed large NumPy array buffers
  kept for reuse (default 1024; ``0`` leaves NumPy's allocator alone; see
  fastconv/_array_cache.py).
* ``FASTCONV_C_BLAS``       -- ``0``: the C convolution does not call NumPy's
  BLAS from C (see fastconv/_blas_symbols.py).
"""
from __future__ import annotations

import os

# The order in which the default backend is chosen: the first one that loads.
# C first: it matches or beats Numba in bench/ and has no JIT warm-up
# (see README, "Choosing the default backend").
DEFAULT_BACKEND_ORDER = ("c", "numba", "numpy")

ENV_BACKEND = "FASTCONV_BACKEND"
ENV_NUM_THREADS = "FASTCONV_NUM_THREADS"
ENV_NUMBA_CACHE = "FASTCONV_NUMBA_CACHE"
ENV_TUNE_BLAS = "FASTCONV_TUNE_BLAS"
ENV_TUNE_MALLOC = "FASTCONV_TUNE_MALLOC"
ENV_C_BLAS = "FASTCONV_C_BLAS"
ENV_ARRAY_CACHE_MB = "FASTCONV_ARRAY_CACHE_MB"


def numba_options() -> dict:
    """Options for every ``@njit`` in fastconv.backends.numba_kernels."""
    return {
        "parallel": True,
        "cache": os.environ.get(ENV_NUMBA_CACHE, "1") != "0",
        "nogil": True,
        "fastmath": False,  # keep IEEE semantics so results match the reference
        "error_model": "numpy",  # no ZeroDivisionError checks in hot loops
    }


def cpu_count() -> int:
    """Cores this process may run on (respects taskset / cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1
