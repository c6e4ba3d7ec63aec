"""Backend registry, resolution order and thread control."""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastconv
from fastconv import backends
from fastconv.backends import BACKEND_NAMES, BackendUnavailableError, load
from fastconv._threads import max_threads


def test_available_backends_lists_known_names():
    names = fastconv.available_backends()
    assert "numpy" in names
    assert set(names) <= {"numpy", "numba", "c"}


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI promises every backend")
def test_ci_builds_every_backend():
    # CI installs with a compiler and numba: a missing backend there is a
    # broken build, not an optional feature.
    assert fastconv.available_backends() == ["numpy", "numba", "c"]


def test_set_get_and_context_manager(backend):
    fastconv.set_backend(backend)
    assert fastconv.get_backend() == backend
    other = "numpy" if backend != "numpy" else fastconv.available_backends()[-1]
    with fastconv.use_backend(other):
        assert fastconv.get_backend() == other
    assert fastconv.get_backend() == backend


def test_context_manager_restores_on_error():
    fastconv.set_backend("numpy")
    with pytest.raises(RuntimeError):
        with fastconv.use_backend(fastconv.available_backends()[-1]):
            raise RuntimeError("boom")
    assert fastconv.get_backend() == "numpy"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown backend 'cuda'; valid names are 'numpy', 'numba', 'c'"):
        fastconv.set_backend("cuda")
    with pytest.raises(ValueError, match="valid names"):
        fastconv.im2col(np.ones((1, 1, 3, 3)), 2, 2, backend="torch")


def test_env_override(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "numpy")
    assert fastconv.get_backend() == "numpy"
    fastconv.set_backend(fastconv.available_backends()[-1])  # set_backend beats the env
    assert fastconv.get_backend() == fastconv.available_backends()[-1]
    fastconv.set_backend(None)
    monkeypatch.setenv("FASTCONV_BACKEND", "opencl")
    with pytest.raises(ValueError, match=r"FASTCONV_BACKEND.*valid names"):
        fastconv.get_backend()


def test_default_is_fastest_available():
    expected = next(n for n in ("c", "numba", "numpy") if n in fastconv.available_backends())
    os.environ.pop("FASTCONV_BACKEND", None)
    assert fastconv.get_backend() == expected


def test_unavailable_backend_says_why_and_what_to_do(monkeypatch):
    monkeypatch.setitem(backends._MODULES, "c", "fastconv._no_such_extension")
    monkeypatch.delitem(backends._loaded, "c", raising=False)
    monkeypatch.setattr(backends, "_failures", {})
    assert "c" not in fastconv.available_backends()
    with pytest.raises(fastconv.BackendUnavailableError, match=r"C backend is unavailable.*compiler with OpenMP.*pip install"):
        fastconv.set_backend("c")
    with pytest.raises(fastconv.BackendUnavailableError, match="C backend"):
        fastconv.im2col(np.ones((1, 1, 3, 3)), 2, 2, backend="c")


def test_set_num_threads_reaches_every_pool():
    for n in sorted({1, max_threads()}):
        fastconv.set_num_threads(n)
        assert fastconv.get_num_threads() == n
        if "numba" in fastconv.available_backends():
            import numba

            assert numba.get_num_threads() == n
        if "c" in fastconv.available_backends():
            from fastconv.backends.c_backend import lib

            assert lib.fc_get_num_threads() == n
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == n for p in blas)


def test_c_backend_has_openmp():
    if "c" not in fastconv.available_backends():
        pytest.skip("C backend not built")
    from fastconv.backends import c_backend

    assert c_backend.has_openmp(), "the C extension was compiled without -fopenmp"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises((TypeError, ValueError), match="number of threads"):
        fastconv.set_num_threads(bad)


def test_too_many_threads():
    with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
        fastconv.set_num_threads(max_threads() + 1)


