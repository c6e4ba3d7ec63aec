"""Time to accuracy of the training command's recipes (--preset), over seeds.

    python bench/recipes.py mnist-fast --seeds 5 [--data-dir DIR] [--json bench/results/recipes.json]

Runs `python -m fastconv.train --preset NAME --seed S` for each seed in a
fresh process and reads its metrics.json: training wall time is the sum of
the epochs' training seconds (evaluation excluded; data already cached), and
the time to the recipe's target is the training time up to the first epoch
whose test accuracy reaches it.  Prints a summary (mean, spread, each run) and
writes it to --json.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = {"mnist-fast": 0.990, "mnist-99.4": 0.994, "cifar10-fast": 0.85}
TIME_LIMITS = {"mnist-fast": 15.0, "mnist-99.4": 40.0, "cifar10-fast": 1800.0}  # seconds of training


def run_seed(preset, seed, extra) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "fastconv.train", "--preset", preset, "--seed", str(seed), "--no-plots",
               "--no-progress", "--out", out, *extra]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    elapsed, reached = 0.0, None
    for epoch in metrics["epochs"]:
        elapsed += epoch["seconds"]
        if reached is None and epoch["test_acc"] >= TARGETS[preset]:
            reached = elapsed
    return dict(seed=seed, test_accuracy=metrics["test_accuracy"], train_seconds=elapsed,
                seconds_to_target=reached, epochs=len(metrics["epochs"]), backend=metrics["backend"])


def summarise(preset, runs) -> dict:
    accs = [r["test_accuracy"] for r in runs]
    secs = [r["train_seconds"] for r in runs]
    mean_acc, mean_secs = statistics.mean(accs), statistics.mean(secs)
    return dict(preset=preset, target=TARGETS[preset], time_limit=TIME_LIMITS[preset], seeds=len(runs),
                mean_accuracy=mean_acc, min_accuracy=min(accs), max_accuracy=max(accs),
                mean_train_seconds=mean_secs, min_train_seconds=min(secs), max_train_seconds=max(secs),
                target_met=mean_acc >= TARGETS[preset] and mean_secs <= TIME_LIMITS[preset], runs=runs)


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("preset", choices=sorted(TARGETS), help="the recipe")
    p.add_argument("--seeds", type=int, default=5, help="runs, seeds 0..N-1")
    p.add_argument("--data-dir", default=None, help="passed to the training command")
    p.add_argument("--json", default="bench/results/recipes.json", help="summary file (appended per preset)")
    args = p.parse_args()
    extra = ["--data-dir", args.data_dir] if args.data_dir else []
    runs = []
    for seed in range(args.seeds):
        runs.append(run_seed(args.preset, seed, extra))
        r = runs[-1]
        print(f"seed {seed}: {100 * r['test_accuracy']:.2f}% in {r['train_seconds']:.1f} s of training", flush=True)
    summary = summarise(args.preset, runs)
    print(f"{args.preset}: mean {100 * summary['mean_accuracy']:.2f}% (range {100 * summary['min_accuracy']:.2f}–"
          f"{100 * summary['max_accuracy']:.2f}), {summary['mean_train_seconds']:.1f} s of training "
          f"(range {summary['min_train_seconds']:.1f}–{summary['max_train_seconds']:.1f}); target "
          f"{100 * summary['target']:.1f}% in <= {summary['time_limit']:.0f} s "
          f"{'met' if summary['target_met'] else 'NOT met'}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[args.preset] = summary
    path.write_text(json.dumps(existing, indent=2))


if __name__ == "__main__":
    main()
