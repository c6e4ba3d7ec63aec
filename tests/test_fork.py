"""A child made by fork() (multiprocessing's default start method on Linux,
what data-loading worker pools use) can run fastconv after its parent ran
multithreaded kernels: GNU OpenMP's pool does not survive fork, so such a
child runs the C kernels on one thread and the Numba kernels as serial twins
(same results); see docs/threads.md."""
import multiprocessing
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import functional as F


def _work(backend):
    x = np.random.default_rng(0).standard_normal((32, 8, 24, 24)).astype(np.float32)
    col = F.im2col(x, 3, 3, padding=1, backend=backend)
    out, idx = F.max_pool2d(x, 2, backend=backend)
    d_x = F.max_pool2d_backward(out, idx, x.shape, backend=backend)
    y, cache = F.batch_norm_forward(x, np.ones(8, np.float32), np.zeros(8, np.float32), np.zeros(8, np.float32),
                                    np.ones(8, np.float32), backend=backend)
    return [col, out, idx, d_x, y, *F.batch_norm_backward(y, cache)]


def _child(backend):
    from fastconv._threads import forked_single_threaded

    return _work(backend), forked_single_threaded()


def test_a_forked_child_runs_kernels_after_its_parent_used_threads(fast_backend):
    fastconv.set_num_threads(2)
    parent = _work(fast_backend)  # starts the OpenMP pool (sizes are past the grain)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map_async(_child, [fast_backend] * 2).get(timeout=240)  # a hang fails here
    for arrays, single in results:
        assert single[fast_backend], single
        for a, b in zip(parent, arrays):
            np.testing.assert_array_equal(a, b)


def test_a_child_forked_before_any_threads_keeps_them():
    pytest.importorskip("fastconv.backends.c_backend")
    code = textwrap.dedent("""
        import os, numpy as np, fastconv
        from fastconv._threads import forked_single_threaded
        from fastconv import functional as F
        fastconv.set_num_threads(2)
        pid = os.fork()
        if pid == 0:
            F.im2col(np.ones((32, 8, 24, 24), np.float32), 3, 3, backend="c")
            os._exit(0 if not forked_single_threaded()["c"] else 3)
        print(os.waitpid(pid, 0)[1])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "0", out.stderr[-2000:]
