"""Training steps under different OpenMP idle policies (docs/performance.md,
ninth session): how long libgomp's idle threads spin before they sleep
decides whether the next kernel waits for a wake-up (~0.1 ms each) and
whether NumPy's BLAS threads wait for a spinning thread's core.

    python bench/openmp_spin.py [--nets resnet_small,seed_cnn] [--batch 64]
                                [--rounds 5] [--loop optimizer|guides]
                                [--spins 10000,30000,100000]

Each (network, setting) runs in a fresh process (bench/arch_worker.py, real
MNIST for the MNIST networks), the settings alternating within each round;
printed: the median step of each setting and the median over rounds of its
ratio to OMP_WAIT_POLICY=PASSIVE (sleep at once).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def step_ms(net, batch, loop, env):
    out = subprocess.run([sys.executable, os.path.join(HERE, "arch_worker.py"), "--lib", "fastconv", "--net", net,
                          "--batch", str(batch), "--steps", "20", "--data", "mnist", "--loop", loop],
                         env=env, capture_output=True, text=True, check=True).stdout
    return float(np.median(json.loads(out.splitlines()[-1])["step_ms"]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nets", default="resnet_small,seed_cnn,lenet5,bn_cnn")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--loop", choices=("optimizer", "guides"), default="optimizer")
    p.add_argument("--spins", default="10000,30000,100000")
    args = p.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    settings = {"passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
    settings.update({f"spin {n}": {"GOMP_SPINCOUNT": n} for n in args.spins.split(",")})
    for net in args.nets.split(","):
        times = {name: [] for name in settings}
        for _ in range(args.rounds):
            for name, extra in settings.items():
                times[name].append(step_ms(net, args.batch, args.loop, {**base, **extra}))
        passive = np.array(times["passive"])
        print(f"{net:16s} b{args.batch} {args.loop:9s} " + " | ".join(
            f"{name} {np.median(t):6.1f} ms ({np.median(np.array(t) / passive):.2f})" for name, t in times.items()),
            flush=True)


if __name__ == "__main__":
    main()
