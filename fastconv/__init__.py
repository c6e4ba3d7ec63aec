"""fastconv: the from-scratch NumPy CNN, with compiled multithreaded kernels.

Backends: "numpy" (reference), "numba" (@njit(parallel=True)) and "c"
(cffi + OpenMP).  See README.md.
"""
from ._threads import get_num_threads, set_num_threads
from .backends import (
    BACKEND_NAMES,
    BackendUnavailableError,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)
from .functional import col2im, im2col

__version__ = "0.1.0"

__all__ = [
    "BACKEND_NAMES",
    "BackendUnavailableError",
    "available_backends",
    "col2im",
    "get_backend",
    "get_num_threads",
    "im2col",
    "set_backend",
    "set_num_threads",
    "use_backend",
]
