"""Data-parallel training over MPI: `mpirun -np 2` on this machine.

Skipped, with the reason, where mpi4py or mpirun is missing (install the
[mpi] extra: pip install "fastconv[mpi]")."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
STEPS = HERE / "mpi" / "steps.py"


def _mpirun():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip('mpi4py is not installed: pip install "fastconv[mpi]"')
    launcher = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if launcher is None:
        pytest.skip('no mpirun on PATH: pip install "fastconv[mpi]" (Open MPI) or your system\'s MPI')
    return launcher


def _env():
    env = dict(os.environ)
    # Open MPI refuses to start as root unless told (CI runs as root)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
    return env


def _run(args, timeout=300, ranks=2):
    cmd = [_mpirun(), "-np", str(ranks), sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())


def _single(args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("arch, bn", [("seed", "local"), ("bn", "sync")])
def test_two_ranks_give_the_weights_of_one_process(tmp_path, arch, bn):
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    out = _single([str(STEPS), arch, str(one), bn])
    assert out.returncode == 0, out.stderr[-3000:]
    out = _run([str(STEPS), arch, str(two), bn])
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = np.load(one), np.load(two)
    assert int(a["world"]) == 1 and int(b["world"]) == 2
    for name in a.files:
        if name != "world":
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-8, err_msg=name)


def test_a_failing_rank_ends_every_rank_with_its_number(tmp_path):
    start = time.perf_counter()
    out = _run([str(STEPS), "seed", str(tmp_path / "x.npz"), "local", "fail-on-rank-1"], timeout=120)
    assert out.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: a deliberate failure" in out.stderr
    assert time.perf_counter() - start < 100


def test_different_models_on_the_ranks_are_refused(tmp_path):
    script = tmp_path / "mismatch.py"
    script.write_text(
        "import fastconv\n"
        "from fastconv.distributed import DataParallel, world, DistributedError\n"
        "comm = world()\n"
        "model = fastconv.architectures.seed_cnn(10 + comm.Get_rank())\n"
        "try:\n"
        "    DataParallel(model)\n"
        "except DistributedError as exc:\n"
        "    print('refused:', exc)\n")
    out = _run([str(script)], timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("refused: ranks [1] have a different model than rank 0") == 2


def test_training_command_on_two_ranks(mnist_cached, tmp_path):
    common = ["-m", "fastconv.train", "--limit", "3000", "--test-limit", "1000", "--epochs", "1",
              "--no-plots", "--batch-size", "64"]
    single = _single([*common, "--out", str(tmp_path / "one")], timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    out = _run([*common, "--out", str(tmp_path / "two"), "--distributed"], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert abs(one["test_accuracy"] - two["test_accuracy"]) <= 0.005, (one["test_accuracy"], two["test_accuracy"])
    assert out.stdout.count("final test accuracy") == 1  # only rank 0 reports
    assert two["threads"] == max(1, (len(os.sched_getaffinity(0))) // 2)


def test_resume_works_with_another_number_of_ranks(mnist_cached, tmp_path):
    """A run stopped on two ranks continues in one process, and back."""
    common = ["-m", "fastconv.train", "--limit", "1000", "--test-limit", "500", "--epochs", "3", "--no-plots"]
    out = _run([*common, "--out", str(tmp_path), "--stop-after", "1"], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    out = _single(["-m", "fastconv.train", "--resume", str(tmp_path / "checkpoint.npz"), "--stop-after", "2",
                   "--no-plots"], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    out = _run(["-m", "fastconv.train", "--resume", str(tmp_path / "checkpoint.npz"), "--no-plots"], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["epochs"]] == [1, 2, 3] and metrics["world_size"] == 2


def test_distributed_flag_without_mpi_says_how_to_launch(tmp_path):
    out = _single(["-m", "fastconv.train", "--distributed", "--out", str(tmp_path)], timeout=120)
    assert out.returncode != 0 and "mpirun -np N" in out.stderr


def test_ranks_started_with_different_options_are_refused_at_start(tmp_path):
    base = [sys.executable, "-m", "fastconv.train", "--limit", "256", "--epochs", "1", "--no-plots",
            "--out", str(tmp_path)]
    cmd = [_mpirun(), "-np", "1", *base, "--lr", "0.1", ":", "-np", "1", *base, "--lr", "0.2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert out.returncode != 0
    assert "have a different command line than rank 0" in out.stderr
    assert not (tmp_path / "checkpoint.npz").exists()
