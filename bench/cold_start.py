"""Cold start: seconds from `python` to the end of the first training step of
the seed network (import, model build, one forward/backward/update), per
backend, in a fresh interpreter each time.

    python bench/cold_start.py            # uses whatever Numba cache exists
    python bench/cold_start.py --clear    # first-ever run: empty Numba cache
"""
import argparse
import subprocess
import sys
from pathlib import Path

CODE = """
import time; t0 = time.perf_counter()
import numpy as np, fastconv
from fastconv.architectures import seed_cnn
fastconv.set_backend({backend!r})
m = seed_cnn(); loss = fastconv.SoftmaxCrossEntropy(); opt = fastconv.SGD(m, 0.01, momentum=0.9)
x = np.random.rand(64, 1, 28, 28).astype(np.float32); y = np.random.randint(0, 10, 64)
loss.forward(m.forward(x), y); m.backward(loss.backward(), input_grad=False); opt.step()
print(time.perf_counter() - t0)
"""


def run(backend):
    import time

    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CODE.format(backend=backend)], capture_output=True, text=True,
                         check=True)
    return time.perf_counter() - t, float(out.stdout.strip())


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--clear", action="store_true", help="delete Numba's cache first (first-ever run)")
    args = p.parse_args()
    if args.clear:
        import fastconv

        cache = Path(fastconv.__file__).parent / "backends" / "__pycache__"
        for f in list(cache.glob("numba_kernels*.nb*")):
            f.unlink()
        print(f"cleared Numba cache in {cache}")
    for backend in ("c", "numba", "numpy"):
        wall, inside = run(backend)
        print(f"{backend:6s} process wall {wall:5.2f} s (import + first step {inside:5.2f} s)")


if __name__ == "__main__":
    main()
