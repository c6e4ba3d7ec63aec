"""The cache of large freed NumPy array buffers (fastconv/_array_cache.py,
csrc/array_cache.c), installed as NumPy's data-memory handler at import."""
import contextvars
import os
import platform
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastconv
from fastconv import _array_cache

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or "c" not in fastconv.available_backends(),
    reason="the cache needs glibc and the C extension")

BIG = _array_cache.MIN_BYTES  # the smallest buffer the cache keeps


def _handler_name():
    try:
        from numpy._core.multiarray import get_handler_name
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import get_handler_name
    return get_handler_name()


def _run(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env)


@pytest.fixture
def cache():
    fastconv.empty_cache()
    yield
    fastconv.empty_cache()


def test_import_installs_the_handler_and_zero_leaves_numpy_alone():
    assert _handler_name() == "fastconv_array_cache"
    code = "import fastconv, numpy as np; from numpy._core.multiarray import get_handler_name; print(get_handler_name())"
    out = _run(code, FASTCONV_ARRAY_CACHE_MB="0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "default_allocator"


@pytest.mark.parametrize("value", ["lots", "-5", "nan"])
def test_a_bad_limit_names_the_variable(value):
    out = _run("import fastconv", FASTCONV_ARRAY_CACHE_MB=value)
    assert out.returncode != 0
    assert "FASTCONV_ARRAY_CACHE_MB" in out.stderr and repr(value) in out.stderr


def test_a_freed_buffer_goes_to_the_next_array_of_its_size(cache):
    a = np.ones(BIG, np.uint8)
    address = a.ctypes.data
    del a
    info = fastconv.cache_info()
    assert info["bytes"] == BIG and info["blocks"] == 1
    b = np.empty(BIG, np.uint8)
    assert b.ctypes.data == address
    after = fastconv.cache_info()
    assert after["hits"] == info["hits"] + 1 and after["bytes"] == 0
    del b
    c = np.empty(BIG + 4096, np.uint8)  # another size: not this block
    assert fastconv.cache_info()["blocks"] == 1 and c.ctypes.data != address


def test_zeros_from_a_reused_buffer_are_zero(cache):
    a = np.full(BIG // 4, 7.0, np.float32)
    address = a.ctypes.data
    del a
    z = np.zeros(BIG // 4, np.float32)
    assert z.ctypes.data == address  # the dirty block came back through calloc
    assert not z.any()


def test_small_buffers_are_not_kept(cache):
    a = np.ones(BIG - 1, np.uint8)
    del a
    assert fastconv.cache_info()["blocks"] == 0


def test_a_reused_buffer_can_grow_in_place_or_move(cache):
    a = np.arange(BIG // 8, dtype=np.int64)
    del a
    b = np.arange(BIG // 8, dtype=np.int64)  # a cached block
    b.resize(BIG // 8 + 1000, refcheck=False)  # NumPy's realloc
    np.testing.assert_array_equal(b[: BIG // 8], np.arange(BIG // 8))
    assert not b[BIG // 8:].any()


def test_the_limit_evicts_the_least_recently_freed():
    code = ("import fastconv, numpy as np\n"
            "n = fastconv._array_cache.MIN_BYTES\n"
            "a, b, c = np.ones(n, np.uint8), np.ones(n + 8, np.uint8), np.ones(n + 16, np.uint8)\n"
            "del a, b, c\n"
            "info = fastconv.cache_info(); print(info['blocks'], info['bytes'] - 2 * n)\n"
            "print(np.empty(n, np.uint8).size, fastconv.cache_info()['hits'])\n"  # a went first: a miss
            # that array, freed, pushed b out: c and it are left
            "print(fastconv.empty_cache() - 2 * n, fastconv.cache_info()['bytes'])\n")
    out = _run(code, FASTCONV_ARRAY_CACHE_MB="90")  # room for two 32 MB blocks, not three
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "24", str(BIG), "0", "16", "0"]


def test_arrays_made_and_freed_on_several_threads_stay_intact(cache):
    """Threads running in fastconv's context share the cache (its table is
    locked); every array keeps its own values."""
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(20):
            n = BIG // 4 + int(rng.integers(0, 3)) * 1024
            a = np.full(n, float(seed), np.float32)
            if not (a[:: 4096] == seed).all():
                errors.append(seed)
            del a

    ctx = contextvars.copy_context()
    threads = [threading.Thread(target=ctx.copy().run, args=(work, s)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fastconv.cache_info()["hits"] > 0


def test_a_forked_child_allocates_from_the_cache(cache):
    a = np.ones(BIG, np.uint8)
    del a
    pid = os.fork()
    if pid == 0:  # the child: the table was copied unlocked
        ok = False
        try:
            b = np.full(BIG, 3, np.uint8)
            ok = bool((b[::4096] == 3).all()) and fastconv.cache_info()["bytes"] == 0
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_repeated_large_arrays_fault_in_no_fresh_pages():
    """The point of the cache: the same 40 MB arrays every step come from
    reused memory instead of fresh zeroed pages (minor page faults)."""
    code = ("import resource, numpy as np, fastconv\n"
            "def step():\n"
            "    arrays = [np.ones(s << 20, np.float32) for s in (10, 12)]\n"
            "step()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(10): step()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    faults = {}
    for limit in ("1024", "0"):
        out = _run(code, FASTCONV_ARRAY_CACHE_MB=limit)
        assert out.returncode == 0, out.stderr
        faults[limit] = int(out.stdout)
    assert faults["1024"] * 10 < faults["0"], faults
