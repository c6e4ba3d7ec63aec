"""Every C convolution path on the CIFAR-sized shapes, each timed alone.

    python bench/conv_paths.py [--batch 64] [--paths implicit,im2col,direct,ocvec,winograd]
                               [--shapes "C,F,HW,K,P[,S];..."]

Prints GFLOP/s of the useful work (2 * N * F * OH * OW * C * KH * KW per
pass) for forward (f), forward-size input + weight gradient (b) and the
weight gradient alone (w), min of 5 runs after a warm-up, for every path of
c_backend._CONV_PATHS ("-" where a path does not take the shape).  The
results are checked against each other first.  This is what the per-shape
choice (c_backend.conv_path) picks between; docs/performance.md has a run.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fastconv.backends import load
from fastconv.functional.im2col import conv_geometry

SHAPES = [  # (C, F, H = W, kernel, padding[, stride])
    (3, 32, 32, 3, 1), (16, 16, 32, 3, 1), (32, 32, 32, 3, 1), (32, 32, 16, 3, 1), (32, 64, 16, 3, 1),
    (64, 64, 16, 3, 1), (32, 64, 14, 3, 1), (64, 64, 8, 3, 1), (64, 128, 8, 3, 1), (128, 128, 8, 3, 1),
    (64, 128, 7, 3, 1), (96, 192, 8, 3, 1), (192, 192, 4, 3, 1), (64, 128, 16, 1, 0),
    # ResNet's downsampling
    (16, 32, 32, 3, 1, 2), (32, 64, 16, 3, 1, 2), (64, 128, 16, 3, 1, 2), (32, 64, 16, 1, 0, 2),
]


def best_of(fn, repeats=5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--paths", default="implicit,im2col,direct,ocvec,winograd", help="comma-separated subset")
    parser.add_argument("--shapes", help="instead of the CIFAR-sized list: channels,filters,map,kernel,padding"
                                         "[,stride] per shape, shapes separated by ';'")
    args = parser.parse_args(argv)
    shapes = SHAPES if not args.shapes else [tuple(map(int, s.split(","))) for s in args.shapes.split(";")]
    c = load("c")
    rng = np.random.default_rng(0)
    paths = [p for p in args.paths.split(",") if p in c._CONV_PATHS]
    print("C -> F, map | " + " | ".join(f"{p} f / b / w" for p in paths))
    for ci, f, hw, k, p, *stride in shapes:
        s = stride[0] if stride else 1
        g = conv_geometry((args.batch, ci, hw, hw), k, k, s, p, 1, f=f)
        x = rng.standard_normal((args.batch, ci, hw, hw)).astype(np.float32)
        wt = rng.standard_normal((f, ci, k, k)).astype(np.float32)
        d_out = rng.standard_normal((args.batch, f, g.oh, g.ow)).astype(np.float32)
        flop = 2 * args.batch * f * g.oh * g.ow * ci * k * k
        cells, reference = [], None
        for name in paths:
            if name not in c._paths_for(g):
                cells.append("-")
                continue
            fwd, bwd = c._CONV_PATHS[name]
            out, d_x, d_w = np.empty_like(d_out), np.empty_like(x), np.empty_like(wt)
            fwd(x, wt, None, out, g)
            bwd(x, wt, d_out, d_x, d_w, None, g)
            if reference is None:
                reference = (out.copy(), d_x.copy(), d_w.copy())
            for got, want in zip((out, d_x, d_w), reference):
                np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
            tf = best_of(lambda: fwd(x, wt, None, out, g))
            tb = best_of(lambda: bwd(x, wt, d_out, d_x, d_w, None, g))
            tw = best_of(lambda: bwd(x, wt, d_out, None, d_w, None, g))
            cells.append(f"{flop / tf / 1e9:.0f} / {2 * flop / tb / 1e9:.0f} / {flop / tw / 1e9:.0f}")
        shape = f"{ci} -> {f}, {hw}x{hw}" + ("" if k == 3 else f", {k}x{k}") + ("" if s == 1 else f", stride {s}")
        print(f"| {shape} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
