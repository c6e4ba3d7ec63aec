"""Composition: branch containers and the blocks of guide 004 built from them.

``Residual(main, shortcut)`` adds two branches, ``Concat(branches)`` stacks
branches along channels; each branch is a list of layers (an empty list is the
identity).  Backward comes for free: each branch runs its layers' backward in
reverse and the input gradients add.  SEBasicBlock, MBConv and DenseBlock are
a few lines of composition on top.
"""
from __future__ import annotations

import numpy as np

from .. import _checks
from .. import functional as F
from .activations import ReLU, ReLU6
from .base import Layer, build_layer, layer_spec
from .blocks import SEBlock
from .blocks import _chain_backward as _backward
from .blocks import _chain_forward as _forward
from .conv import Conv2D
from .norm import BatchNorm2D


def _branch(layers, what: str) -> list:
    """A branch as a list of layers: a Layer, a list of Layers, or their saved specs."""
    if layers is None:
        return []
    if isinstance(layers, Layer) or isinstance(layers, dict):
        layers = [layers]
    if not isinstance(layers, (list, tuple)):
        raise TypeError(f"{what} must be a layer or a list of layers, got {type(layers).__name__}")
    out = []
    for i, layer in enumerate(layers):
        layer = build_layer(layer) if isinstance(layer, dict) else layer
        if not isinstance(layer, Layer):
            raise TypeError(f"{what}[{i}] is a {type(layer).__name__}, not a fastconv Layer")
        out.append(layer)
    return out


class Residual(Layer):
    """``main(x) + shortcut(x)``; ``shortcut=None`` (or []) is the identity.
    Put the activation after it as a layer of its own (``ReLU()``)."""

    def __init__(self, main, shortcut=None):
        super().__init__()
        self.main = _branch(main, "main")
        self.shortcut = _branch(shortcut, "shortcut")
        self._shapes = None

    def children(self):
        return ([(f"main.{i}", layer) for i, layer in enumerate(self.main)]
                + [(f"shortcut.{i}", layer) for i, layer in enumerate(self.shortcut)])

    def get_config(self):
        return dict(main=[layer_spec(l) for l in self.main], shortcut=[layer_spec(l) for l in self.shortcut])

    def forward(self, x):
        x = np.asarray(x)
        a, b = _forward(self.main, x), _forward(self.shortcut, x)
        if a.shape != b.shape:
            raise ValueError(f"Residual: the main branch gives shape {a.shape}, the shortcut {b.shape}; "
                             f"they must match to be added (a 1x1 Conv2D + BatchNorm2D shortcut adapts one)")
        self._shapes = a.shape
        return F.add(a, b, backend=self.backend)

    def backward(self, d_out):
        self._need_cache(self._shapes)
        d_out = np.asarray(d_out)
        return F.add(_backward(self.main, d_out), _backward(self.shortcut, d_out), backend=self.backend)


class Concat(Layer):
    """``concatenate([branch(x) for branch in branches], axis=1)``: outputs
    stacked along channels (every branch keeps N, H, W); an empty branch
    passes x itself (DenseNet's running concatenation)."""

    def __init__(self, branches):
        super().__init__()
        if not isinstance(branches, (list, tuple)) or not branches:
            raise ValueError("branches must be a non-empty list of branches (each a layer or a list of layers)")
        self.branches = [_branch(b, f"branches[{i}]") for i, b in enumerate(branches)]
        self._splits = None

    def children(self):
        return [(f"branches.{i}.{j}", layer) for i, branch in enumerate(self.branches)
                for j, layer in enumerate(branch)]

    def get_config(self):
        return dict(branches=[[layer_spec(l) for l in branch] for branch in self.branches])

    def forward(self, x):
        x = np.asarray(x)
        outs = [_forward(branch, x) for branch in self.branches]
        rest = {o.shape[:1] + o.shape[2:] for o in outs}
        if len(rest) != 1:
            raise ValueError(f"Concat: the branches give shapes {[o.shape for o in outs]}; all but the "
                             f"channel axis must match")
        self._splits = np.cumsum([o.shape[1] for o in outs])[:-1]
        return np.concatenate(outs, axis=1)

    def backward(self, d_out):
        splits = self._need_cache(self._splits)
        parts = np.split(np.asarray(d_out), splits, axis=1)
        total = None
        for branch, d in zip(self.branches, parts):
            g = _backward(branch, np.ascontiguousarray(d))
            total = g if total is None else total + g
        return total


