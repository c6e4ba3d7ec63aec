"""The differential fuzz (tests/fuzz_kernels.py) in the suite: every fast
backend, and the C backend at every instruction-set level built here that
this CPU runs (so the AVX2 path is tested on an AVX-512 machine too)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fuzz_kernels

HERE = Path(__file__).resolve().parent


def test_fuzz_against_the_reference(fast_backend):
    result = fuzz_kernels.run(fast_backend, 1400)
    assert result["checked"] > 1200 and result["refused"] > 0, result


@pytest.mark.slow
def test_full_fuzz_10000_configurations(fast_backend):
    result = fuzz_kernels.run(fast_backend, 10_000, start=100_000)
    assert result["checked"] > 9000, result


def _c_levels():
    try:
        from fastconv.backends import c_backend
    except ImportError as exc:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no C backend: {exc}"))]
    cpu = c_backend.lib.fc_cpu_level()
    return [pytest.param(level, id=level,
                         marks=() if c_backend._LEVEL_NAMES[level] <= cpu or level in ("custom", "generic")
                         else pytest.mark.skip(reason=f"this CPU runs x86-64 level {cpu}, not {level}"))
            for level in c_backend.built_levels()]


@pytest.mark.parametrize("level", _c_levels())
def test_every_built_instruction_set_level_matches_the_reference(level):
    code = ("import fastconv.backends.c_backend as c, fuzz_kernels; "
            f"assert c.ISA_LEVEL == {level!r}, c.ISA_LEVEL; "
            "assert c.lib.fc_built_level() in (c._LEVEL_NAMES[c.ISA_LEVEL], 0) or c.ISA_LEVEL == 'custom'; "
            "print(fuzz_kernels.run('c', 1400))")
    env = {**os.environ, "FASTCONV_C_ISA": level, "PYTHONPATH": str(HERE)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'checked'" in out.stdout


def test_a_missing_c_backend_is_said_once_with_the_fix():
    code = ("import warnings, fastconv\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    fastconv.get_backend(); fastconv.get_backend()\n"
            "print(fastconv.get_backend()); print(len(w)); print(w[0].message)\n")
    env = {**os.environ, "FASTCONV_C_ISA": "no-such-level"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    backend, count, message = out.stdout.splitlines()[:3]
    assert backend in ("numba", "numpy") and count == "1"
    assert "C backend is unavailable" in message and "pip install" in message
