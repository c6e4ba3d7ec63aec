"""fastconv against PyTorch on whole training steps of several CNNs (issue 14).

    python bench/architectures.py [--nets a,b] [--batches 64,128] [--rounds 3]
                                  [--steps 30] [--json out.json] [--md out.md]

Each (network, batch) runs ``rounds`` times alternately in fresh processes
(bench/arch_worker.py), fastconv then PyTorch, so both see the same machine
state; a round's time is the median of its steps.  Reported: the median time
of each, the median of the per-round ratios (fastconv / PyTorch: below 1 is
faster), each process's peak resident set, and the geometric mean of the
ratios.  The guides' MNIST network is also timed in the guides' own loop
(fastconv only has that loop; PyTorch runs its usual one, on the same inputs).
The MNIST-shaped networks get a fresh batch of real MNIST per step (normalised;
[0, 1] pixels in the guides' loop); ``--data synthetic`` gives them one fixed
random batch instead, as the other shapes always get (bench/arch_worker.py).

PyTorch runs with the environment the user has.  ``import fastconv`` raises
glibc's mmap and trim thresholds in its own process (fastconv/_malloc_tuning.py),
and PyTorch's steps gain from that too (seed CNN, batch 128: ~30 -> ~24 ms);
``--torch-malloc tuned`` gives PyTorch's processes the same thresholds through
glibc's environment variables, for the comparison without that difference.

``--isa avx2`` caps both libraries at AVX2 (fastconv's v3 extension, PyTorch's
ATen and oneDNN, MKL and OpenBLAS), so that an AVX-512 machine also measures
how the two compare on an AVX2 one (a Zen 5 runs 512-bit FMAs at full width:
capped, both see half its peak, as on an AVX2 machine of that clock).
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from arch_specs import NETWORKS  # noqa: E402


# Environment that keeps each library's kernels to AVX2 + FMA.
AVX2_ENV = {"FASTCONV_C_ISA": "v3", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}


def tuned_malloc_env():
    """The environment with glibc's thresholds set as ``import fastconv`` sets them."""
    sys.path.insert(0, os.path.dirname(HERE))
    from fastconv import _malloc_tuning, _threads

    return {**_threads.user_environment(), "MALLOC_MMAP_THRESHOLD_": str(_malloc_tuning.MMAP_THRESHOLD),
            "MALLOC_TRIM_THRESHOLD_": str(_malloc_tuning.TRIM_THRESHOLD)}


def run(lib, net, batch, steps, loop="optimizer", env=None, source="synthetic"):
    cmd = [sys.executable, os.path.join(HERE, "arch_worker.py"), "--lib", lib, "--net", net, "--batch", str(batch),
           "--steps", str(steps), "--loop", loop, "--data", source]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return float(np.median(result["step_ms"])), result["peak_rss_mb"]


def torch_available():
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def measure(net, batch, rounds, steps, loop="optimizer", with_torch=True, torch_env=None, source="synthetic",
            fastconv_env=None):
    rows = []
    for _ in range(rounds):
        fc = run("fastconv", net, batch, steps, loop, env=fastconv_env, source=source)
        # PyTorch runs its usual loop, on the same inputs (the guides' loop: [0, 1] pixels)
        th = (run("torch", net, batch, steps, loop, env=torch_env, source=source) if with_torch
              else (float("nan"), float("nan")))
        rows.append((fc, th))
    fc_ms = float(np.median([r[0][0] for r in rows]))
    th_ms = float(np.median([r[1][0] for r in rows]))
    ratio = float(np.median([r[0][0] / r[1][0] for r in rows]))
    return dict(net=net, batch=batch, loop=loop, data=source, fastconv_ms=fc_ms, torch_ms=th_ms, ratio=ratio,
                fastconv_rss_mb=max(r[0][1] for r in rows), torch_rss_mb=max(r[1][1] for r in rows),
                rounds=[dict(fastconv_ms=r[0][0], torch_ms=r[1][0]) for r in rows])


def table(results):
    lines = ["| network | batch | loop | fastconv | PyTorch | ratio | peak RSS fastconv / PyTorch |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['net']} | {r['batch']} | {r['loop']} | {r['fastconv_ms']:.1f} ms | {r['torch_ms']:.1f} ms "
                     f"| {r['ratio']:.2f} | {r['fastconv_rss_mb']:.0f} / {r['torch_rss_mb']:.0f} MB |")
    ratios = [r["ratio"] for r in results if r["ratio"] == r["ratio"]]
    if ratios:
        lines.append(f"\ngeometric mean of the ratios: {math.exp(np.mean(np.log(ratios))):.2f} over {len(ratios)}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default=",".join(NETWORKS))
    p.add_argument("--batches", default="64,128")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--torch-malloc", choices=("default", "tuned"), default="default",
                   help="PyTorch's processes with the user's malloc settings, or glibc's thresholds as fastconv sets them")
    p.add_argument("--data", choices=("synthetic", "mnist"), default="mnist",
                   help="a fresh MNIST batch per step for the 1x28x28 networks (issue 14's normalised MNIST), "
                        "or one fixed random batch (bench/arch_worker.py)")
    p.add_argument("--isa", choices=("native", "avx2"), default="native",
                   help="each library's widest kernels for this CPU, or both capped at AVX2")
    p.add_argument("--json")
    p.add_argument("--md")
    args = p.parse_args()
    if not torch_available():
        sys.exit("PyTorch is not installed: pip install torch==2.13.0 (the CPU wheel)")
    torch_env = tuned_malloc_env() if args.torch_malloc == "tuned" else None
    fastconv_env = None
    if args.isa == "avx2":
        fastconv_env = {**os.environ, **AVX2_ENV}
        torch_env = {**(torch_env or os.environ), **AVX2_ENV}
    results = []
    for batch in map(int, args.batches.split(",")):
        for net in args.nets.split(","):
            loops = ("optimizer", "guides") if net == "seed_cnn" else ("optimizer",)
            for loop in loops:
                results.append(measure(net, batch, args.rounds, args.steps, loop, torch_env=torch_env,
                                       source=args.data, fastconv_env=fastconv_env))
                r = results[-1]
                print(f"{net:16s} b{batch:<4d} {loop:9s} fastconv {r['fastconv_ms']:7.1f} ms  torch {r['torch_ms']:7.1f} ms"
                      f"  ratio {r['ratio']:.2f}", flush=True)
    text = table(results)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