class _Composite(Layer):
    """A block defined by one composed layer list (``self.body``); its
    constructor arguments are its config, so it saves and loads like any layer."""

    body: list

    def _settings(self, dtype, **sizes):
        """Check and keep the constructor's sizes (positive ints) and dtype: they are the config."""
        self._config_names = tuple(sizes)
        for name, value in sizes.items():
            setattr(self, name, _checks.positive_int(value, name))
        self.dtype = np.dtype(dtype)

    def get_config(self):
        return {**{name: getattr(self, name) for name in self._config_names}, "dtype": self.dtype.name}

    def children(self):
        return [(f"body.{i}", layer) for i, layer in enumerate(self.body)]

    def forward(self, x):
        return _forward(self.body, x)

    def backward(self, d_out):
        return _backward(self.body, d_out)


def _conv_bn(cin, cout, k, stride=1, groups=1, *, rng, dtype):
    return [Conv2D(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False, rng=rng, dtype=dtype),
            BatchNorm2D(cout, dtype=dtype)]


def _projection(cin, cout, stride, *, rng, dtype):
    """The shortcut of a residual block: identity, or 1x1 conv + BN when the shape changes."""
    if stride == 1 and cin == cout:
        return []
    return _conv_bn(cin, cout, 1, stride, rng=rng, dtype=dtype)


class SEBasicBlock(_Composite):
    """ResNet's basic block with squeeze-and-excitation on the main branch:
    relu(SE(bn(conv(relu(bn(conv(x)))))) + shortcut(x))."""

    def __init__(self, in_channels, out_channels, stride=1, reduction=16, *, rng=None, dtype=np.float32):
        super().__init__()
        self._settings(dtype, in_channels=in_channels, out_channels=out_channels, stride=stride, reduction=reduction)
        main = [*_conv_bn(in_channels, out_channels, 3, stride, rng=rng, dtype=dtype), ReLU(),
                *_conv_bn(out_channels, out_channels, 3, rng=rng, dtype=dtype),
                SEBlock(out_channels, reduction, rng=rng, dtype=dtype)]
        self.body = [Residual(main, _projection(in_channels, out_channels, stride, rng=rng, dtype=dtype)), ReLU()]


class MBConv(_Composite):
    """MobileNetV2's inverted residual: 1x1 expansion to in*expansion
    channels (skipped when expansion is 1), 3x3 depthwise (stride), each with
    BN + ReLU6, then a 1x1 linear projection + BN; a residual add when
    stride is 1 and the channels match."""

    def __init__(self, in_channels, out_channels, expansion=6, stride=1, *, rng=None, dtype=np.float32):
        super().__init__()
        self._settings(dtype, in_channels=in_channels, out_channels=out_channels, expansion=expansion, stride=stride)
        hidden = in_channels * expansion
        main = []
        if expansion != 1:
            main += [*_conv_bn(in_channels, hidden, 1, rng=rng, dtype=dtype), ReLU6()]
        main += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden, rng=rng, dtype=dtype), ReLU6(),
                 *_conv_bn(hidden, out_channels, 1, rng=rng, dtype=dtype)]
        self.body = [Residual(main)] if stride == 1 and in_channels == out_channels else main


class DenseBlock(_Composite):
    """DenseNet's block: layer i sees the concatenation of the input and every
    earlier layer's output (BN-ReLU-1x1 conv to bn_size*growth_rate channels,
    BN-ReLU-3x3 conv to growth_rate); the block outputs all of them,
    in_channels + num_layers * growth_rate channels."""

    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4, *, rng=None, dtype=np.float32):
        super().__init__()
        self._settings(dtype, num_layers=num_layers, in_channels=in_channels, growth_rate=growth_rate,
                       bn_size=bn_size)
        self.out_channels = in_channels + num_layers * growth_rate
        width = bn_size * growth_rate
        self.body = []
        for i in range(num_layers):
            cin = in_channels + i * growth_rate
            new = [BatchNorm2D(cin, dtype=dtype), ReLU(), Conv2D(cin, width, 1, bias=False, rng=rng, dtype=dtype),
                   BatchNorm2D(width, dtype=dtype), ReLU(),
                   Conv2D(width, growth_rate, 3, padding=1, bias=False, rng=rng, dtype=dtype)]
            self.body.append(Concat([[], new]))  # keep x, add the new features
