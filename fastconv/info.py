"""What fastconv runs on:  python -m fastconv.info

Version, backends (and why one is missing), the C build's instruction-set
level and the CPU's, threads, the BLAS and OpenMP runtimes loaded, Numba's
threading layer and the cache locations: the first thing to paste into a bug
report.
"""
from __future__ import annotations

import os
import platform
import sys


def report() -> str:
    """The report as text (importing and loading every backend)."""
    import numpy as np

    from . import __version__, _threads, backends, config, datasets

    lines = [f"fastconv {__version__}",
             f"python {platform.python_version()} ({sys.executable}), {platform.platform()}",
             f"numpy {np.__version__}"]
    for name in ("numba", "cffi", "threadpoolctl", "tqdm", "matplotlib"):
        try:
            module = __import__(name)
            lines.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError as exc:
            lines.append(f"{name}: not installed ({exc})")
    lines.append("")
    lines.append("backends:")
    for name in backends.BACKEND_NAMES:
        try:
            module = backends.load(name)
        except backends.BackendUnavailableError as exc:
            lines.append(f"  {name}: unavailable - {exc}")
            continue
        detail = ""
        if name == "c":
            detail = (f" (extension level {module.ISA_LEVEL}; built levels {module.built_levels()}; "
                      f"this CPU runs x86-64 level {module.lib.fc_cpu_level()}; "
                      f"OpenMP {'yes' if module.has_openmp() else 'no'})")
        lines.append(f"  {name}: available{detail}")
    lines.append(f"  default: {backends.get_backend()} (order {', '.join(config.DEFAULT_BACKEND_ORDER)}; "
                 f"${config.ENV_BACKEND}={os.environ.get(config.ENV_BACKEND, '')!r})")
    lines.append("")
    lines.append(f"threads: {_threads.get_num_threads()} (usable cores {config.cpu_count()}, "
                 f"${config.ENV_NUM_THREADS}={os.environ.get(config.ENV_NUM_THREADS, '')!r}, "
                 f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')!r}, "
                 f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', '')!r})")
    forked = _threads.forked_single_threaded()
    if any(forked.values()):
        lines.append(f"  forked after the parent's threads started: {forked}")
    try:
        from numba.np.ufunc import parallel

        lines.append(f"numba threading layer: {parallel._threading_layer or 'not started'}")
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            lines.append(f"runtime: {pool.get('user_api')} {pool.get('internal_api')} {pool.get('version', '')} "
                         f"threads={pool.get('num_threads')} {pool.get('architecture', '') or ''} "
                         f"{pool.get('filepath')}")
    except ImportError:
        lines.append("runtime: threadpoolctl not installed")
    lines.append("")
    numba_cache = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(__file__), "backends",
                                                                     "__pycache__")
    lines.append(f"numba cache: {numba_cache}")
    lines.append(f"data cache: {datasets.cache_dir('')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    argparse.ArgumentParser(prog="python -m fastconv.info",
                            description=" ".join(__doc__.split("\n\n")[0].split())).parse_args(argv)
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