def test_num_threads_env_start_value(tmp_path):
    import subprocess
    import sys

    code = "import fastconv; print(fastconv.get_num_threads())"
    env = {**os.environ, "FASTCONV_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    env["FASTCONV_NUM_THREADS"] = "many"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "FASTCONV_NUM_THREADS must be a positive integer" in out.stderr


@pytest.mark.parametrize("user_env, expected", [
    ({}, "10000"),                                    # fastconv's spin count
    ({"GOMP_SPINCOUNT": "5"}, "5"),                   # the user's own, untouched
    ({"OMP_WAIT_POLICY": "PASSIVE"}, None),           # the user chose a policy: nothing added
])
def test_import_sets_the_openmp_spin_count_unless_the_user_did(user_env, expected):
    """``import fastconv`` bounds how long libgomp's idle threads spin (before
    libgomp loads), and never overrides a setting of the user's; the
    benchmarks' PyTorch side gets the user's environment back."""
    import json
    import subprocess
    import sys

    code = ("import os, json, fastconv; from fastconv import _threads\n"
            "print(json.dumps([os.environ.get('GOMP_SPINCOUNT'), _threads.OPENMP_SPIN_COUNT,\n"
            "                  _threads.user_environment().get('GOMP_SPINCOUNT')]))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, **user_env}, capture_output=True, text=True,
                         timeout=120, check=True)
    in_process, constant, for_children = json.loads(out.stdout.strip().splitlines()[-1])
    assert constant == "10000"
    assert in_process == expected
    assert for_children == user_env.get("GOMP_SPINCOUNT")


def test_warns_when_libgomp_was_loaded_first():
    """A libgomp loaded before fastconv (torch does this) ignores the
    GOMP_SPINCOUNT fastconv sets; the import says so instead of running slow."""
    import subprocess
    import sys

    code = ("import ctypes, warnings; ctypes.CDLL('libgomp.so.1'); warnings.simplefilter('error');\n"
            "try:\n    import fastconv\nexcept RuntimeWarning as w:\n    print('warned:', w)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=120)
    except OSError:  # pragma: no cover
        pytest.skip("cannot start a subprocess")
    if "cannot open shared object" in out.stderr or "OSError" in out.stderr:
        pytest.skip("no libgomp.so.1 on this machine")
    assert "warned: libgomp was loaded before fastconv" in out.stdout, out.stderr


def test_openblas_tuning_restarts_the_pool_and_keeps_results(monkeypatch):
    from fastconv import _blas_tuning

    a = np.random.default_rng(0).standard_normal((300, 200))
    expected = a @ a.T
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    tuned = _blas_tuning.tune_openblas()
    assert "OPENBLAS_THREAD_TIMEOUT" not in os.environ  # the user's environment is left alone
    np.testing.assert_allclose(a @ a.T, expected, rtol=1e-12)
    if not tuned:
        pytest.skip("NumPy's BLAS is not an OpenBLAS with the pool-restart functions")
    monkeypatch.setenv("FASTCONV_TUNE_BLAS", "0")
    assert _blas_tuning.tune_openblas() == []  # the opt-out
    monkeypatch.delenv("FASTCONV_TUNE_BLAS")
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "10")
    assert _blas_tuning.tune_openblas() == []  # the user's own setting wins


def test_malloc_tuning_keeps_large_blocks_in_the_heap(monkeypatch):
    """With the thresholds raised, the 3-12 MB arrays a training step frees
    are reused from the heap: no page faults (fresh zeroed pages) per step."""
    import platform
    import subprocess
    import sys

    from fastconv import _malloc_tuning

    monkeypatch.setenv("FASTCONV_TUNE_MALLOC", "0")
    assert _malloc_tuning.tune_malloc() is False  # the opt-out
    monkeypatch.delenv("FASTCONV_TUNE_MALLOC")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert _malloc_tuning.tune_malloc() is False  # the user's own setting wins
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    code = ("import resource, numpy as np, fastconv\n"
            "def step():\n"
            "    arrays = [np.ones(s << 18, np.float32) for s in (3, 9, 5, 12, 7)]\n"
            "step()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(20): step()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    faults = {}
    for tune in ("1", "0"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**env, "FASTCONV_TUNE_MALLOC": tune})
        faults[tune] = int(out.stdout)
    assert faults["1"] * 10 < faults["0"], faults  # ~0 vs ~30 000 measured


# What functional/ and layers/ ask a backend besides its kernels: one
# declaration each, in every backend.
CAPABILITIES = ("CONV_MAXPOOL_VIA_ROWS", "FUSE_CONV_POOL", "FUSE_BN_POOL", "conv_maxpool_direct")


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_backend_declares_its_capabilities(name):
    try:
        module = load(name)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    missing = [c for c in CAPABILITIES if not hasattr(module, c)]
    assert not missing, f"the {name} backend does not declare {missing}"
