"""Data-parallel training over MPI (mpi4py + Open MPI: ``pip install "fastconv[mpi]"``).

Launch N processes (ranks) with ``mpirun -np N python your_script.py``; each
takes its shard of every batch, and after backward the gradients are averaged
over all ranks, so every rank applies the same update and the weights stay
identical.  For your own loop::

    from fastconv.distributed import DataParallel
    dp = DataParallel(model)              # broadcasts rank 0's weights, checks the model matches
    for xb, yb in batches:                # the *global* batch, the same on every rank
        xs, ys = dp.shard(xb), dp.shard(yb)
        loss = loss_fn.forward(model.forward(xs), ys)
        dp.backward(loss_fn.backward())   # backward + gradient allreduce, started as layers finish
        opt.step()

Gradients are packed into a few buffers (``bucket_bytes`` each, by dtype) and
summed with one ``Iallreduce`` per buffer, each started as soon as backward
has produced all of its gradients.  BatchNorm statistics stay per rank (as
PyTorch's DDP) unless ``sync_batchnorm=True``.  Without MPI (or with one
process) everything runs as a single process.  See docs/distributed.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np

from . import _threads, config
from .layers.base import Layer
from .layers.norm import _BatchNorm

# Environment variables MPI launchers set in every rank they start.
_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


class DistributedError(RuntimeError):
    """The ranks disagree (model, settings) or MPI is not usable."""


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (mpirun/mpiexec/srun)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def world():
    """MPI's COMM_WORLD when launched by mpirun with more than one rank, else None.

    Raises DistributedError when launched by mpirun but mpi4py is missing."""
    if not launched_by_mpi():
        return None
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"started by an MPI launcher, but mpi4py cannot be imported ({exc}); "
            f"install it with: pip install \"fastconv[mpi]\"") from None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def local_size(comm) -> int:
    """Ranks on this machine (they share its cores)."""
    from mpi4py import MPI

    return comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()


def default_threads(comm) -> int:
    """Cores / ranks on this machine, at least 1: N ranks never oversubscribe it."""
    return max(1, config.cpu_count() // local_size(comm))


def fingerprint(value) -> str:
    """A short hash of a JSON-serialisable value, to compare across ranks."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_same_on_every_rank(comm, what: str, value) -> None:
    """DistributedError on every rank, naming the ranks that differ from rank 0."""
    prints = comm.allgather(fingerprint(value))
    differ = [r for r, p in enumerate(prints) if p != prints[0]]
    if differ:
        raise DistributedError(f"ranks {differ} have a different {what} than rank 0; every rank must "
                               f"run the same command and build the same model")


def abort_on_error(comm, exc: BaseException) -> None:
    """Report ``exc`` with this rank's number and end every rank (MPI_Abort),
    so no rank waits forever in a collective for one that is gone."""
    sys.stderr.write(f"fastconv: rank {comm.Get_rank()} of {comm.Get_size()} failed: "
                     f"{type(exc).__name__}: {exc}\n")
    sys.stderr.flush()
    comm.Abort(1)


