"""Cost model on paper: ring-allreduce time of this project's networks on 1 to
64 nodes over 10 and 100 Gbit/s links, next to the compute time per step, and
the node count at which each network stops scaling (fixed global batch).

    python bench/allreduce_model.py

Ring allreduce of S bytes over p nodes: 2(p-1)/p * S/B + 2(p-1) * alpha per
buffer (bandwidth B, per-message latency alpha).  With a fixed global batch
each node computes 1/p of a step, so step(p) = T/p + allreduce(p) when the
allreduce does not overlap compute (fastconv's overlap gains nothing
measurable on one machine: docs/distributed.md).  A network "stops scaling"
at the p where step(p) is smallest; past it, more nodes make steps slower.
"""
import argparse

# (name, parameters, compute seconds per step at the global batch, where the figure comes from)
NETWORKS = [
    ("seed CNN (MNIST, batch 64)", 225_034, 7.0e-3, "measured here, 2 cores, C backend"),
    ("bn_cnn (MNIST, batch 64)", 0, 33e-3, "measured here, 2 cores, C backend"),
    ("ResNet-20 (CIFAR, batch 128)", 272_474, 0.65, "estimate: 41 MFLOP/img fwd x3 x128 at ~25 GFLOP/s"),
    ("ResNet-18 (CIFAR, batch 128)", 11_173_962, 8.6, "estimate: 0.56 GFLOP/img fwd x3 x128 at ~25 GFLOP/s"),
]
LINKS = {"10 Gbit/s": (10e9 / 8, 25e-6), "100 Gbit/s": (100e9 / 8, 5e-6)}  # bytes/s, latency per message
BUCKET_BYTES = 4 * 2**20  # fastconv.distributed.DataParallel's default


def allreduce_seconds(nbytes: float, p: int, bandwidth: float, latency: float) -> float:
    if p == 1:
        return 0.0
    buckets = max(1, -(-int(nbytes) // BUCKET_BYTES))
    return 2 * (p - 1) / p * nbytes / bandwidth + buckets * 2 * (p - 1) * latency


def main():
    argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split())).parse_args()
    import fastconv

    nodes = [1, 2, 4, 8, 16, 32, 64]
    for name, params, compute, source in NETWORKS:
        if params == 0:
            params = fastconv.architectures.bn_cnn().num_params()
        nbytes = 4 * params
        print(f"\n{name}: {params / 1e6:.2f} M parameters ({nbytes / 2**20:.1f} MiB of float32 gradients), "
              f"{1e3 * compute:.1f} ms compute per step on one node ({source})")
        print(f"  {'link':11} " + " ".join(f"{'p=' + str(p):>16}" for p in nodes) + "   stops scaling at")
        for link, (bw, lat) in LINKS.items():
            cells, steps = [], []
            for p in nodes:
                ar = allreduce_seconds(nbytes, p, bw, lat)
                step = compute / p + ar
                steps.append(step)
                cells.append(f"{1e3 * ar:6.2f}/{1e3 * step:7.2f}ms")
            best = nodes[min(range(len(nodes)), key=steps.__getitem__)]
            print(f"  {link:11} " + " ".join(f"{c:>16}" for c in cells) + f"   {best} nodes"
                  + (" (or more)" if best == nodes[-1] else ""))
    print("\ncells: allreduce / whole step, per step")


if __name__ == "__main__":
    main()
