"""Ten SGD steps from one seed at a global batch of 32, as one process or as
the ranks of `mpirun -np N`; rank 0 saves the weights to argv[2].

    python tests/mpi/steps.py {seed,bn} OUT.npz [sync|local] [fail-on-rank-1]
"""
import sys

import numpy as np

import fastconv
from fastconv import CNN, SGD, BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy
from fastconv.distributed import DataParallel

arch, out = sys.argv[1], sys.argv[2]
sync = len(sys.argv) > 3 and sys.argv[3] == "sync"
fail = len(sys.argv) > 4 and sys.argv[4] == "fail-on-rank-1"
fastconv.seed(0)
if arch == "seed":
    model = fastconv.architectures.seed_cnn()
else:  # BatchNorm, no dropout: every rank's result is comparable with one process
    model = CNN([Conv2D(1, 8, 3, padding=1, bias=False), BatchNorm2D(8), ReLU(), MaxPool2D(2), Flatten(),
                 Dense(8 * 14 * 14, 10)])
model.astype(np.float64)  # the comparison is about the algorithm, not float32 rounding
dp = DataParallel(model, sync_batchnorm=sync)
rng = np.random.default_rng(1)
x = rng.random((320, 1, 28, 28))
y = rng.integers(0, 10, 320)
loss_fn, opt = SoftmaxCrossEntropy(), SGD(model, 0.05, momentum=0.9)
for step in range(10):
    xb, yb = x[step * 32:(step + 1) * 32], y[step * 32:(step + 1) * 32]
    loss_fn.forward(model.forward(dp.shard(xb)), dp.shard(yb))
    dp.backward(loss_fn.backward())
    opt.step()
    if fail and step == 3 and dp.rank == 1:
        from fastconv.distributed import abort_on_error

        abort_on_error(dp.comm, RuntimeError("a deliberate failure"))
if dp.rank == 0:
    np.savez(out, **{name: value for name, value, _ in model.parameters()}, world=np.array(dp.size))
