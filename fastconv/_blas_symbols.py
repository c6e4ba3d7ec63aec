"""Find the GEMM of the BLAS NumPy loaded, for the C convolution kernels.

The C backend calls BLAS from inside its own OpenMP tasks (one GEMM per
column tile held in cache, csrc/conv_gemm.c).  It links no BLAS: it borrows
the OpenBLAS that NumPy's wheels ship, found with threadpoolctl, through the
CBLAS entry points OpenBLAS exports (the symbol names differ between builds:
NumPy >= 2 renames them ``scipy_cblas_sgemm64_``).  Whether the integers are
64-bit is read from ``openblas_get_config()``.  ``FASTCONV_C_BLAS=0`` turns
this off (the C backend then runs im2col + NumPy's matmul, as the others).
"""
from __future__ import annotations

import ctypes
import os

from .config import ENV_C_BLAS

# (symbol prefix, symbol suffix) of the OpenBLAS builds seen in the wild:
# NumPy >= 2 (scipy-openblas64), NumPy 1.x (openblas64_), plain builds.
_NAMINGS = (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", ""))




def _address(lib, name):
    try:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    except AttributeError:
        return None


def find_gemm():
    """``(path, sgemm, dgemm, get_threads, set_threads, int64)`` addresses
    from NumPy's OpenBLAS, or None when there is none to use."""
    if os.environ.get(ENV_C_BLAS, "1") == "0":
        return None
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a dependency
        return None
    import numpy  # noqa: F401 - its BLAS must be loaded to be found

    for info in threadpool_info():
        if info.get("internal_api") != "openblas":
            continue
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for prefix, suffix in _NAMINGS:
            sgemm = _address(lib, f"{prefix}cblas_sgemm{suffix}")
            dgemm = _address(lib, f"{prefix}cblas_dgemm{suffix}")
            get_config = getattr(lib, f"{prefix}openblas_get_config{suffix}", None)
            if not (sgemm and dgemm and get_config):
                continue
            get_config.restype = ctypes.c_char_p
            int64 = b"USE64BITINT" in (get_config() or b"")
            return (info["filepath"], sgemm, dgemm,
                    _address(lib, f"{prefix}openblas_get_num_threads{suffix}"),
                    _address(lib, f"{prefix}openblas_set_num_threads{suffix}"), int64)
    return None
