"""The fusion table: runs of fastconv layers that a container (CNN, the
residual blocks) executes as one stage, and the planner that applies it.

Matching is by exact type (``type(layer) is cls``): a user's class, or a
subclass, never matches.  A layer that ran inside a fused or reordered stage
is marked (``_fused_into``) by its container after forward, so its own
backward refuses until its own forward runs again.
"""
from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

from .layers.activations import ReLU
from .layers.conv import Conv2D
from .layers.fused import BatchNormReLU, BatchNormReLUPool, ConvPoolReLU, CroppedConv, bn_pool_fusable, fusable
from .layers.norm import BatchNorm1D, BatchNorm2D
from .layers.pooling import MaxPool2D


class FusionRule(NamedTuple):
    """One entry of the fusion table: layers of exactly these fastconv classes
    (``type(layer) is cls``: a user's class or subclass never matches), in a
    row, where ``legal(*layers)`` allows it: the first ``consumes`` of them are
    replaced by the stages ``build(*layers)`` returns."""

    name: str
    pattern: tuple
    legal: Callable[..., bool]
    build: Callable[..., list]
    consumes: int


# Applied in order, each over the result of the previous one.
FUSION_TABLE = (
    # the normalisation writes max(., 0) directly and its backward masks the
    # gradient: no separate ReLU pass either way (before "pool before relu",
    # which would otherwise move the ReLU away from the BatchNorm)
    *(FusionRule(f"{bn.__name__}+relu", (bn, ReLU), lambda b, r: True, lambda b, r: [BatchNormReLU(b, r)], 2)
      for bn in (BatchNorm2D, BatchNorm1D)),
    # ... and the max pool after it pools the normalised values as they are
    # computed: the full-resolution output and the pool's dense gradient never
    # reach memory (windows that do not overlap; layers/fused.py)
    FusionRule("bn+relu+pool", (BatchNormReLU, MaxPool2D), bn_pool_fusable,
               lambda s, p: [BatchNormReLUPool(s, p)], 2),
    # max(relu(x)) == relu(max(x)) (also with -inf padding) and the gradients
    # are identical, but the ReLU then touches a 4x smaller tensor (2x2 pool).
    FusionRule("pool before relu", (ReLU, MaxPool2D), lambda r, p: True, lambda r, p: [p, r], 2),
    # the convolution's full output and its dense gradient never reach memory
    # where the backend's fused kernels are its fast path (layers/fused.py)
    FusionRule("conv+pool+relu", (Conv2D, MaxPool2D, ReLU), lambda c, p, r: fusable(c, p),
               lambda c, p, r: [ConvPoolReLU(c, p, r)], 3),
    # an unpadded conv before an unpadded floor-mode pool computes only the
    # rows and columns the pool reads (a no-op crop when it reads everything)
    FusionRule("cropped conv", (Conv2D, MaxPool2D),
               lambda c, p: c.padding == (0, 0) and p.padding == (0, 0) and not p.ceil_mode,
               lambda c, p: [CroppedConv(c, p)], 1),
)


def plan(layers, table=FUSION_TABLE) -> tuple[list, set]:
    """(stages, ids of the layers that do not run as themselves) for ``layers``."""
    stages, rewritten = list(layers), set()
    for rule in table:
        out, i, k = [], 0, len(rule.pattern)
        while i < len(stages):
            group = stages[i:i + k]
            if (len(group) == k and all(type(s) is cls for s, cls in zip(group, rule.pattern))
                    and rule.legal(*group)):
                out += rule.build(*group)
                rewritten.update(id(layer) for layer in group[:rule.consumes])
                i += rule.consumes
            else:
                out.append(stages[i])
                i += 1
        stages = out
    return stages, rewritten


@contextlib.contextmanager
def fused_backward(layers, rewritten):
    """While a container's backward runs its stages, the layers it rewrote may
    run their own backward (a reordered pool and ReLU do): lift their mark
    meanwhile."""
    marked = [layer for layer in layers if id(layer) in rewritten]
    for layer in marked:
        layer._fused_into = None
    try:
        yield
    finally:
        for layer in marked:
            layer._fused_into = "CNN.forward"
