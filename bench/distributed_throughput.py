"""Data-parallel throughput on this machine: one process with all cores'
threads next to N MPI ranks with cores/N threads each, the same global batch.

    python bench/distributed_throughput.py [--arch seed bn] [--limit 12800] [--ranks 2] [--rounds 2]

Runs the training command for one epoch on the first --limit MNIST images,
alternating the two set-ups for --rounds rounds, and prints images/s and the
time per step each rank spent waiting for gradient allreduces (metrics.json).
Needs the [mpi] extra (mpi4py, Open MPI).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def run(cmd, out: Path, env) -> dict:
    subprocess.run(cmd + ["--out", str(out)], check=True, capture_output=True, text=True, env=env)
    return json.loads((out / "metrics.json").read_text())


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--arch", nargs="+", default=["seed", "bn"], help="architectures to run")
    p.add_argument("--limit", type=int, default=12800, help="training images per epoch")
    p.add_argument("--ranks", type=int, default=2, help="MPI ranks of the distributed set-up")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the two set-ups")
    args = p.parse_args()
    mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    print(f"{'arch':6} {'set-up':24} {'images/s':>9} {'comm ms/step':>13} {'test acc':>9}")
    for arch in args.arch:
        train = [sys.executable, "-m", "fastconv.train", "--arch", arch, "--limit", str(args.limit),
                 "--test-limit", "2000", "--epochs", "1", "--no-plots", "--schedule", "none"]
        setups = {f"1 rank x {os.cpu_count()} threads": train,
                  f"{args.ranks} ranks x {max(1, os.cpu_count() // args.ranks)} thread(s)":
                      [mpirun, "-np", str(args.ranks), *train]}
        results = {name: [] for name in setups}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for name, cmd in setups.items():
                    results[name].append(run(cmd, Path(tmp) / f"{r}-{len(results[name])}-{hash(name)}", env))
        for name, runs in results.items():
            best = max(runs, key=lambda m: m["epochs"][0]["images_per_second"])
            print(f"{arch:6} {name:24} {best['epochs'][0]['images_per_second']:9.0f} "
                  f"{1e3 * best['communication_seconds_per_step']:13.2f} {100 * best['test_accuracy']:8.2f}%")


if __name__ == "__main__":
    main()
