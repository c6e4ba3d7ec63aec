"""Turn a pytest-benchmark JSON file into a markdown table and a bar chart.

    python bench/report.py bench/results/run.json --md bench/results/run.md --png bench/results/run.png

(bench/results/ is untracked; the project's published figures are docs/benchmarks/latest.*)

Rows are grouped by benchmark group (operation x shape); each implementation's
median is shown with its ratio to the NumPy reference, to PyTorch and to the
np.copyto roofline of the same group, all from the same run.  A benchmark
that times several implementations in turn (extra_info["medians"]) gives one
row per implementation.  The thread-scaling benchmarks (extra_info
["thread_scaling"], bench_threads.py) get a table of their own: median times at
1 and 2 threads and the median per-pair speed-up.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

ORDER = ["c", "c+out", "numba", "numba+out", "numpy", "torch", "copy"]


def load(path: Path) -> dict[str, dict[str, float]]:
    """{group: {impl: median seconds}}"""
    data = json.loads(Path(path).read_text())
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "thread_scaling" in info:  # see thread_table
            continue
        if "medians" in info:  # one benchmark timing several implementations in turn
            groups[bench["group"]].update(info["medians"])
            continue
        impl = info.get("impl") or bench["param"]
        groups[bench["group"]][impl] = bench["stats"]["median"]
    return dict(groups)


def load_thread_scaling(path: Path) -> list[tuple[str, dict]]:
    """[(group, {"impl", "one", "two", "speedup"})] in the file's order."""
    data = json.loads(Path(path).read_text())
    return [(b["group"], b["extra_info"]["thread_scaling"]) for b in data["benchmarks"]
            if "thread_scaling" in b.get("extra_info", {})]


def thread_table(rows: list[tuple[str, dict]]) -> str:
    lines = [
        "| 1 vs 2 threads | impl | 1 thread | 2 threads | speed-up (median of pairs) |",
        "|---|---|---:|---:|---:|",
    ]
    for group, r in rows:
        name = group.removeprefix("1 vs 2 threads: ").strip()
        lines.append(f"| {name} | {r['impl']} | {_fmt_time(r['one'])} | {_fmt_time(r['two'])} | "
                     f"{r['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _ratio(a: float, b: float | None) -> str:
    return "" if b is None else f"{a / b:.2f}x"


def markdown(groups: dict[str, dict[str, float]]) -> str:
    lines = [
        "| operation, shape | impl | median | vs numpy | vs torch | vs copy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for group in sorted(groups):
        impls = groups[group]
        for impl in sorted(impls, key=lambda i: ORDER.index(i) if i in ORDER else 99):
            t = impls[impl]
            lines.append(
                f"| {group} | {impl} | {_fmt_time(t)} | {_ratio(t, impls.get('numpy'))} | "
                f"{_ratio(t, impls.get('torch'))} | {_ratio(t, impls.get('copy'))} |"
            )
    return "\n".join(lines) + "\n"


def bar_chart(groups: dict[str, dict[str, float]], path: Path) -> None:
    """Horizontal bars, one block per benchmark group: each implementation's
    median relative to the NumPy reference (or to PyTorch where the group
    has no reference run), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(groups)
    impls = [i for i in ORDER if any(i in groups[g] for g in names)]
    height = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(names) + 1.5))
    for k, impl in enumerate(impls):
        ys, vals = [], []
        for row, g in enumerate(names):
            base = groups[g].get("numpy") or groups[g].get("torch")
            if impl in groups[g] and base:
                ys.append(row + k * height)
                vals.append(groups[g][impl] / base)
        ax.barh(ys, vals, height, label=impl)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_yticks([row + 0.4 - height / 2 for row in range(len(names))])
    ax.set_yticklabels([g + ("" if "numpy" in groups[g] else "  [vs torch]") for g in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("median time / NumPy reference (log; left is faster)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("json", type=Path)
    parser.add_argument("--md", type=Path, help="write the table here (default: print)")
    parser.add_argument("--png", type=Path, help="write a bar chart here")
    args = parser.parse_args(argv)
    groups = load(args.json)
    table = markdown(groups)
    threads = load_thread_scaling(args.json)
    if threads:
        table += "\n" + thread_table(threads)
    if args.md:
        args.md.write_text(table)
    else:
        print(table)
    if args.png:
        bar_chart(groups, args.png)


if __name__ == "__main__":
    main()
