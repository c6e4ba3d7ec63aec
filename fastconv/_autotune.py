"""Choosing between equivalent execution paths by measuring them, per machine
and shape, instead of assuming one is faster.

The fused conv + max pool + ReLU stage (layers/fused.py) is 2x faster than
the plain layers on one AVX-512 machine and slower on an AVX2 one; which
wins also depends on the shapes.  ``choose(key, candidates)`` times each
candidate on the call at hand (in turn, several times, keeping each one's
fastest), remembers the
winner for ``key`` in memory and in a small JSON file per machine under the
cache directory, and returns its name.  ``$FASTCONV_FUSED_STAGES`` pins the
choice: ``on`` (always fused), ``off`` (always plain), ``sparse`` (plain
forward, winner-sparse backward), ``auto`` (default).  The C backend's
convolution chooses between its paths (implicit GEMM, im2col + matmul,
direct, Winograd) the same way (``$FASTCONV_CONV_PATH``, backends/c_backend.py).
"""
from __future__ import annotations

import functools
import json
import os
import platform
import time
from pathlib import Path

ENV_MODE = "FASTCONV_FUSED_STAGES"
ROUNDS = 3  # measuring rounds at most per choice (see choose)
_decisions: dict[str, str] = {}
_loaded_file: Path | None = None


def mode() -> str:
    value = os.environ.get(ENV_MODE, "auto").strip().lower()
    if value not in ("auto", "on", "off", "sparse"):
        raise ValueError(f"${ENV_MODE} must be auto, on, off or sparse, got {value!r}")
    return value


@functools.lru_cache(maxsize=None)
def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return model


@functools.lru_cache(maxsize=None)  # asked on every forward of a fused stage: no /proc read each time
def _file(level: str) -> Path:
    from . import __version__
    from .datasets import cache_dir

    name = "".join(ch if ch.isalnum() else "-" for ch in f"{_machine()}-{level}-{__version__}")[:120]
    return cache_dir("autotune") / f"{name}.json"


def _load(path: Path) -> None:
    global _loaded_file
    if _loaded_file == path:
        return
    _loaded_file = path
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            _decisions.update({str(k): str(v) for k, v in data.items() if isinstance(v, str)})
    except (OSError, ValueError):
        pass  # no file yet, or an unreadable one: measure again


def _save(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(_decisions, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a measurement next time


def remembered(key: str, level: str = "") -> str | None:
    """The choice made for ``key`` on this machine, or None."""
    _load(_file(level))
    return _decisions.get(key)


def choose(key: str, candidates: dict, level: str = "", repeats: int = 5) -> str:
    """The name of the fastest of ``candidates`` (name -> zero-argument
    callable running that path once) for ``key``, measured on first use:
    after a warm-up call each, rounds in which the candidates run in turn
    ``repeats`` times, each keeping its fastest time (the least disturbed by
    other work).  The choice is remembered for good, so one round is not
    trusted: rounds go on until two in a row have the same winner (at most
    ROUNDS), and the fastest time over all of them decides.  On a shared
    machine a burst of other work once made a 1.5x slower convolution path
    win a single round (every run of the faster one disturbed)."""
    path = _file(level)
    _load(path)
    if key in _decisions and _decisions[key] in candidates:
        return _decisions[key]
    for run in candidates.values():
        run()  # warm up (first touch of buffers, thread wake-up)
    best = dict.fromkeys(candidates, float("inf"))
    previous_winner = None
    for _ in range(ROUNDS):
        round_best = dict.fromkeys(candidates, float("inf"))
        for _ in range(repeats):
            for name, run in candidates.items():
                start = time.perf_counter()
                run()
                round_best[name] = min(round_best[name], time.perf_counter() - start)
        best = {name: min(best[name], round_best[name]) for name in candidates}
        winner = min(round_best, key=round_best.get)
        if winner == previous_winner:
            break
        previous_winner = winner
    _decisions[key] = min(best, key=best.get)
    _save(path)
    return _decisions[key]


def forget() -> None:
    """Drop every remembered choice (this process and the file)."""
    global _loaded_file
    _decisions.clear()
    _loaded_file = None
    _file.cache_clear()  # the cache directory may have changed ($XDG_CACHE_HOME)
