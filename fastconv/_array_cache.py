"""Reuse large NumPy array buffers across training steps.

A training step allocates and frees the same large arrays every time.  Below
32 MB glibc's heap reuses them (``_malloc_tuning.py``); from 32 MB on glibc
always maps fresh pages and unmaps them on free (its mmap threshold cannot be
raised further on 64-bit), so the kernel zeroes and faults them in again on
every step.  At batch 256 on 32x32 maps that is most activations: a max-pool
backward on (256, 48, 32, 32) took 9.4-60 ms into a fresh array and 3.0-3.6 ms
into reused memory; whole ``fast_cifar`` steps gained 0-7 % (the cost of fresh
pages varies with the machine's load; docs/performance.md, seventh session).

So ``import fastconv`` installs ``csrc/array_cache.c`` as NumPy's
data-memory handler (NEP 49, ``PyDataMem_SetHandler``): freed array buffers
of at least ``MIN_BYTES`` are kept, up to ``FASTCONV_ARRAY_CACHE_MB`` (default
1024) in all, and handed out again to the next array of exactly the same
size; the least recently freed go first when the limit is reached.
:func:`empty_cache` gives them back to the system.  Buffers below
``MIN_BYTES`` and everything else NumPy does are unchanged.

NumPy keeps the handler per context (a ``contextvars`` variable): it applies
to arrays made in the thread that imported fastconv (and contexts copied from
it), not in threads started with a fresh context.  ``FASTCONV_ARRAY_CACHE_MB=0``
leaves NumPy's allocator alone; so does a C library other than glibc.
"""
from __future__ import annotations

import ctypes
import os

from . import config
from ._malloc_tuning import MMAP_THRESHOLD

MIN_BYTES = MMAP_THRESHOLD  # below glibc's (raised) mmap threshold its heap reuses blocks already
DEFAULT_LIMIT_MB = 1024

# PyDataMem_SetHandler's slot in NumPy's C-API table (numpy/__multiarray_api.h;
# the table's entries never move, it exists since NumPy 1.22)
_SET_HANDLER_SLOT = 304


def _limit_bytes() -> int:
    text = os.environ.get(config.ENV_ARRAY_CACHE_MB, str(DEFAULT_LIMIT_MB))
    try:
        megabytes = float(text)
    except ValueError:
        raise ValueError(f"${config.ENV_ARRAY_CACHE_MB} must be a number of megabytes, got {text!r}") from None
    if not megabytes >= 0:
        raise ValueError(f"${config.ENV_ARRAY_CACHE_MB} must be >= 0, got {text!r}")
    return int(megabytes * 2**20)


def _numpy_api_table() -> int:
    try:
        from numpy._core import _multiarray_umath as umath  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(umath._ARRAY_API, get_name(umath._ARRAY_API))


def _set_numpy_handler(handler_address: int, capsule_name_address: int):
    """Make the handler at handler_address NumPy's for this context; returns
    the previous handler's capsule."""
    new_capsule = ctypes.pythonapi.PyCapsule_New
    new_capsule.restype, new_capsule.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    capsule = new_capsule(handler_address, capsule_name_address, None)
    table = ctypes.cast(_numpy_api_table(), ctypes.POINTER(ctypes.c_void_p))
    set_handler = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(table[_SET_HANDLER_SLOT])
    return set_handler(capsule)


def _lib():
    from .backends import c_backend  # ImportError: no C extension here

    return c_backend.ffi, c_backend.lib


def install() -> bool:
    """Configure the cache and make it NumPy's handler; True when installed."""
    limit = _limit_bytes()
    if limit == 0:
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: blocks are checked with malloc_usable_size
        ffi, lib = _lib()
    except (OSError, AttributeError, ImportError):
        return False
    lib.fc_array_cache_configure(limit, MIN_BYTES)
    address = int(ffi.cast("uintptr_t", lib.fc_array_cache_handler()))
    name = int(ffi.cast("uintptr_t", lib.fc_array_cache_capsule_name()))
    _set_numpy_handler(address, name)
    return True


def empty_cache() -> int:
    """Free the array buffers fastconv keeps for reuse (see
    ``fastconv/_array_cache.py``); returns how many bytes were released."""
    try:
        _, lib = _lib()
    except ImportError:
        return 0
    return int(lib.fc_array_cache_clear())


def cache_info() -> dict:
    """The cache's state: bytes and blocks held now, hits and misses so far
    (requests of at least MIN_BYTES that found, or did not find, a block)."""
    try:
        ffi, lib = _lib()
    except ImportError:
        return dict(bytes=0, blocks=0, hits=0, misses=0)
    out = ffi.new("int64_t[4]")
    lib.fc_array_cache_stats(out)
    return dict(bytes=out[0], blocks=out[1], hits=out[2], misses=out[3])
