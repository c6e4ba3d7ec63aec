"""Make OpenBLAS's idle threads sleep right after a call.

After each call OpenBLAS's worker threads poll for more work for
2**OPENBLAS_THREAD_TIMEOUT cycles (2**28 by default: ~0.1 s).  A training step
alternates BLAS calls with fastconv's OpenMP kernels, so those polling threads
sit on the cores the kernels need: on 2 cores the seed network's step was
~15 % slower (bench/profile_step.py).  This shortens the poll to 2**4 cycles.

It uses functions OpenBLAS exports for this purpose (re-read the environment,
stop and restart the thread pool, as after a fork).  Nothing happens when the
user set OPENBLAS_THREAD_TIMEOUT or FASTCONV_TUNE_BLAS=0, or when NumPy's BLAS
is not OpenBLAS or lacks these functions.
"""
from __future__ import annotations

import ctypes
import os

from . import config

TIMEOUT_EXPONENT = "4"  # OpenBLAS's minimum: poll 2**4 cycles, then sleep


def _openblas_libraries():
    from threadpoolctl import threadpool_info

    return [info["filepath"] for info in threadpool_info() if info.get("internal_api") == "openblas"]


def tune_openblas() -> list[str]:
    """Apply the short poll to every loaded OpenBLAS; returns the paths tuned."""
    if os.environ.get(config.ENV_TUNE_BLAS, "1") == "0" or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return []
    tuned = []
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = TIMEOUT_EXPONENT
    try:
        for path in _openblas_libraries():
            try:
                lib = ctypes.CDLL(path)
                read_env, shutdown, init = lib.openblas_read_env, lib.blas_thread_shutdown_, lib.blas_thread_init
            except (OSError, AttributeError):
                continue
            read_env()  # picks up OPENBLAS_THREAD_TIMEOUT
            shutdown()  # the pool restarts with the new timeout (what it does after a fork)
            init()
            tuned.append(path)
    finally:
        del os.environ["OPENBLAS_THREAD_TIMEOUT"]  # leave the user's environment as it was
    return tuned
