"""One thread count for every pool fastconv drives.

``set_num_threads(n)`` sets Numba's threads, the OpenMP threads of the C
kernels and the BLAS threads (through threadpoolctl), so that on a small
machine the pools never ask for more cores than there are.  The start value is
``FASTCONV_NUM_THREADS`` if set, else the number of usable cores.
"""
from __future__ import annotations

import os

from . import _checks, config

_num_threads: int | None = None
_blas_limiter = None


def max_threads() -> int:
    """Most threads Numba will run (its pool is sized at import)."""
    try:
        import numba

        return int(numba.config.NUMBA_NUM_THREADS)
    except ImportError:
        return max(config.cpu_count(), 64)


def get_num_threads() -> int:
    """The thread count the kernels and BLAS use."""
    global _num_threads
    if _num_threads is None:
        env = os.environ.get(config.ENV_NUM_THREADS)
        if env:
            try:
                start = int(env)
            except ValueError:
                raise ValueError(
                    f"${config.ENV_NUM_THREADS} must be a positive integer, got {env!r}"
                ) from None
            set_num_threads(start)
        else:
            _num_threads = min(config.cpu_count(), max_threads())
    return _num_threads


def set_num_threads(n: int) -> None:
    """Run Numba kernels, C/OpenMP kernels and BLAS on ``n`` threads."""
    global _num_threads, _blas_limiter
    n = _checks.positive_int(n, "number of threads")
    limit = max_threads()
    if n > limit:
        raise ValueError(
            f"cannot use {n} threads: Numba's pool has {limit} (set NUMBA_NUM_THREADS "
            f"before importing fastconv to raise it)"
        )
    _num_threads = n
    from . import backends

    for module in backends._loaded.values():
        apply_to_backend(module)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return
    _blas_limiter = threadpool_limits(limits=n, user_api="blas")


def apply_to_backend(module) -> None:
    """Push the current count into a freshly loaded (or already loaded) backend."""
    setter = getattr(module, "set_num_threads", None)
    if setter is not None:
        setter(get_num_threads())


# How long libgomp's idle threads spin before they sleep, in `pause`
# iterations (GOMP_SPINCOUNT; `import fastconv` sets it unless the user set
# it or OMP_WAIT_POLICY): 10000 is ~0.15 ms where a pause takes 15 ns (13-17
# ns measured on the Xeon of the ninth session) and ~0.5 ms where it takes
# ~50 ns (Intel's Skylake generation raised it to ~140 cycles).  That
# spans the Python between two kernels of a training step, so the next
# kernel finds its threads awake (a sleeping one takes ~0.1 ms to wake), and
# still frees the cores soon for NumPy's BLAS threads.  Measured per training
# step (docs/performance.md, ninth session): against sleeping at once,
# ResNet 0.89-0.92x, LeNet-5 0.76-0.81x, the seed network 0.93-0.99x;
# 100000 made the seed network, whose dense layers then ran on BLAS's
# threads, 5-13 % slower.  With the C backend's own Dense kernels (eleventh
# session) 200000 against 10000 measured the same (seed network, ResNet,
# bn_cnn: 0.98-1.00x, alternating processes on a Zen 5); NumPy and Numba
# backends still run Dense on BLAS, so 10000 stays.
OPENMP_SPIN_COUNT = "10000"


def user_environment() -> dict[str, str]:
    """os.environ without the OpenMP setting ``import fastconv`` added: for a
    child process (PyTorch's side of a benchmark) that should run as the user
    would run it."""
    import fastconv

    env = dict(os.environ)
    if fastconv._omp_policy_set:
        env.pop("GOMP_SPINCOUNT", None)
    return env


def openmp_already_loaded() -> bool:
    """Whether a GNU OpenMP runtime is already mapped into this process (it
    reads GOMP_SPINCOUNT and OMP_WAIT_POLICY once, when it loads).  False
    where /proc is absent."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:  # pragma: no cover - not Linux
        return False


def forked_single_threaded() -> dict[str, bool]:
    """Per loaded fast backend: whether this process is a fork() child of a
    parent whose GNU OpenMP pool had started, so that backend runs on one
    thread here (C) or as serial twins of its kernels (Numba)."""
    from . import backends

    state = {}
    module = backends._loaded.get("c")
    if module is not None:
        state["c"] = bool(module.lib.fc_forked_single_threaded())
    module = backends._loaded.get("numba")
    if module is not None:
        state["numba"] = bool(module._forked_from_omp_parent)
    return state