class DataParallel:
    """Average gradients of ``model`` over the ranks of ``comm`` (default: MPI's world).

    On construction: checks that every rank built the same architecture,
    broadcasts rank 0's parameters and buffers, sets this rank's threads to
    cores / local ranks unless ``threads`` says otherwise (None keeps the
    current count), and with ``sync_batchnorm`` makes every BatchNorm use the
    statistics of the global batch."""

    def __init__(self, model=None, comm=None, *, bucket_bytes: int = 4 * 2**20, sync_batchnorm: bool = False,
                 overlap: bool = True, threads="auto"):
        self.comm = comm if comm is not None else world()
        self.size = self.comm.Get_size() if self.comm is not None else 1
        self.rank = self.comm.Get_rank() if self.comm is not None else 0
        self.bucket_bytes = int(bucket_bytes)
        self.overlap = bool(overlap)
        self.communication_seconds = 0.0  # time spent waiting for allreduces (this rank)
        self._weight = 1.0 / self.size
        self.model = None
        if self.comm is not None and threads is not None:
            _threads.set_num_threads(default_threads(self.comm) if threads == "auto" else threads)
        if model is not None:
            self.attach(model, sync_batchnorm=sync_batchnorm)

    def attach(self, model, *, sync_batchnorm: bool = False) -> None:
        """Use ``model``: check it matches on every rank, broadcast rank 0's
        parameters and buffers, and synchronise its BatchNorms if asked."""
        self.model = model
        if self.comm is None:
            return
        config_of = model.get_config() if hasattr(model, "get_config") else type(model).__name__
        check_same_on_every_rank(self.comm, "model", [config_of, [(n, v.shape, str(v.dtype))
                                                                  for n, v, _ in model.parameters()]])
        self.broadcast_state()
        for layer in _walk(model):
            if isinstance(layer, _BatchNorm):
                layer.reduce = self._sum_in_place if sync_batchnorm else None

    # ------------------------------------------------------------ state
    def broadcast_state(self, root: int = 0) -> None:
        """Every parameter and buffer from rank ``root`` to all ranks (in place)."""
        if self.comm is None:
            return
        arrays = [v for _, v, _ in self.model.parameters()] + [v for _, v in self.model.buffers()]
        for array in arrays:
            self.comm.Bcast(np.ascontiguousarray(array) if not array.flags.c_contiguous else array, root=root)

    def _sum_in_place(self, array: np.ndarray) -> None:
        from mpi4py import MPI

        start = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        self.communication_seconds += time.perf_counter() - start

    # ------------------------------------------------------------ data
    def shard_bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's part of a global batch of n items
        (near-equal contiguous parts; the first n % size ranks get one more)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def shard(self, batch):
        """This rank's part of a global batch (any array indexed on axis 0).
        Also sets the weight of this rank's gradient: its share of the batch."""
        n = len(batch)
        start, stop = self.shard_bounds(n)
        self._weight = (stop - start) / n if n else 0.0
        return batch[start:stop]

    # ------------------------------------------------------------ gradients
    def backward(self, d_out, input_grad: bool = False):
        """``model.backward(d_out)``, then the global-batch gradient on every
        rank: each rank's gradient (of its shard's mean loss) weighted by its
        share of the batch, summed over ranks."""
        if self.comm is None:
            return self.model.backward(d_out, input_grad=input_grad)
        buckets = self._buckets()
        pending = []

        def stage_done(stage):
            for bucket in buckets:
                if not bucket.started and bucket.ready_after(stage):
                    pending.append(bucket.start(self.comm, self._weight))

        hook = stage_done if self.overlap and hasattr(self.model, "_schedule") else None
        result = (self.model.backward(d_out, input_grad=input_grad, after_stage=hook) if hook
                  else self.model.backward(d_out, input_grad=input_grad))
        for bucket in buckets:
            if not bucket.started:
                pending.append(bucket.start(self.comm, self._weight))
        start = time.perf_counter()
        for bucket in pending:
            bucket.finish()
        self.communication_seconds += time.perf_counter() - start
        return result

    def allreduce_gradients(self, weight: float | None = None) -> None:
        """Replace every gradient by the weighted sum over ranks (default
        weight: this rank's share of the last ``shard``ed batch, 1/size before
        any).  Call after your own ``model.backward``."""
        if self.comm is None:
            return
        start = time.perf_counter()
        for bucket in self._buckets():
            bucket.start(self.comm, self._weight if weight is None else weight).finish()
        self.communication_seconds += time.perf_counter() - start

    def _buckets(self):
        grads = [(name, g) for name, _, g in self.model.parameters()]
        if getattr(self, "_bucket_key", None) != [id(g) for _, g in grads]:
            self._bucket_key = [id(g) for _, g in grads]
            self._bucket_list = _make_buckets(self.model, grads, self.bucket_bytes)
        for bucket in self._bucket_list:
            bucket.started = False
        return self._bucket_list

    # ------------------------------------------------------------ metrics
    def sum(self, *values: float) -> list[float]:
        """Sum numbers over ranks (loss sums, correct counts, ...)."""
        if self.comm is None:
            return list(values)
        array = np.asarray(values, dtype=np.float64)
        self._sum_in_place(array)
        return array.tolist()


class _Bucket:
    """Gradients packed into one buffer, summed with one Iallreduce."""

    def __init__(self, grads, stages):
        self.grads = grads  # arrays, all of one dtype
        self.stages = stages  # ids of the stages that produce them
        self.buffer = np.empty(sum(g.size for g in grads), dtype=grads[0].dtype)
        self.started = False
        self._done_stages: set = set()
        self._request = None

    def ready_after(self, stage) -> bool:
        self._done_stages.add(id(stage))
        return self.stages <= self._done_stages

    def start(self, comm, weight: float):
        from mpi4py import MPI

        offset = 0
        for g in self.grads:
            np.multiply(g.reshape(-1), g.dtype.type(weight), out=self.buffer[offset:offset + g.size])
            offset += g.size
        self._request = comm.Iallreduce(MPI.IN_PLACE, self.buffer, op=MPI.SUM)
        self.started = True
        self._done_stages = set()
        return self

    def finish(self) -> None:
        self._request.Wait()
        offset = 0
        for g in self.grads:
            g.reshape(-1)[...] = self.buffer[offset:offset + g.size]
            offset += g.size


def _make_buckets(model, grads, bucket_bytes):
    """Buckets in backward order (last layer's gradients first), each of one
    dtype and about bucket_bytes, with the stages whose backward fills them."""
    owner = _stage_of_each_gradient(model)
    buckets, current, size, dtype = [], [], 0, None
    for _, g in reversed(grads):
        if current and (g.dtype != dtype or size + g.nbytes > bucket_bytes):
            buckets.append(current)
            current, size = [], 0
        current.append(g)
        size += g.nbytes
        dtype = g.dtype
    if current:
        buckets.append(current)
    return [_Bucket(b, {owner.get(id(g), -1) for g in b}) for b in buckets]


def _stage_of_each_gradient(model):
    """id(gradient array) -> id(stage of model._schedule() that writes it)."""
    owner = {}
    if not hasattr(model, "_schedule"):
        return owner
    for stage in model._schedule():
        layers = getattr(stage, "layers", None) if not isinstance(stage, Layer) else None
        for layer in (layers if layers is not None else (stage,)):
            if isinstance(layer, Layer):
                for _, _, g in layer.parameters():
                    owner[id(g)] = id(stage)
    return owner


def _walk(layer):
    yield layer
    if isinstance(layer, Layer):
        for _, child in layer.children():
            yield from _walk(child)
