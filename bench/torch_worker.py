"""PyTorch's side of the training benchmarks, in a process of its own.

`import fastconv` sets the OpenMP spin count (GOMP_SPINCOUNT, for its
kernels beside BLAS), and in one process PyTorch would share libgomp and that
setting (with the earlier OMP_WAIT_POLICY=PASSIVE its training step ran
~10-15 % slower than in a clean interpreter).  So bench_training runs PyTorch's steps here, with the
environment the user had, and asks for them over stdin/stdout, one JSON
object per line:

    {"data": "file.npz"}                      x (N, 1, 28, 28) float32, y (N,) int64
    {"threads": 2}                            torch.set_num_threads
    {"fraction": "weights.npz", "batch": 64}  a fresh net from fastconv's initial
                                              weights, SGD(0.01, momentum 0.9), one
                                              pass over the data; replies
                                              {"seconds": s, "losses": [...]}

This file never imports fastconv.
"""
import json
import sys
import time

import numpy as np
import torch


def seed_cnn(weights):
    """The seed network with the given initial weights: conv/dense weights
    in fastconv's layout (Dense (in, out)) as w0, b0, w1, b1, ..."""
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
    with torch.no_grad():
        for k, m in enumerate(m for m in net if hasattr(m, "weight")):
            w = weights[f"w{k}"]
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w if w.ndim == 4 else w.T)))
            m.bias.copy_(torch.from_numpy(weights[f"b{k}"]))
    return net


def fraction(x, y, weights, batch):
    net = seed_cnn(weights)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        opt.zero_grad()
        loss = loss_fn(net(xt[i:i + batch]), yt[i:i + batch])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return time.perf_counter() - start, losses


def main():
    x = y = None
    for line in sys.stdin:
        request = json.loads(line)
        if "data" in request:
            with np.load(request["data"]) as f:
                x, y = f["x"], f["y"]
            reply = {"ok": True}
        elif "threads" in request:
            torch.set_num_threads(int(request["threads"]))
            reply = {"ok": True}
        elif "fraction" in request:
            with np.load(request["fraction"]) as f:
                weights = dict(f)
            seconds, losses = fraction(x, y, weights, int(request["batch"]))
            reply = {"seconds": seconds, "losses": losses}
        else:
            reply = {"error": f"unknown request {request}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
