"""Composite blocks: residual, bottleneck, squeeze-and-excitation,
depthwise-separable convolution.  Each owns its sub-layers (children) and
chains their forward/backward by hand, so the gradient flow is readable."""
from __future__ import annotations

import numpy as np

from .. import _checks
from .. import functional as F
from .activations import ReLU, Sigmoid
from .base import Layer
from .conv import Conv2D
from .dense import Dense
from .norm import BatchNorm2D
from .pooling import GlobalAvgPool2D


def _chain_forward(layers, x):
    for layer in layers:
        x = layer.forward(x)
    return x


def _chain_backward(layers, d):
    for layer in reversed(layers):
        d = layer.backward(d)
    return d


class _Residual(Layer):
    """main(x) + shortcut(x), then ReLU.  Subclasses build ``main`` (a list)
    and ``shortcut`` (a list, empty for identity).  ``main`` runs through the
    fusion table (fastconv/fusion.py: its BatchNorm + ReLU as one stage), and
    when it ends in a BatchNorm2D, that BatchNorm, the add and the ReLU run as
    one pass each way (``batch_norm_forward(relu=True, residual=)``);
    ``fuse = False`` on a block runs every sub-layer as itself."""

    main: list
    shortcut: list
    fuse = True

    def children(self):
        named = [(f"main.{i}", layer) for i, layer in enumerate(self.main)]
        return named + [(f"shortcut.{i}", layer) for i, layer in enumerate(self.shortcut)]

    def _make_shortcut(self, in_channels, out_channels, stride, dtype, rng):
        if stride == (1, 1) and in_channels == out_channels:
            return []  # identity
        return [Conv2D(in_channels, out_channels, 1, stride=stride, bias=False, rng=rng, dtype=dtype),
                BatchNorm2D(out_channels, dtype=dtype)]

    def _fused_tail(self):
        """The BatchNorm2D ending ``main`` when it runs fused with the add and the ReLU, else None."""
        last = self.main[-1] if self.fuse and self.main else None
        return last if type(last) is BatchNorm2D and type(self.relu) is ReLU else None

    def _main_stages(self):
        """(stages, ids of rewritten layers) of ``main`` (without a fused tail),
        re-planned when it or ``fuse`` changes."""
        key = (bool(self.fuse), id(self.relu), *map(id, self.main))
        if getattr(self, "_plan_key", None) != key:
            from ..fusion import plan  # fusion imports the layer modules, this one among its users

            tail = self._fused_tail()
            body = self.main[:-1] if tail is not None else self.main
            stages, rewritten = plan(body) if self.fuse else (list(body), set())
            if tail is not None:
                rewritten = rewritten | {id(tail), id(self.relu)}
            self._plan = (stages, rewritten)
            self._plan_key = key
        return self._plan

    def forward(self, x):
        x = self._input(x, 4, "(N, C, H, W)", self.dtype)
        stages, rewritten = self._main_stages()
        h, short = _chain_forward(stages, x), _chain_forward(self.shortcut, x)
        tail = self._fused_tail()
        if tail is not None:
            out, self._tail_cache = F.batch_norm_forward(
                h, tail.gamma, tail.beta, tail.running_mean, tail.running_var, training=tail.training,
                momentum=tail.momentum, eps=tail.eps, relu=True, residual=short, reduce=tail.reduce,
                backend=tail.backend)
        else:
            out = self.relu.forward(h + short)
        for layer in (*self.main, self.relu):  # their caches do not describe their own forward now
            if id(layer) in rewritten:
                layer._fused_into = f"{type(self).__name__}.forward"
        self._ran = stages
        return out

    def backward(self, d_out):
        from ..fusion import fused_backward

        stages, rewritten = self._main_stages()
        if self._need_cache(getattr(self, "_ran", None)) is not stages:
            raise RuntimeError(f"{self!r}: main or fuse changed since forward; run forward again")
        tail = self._fused_tail()
        if tail is not None:
            d_out = np.asarray(d_out, dtype=self.dtype)
            d_h, tail.d_gamma[...], tail.d_beta[...] = F.batch_norm_backward(d_out, self._tail_cache)
        else:
            d_h = self.relu.backward(d_out)
        with fused_backward(self.main, rewritten):
            d_main = _chain_backward(stages, d_h)
        if tail is None:
            d_short = d_h
        elif not self.shortcut:  # identity: the ReLU's gradient and the sum in one pass
            return F.relu_gradient(d_out, self._tail_cache, add=d_main)
        else:
            d_short = F.relu_gradient(d_out, self._tail_cache)
        return F.add(d_main, _chain_backward(self.shortcut, d_short), backend=self.relu.backend)


class ResidualBlock(_Residual):
    """conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut (identity, or a 1x1
    conv + BN when the shape changes), then ReLU (ResNet's basic block)."""

    def __init__(self, in_channels, out_channels, stride=1, *, rng=None, dtype=np.float32):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride = _checks.int_pair(stride, "stride")
        self.dtype = np.dtype(dtype)
        self.main = [
            Conv2D(in_channels, out_channels, 3, stride=self.stride, padding=1, bias=False, rng=rng, dtype=dtype),
            BatchNorm2D(out_channels, dtype=dtype), ReLU(),
            Conv2D(out_channels, out_channels, 3, padding=1, bias=False, rng=rng, dtype=dtype),
            BatchNorm2D(out_channels, dtype=dtype),
        ]
        self.shortcut = self._make_shortcut(in_channels, out_channels, self.stride, dtype, rng)
        self.relu = ReLU()

    def get_config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    stride=list(self.stride), dtype=self.dtype.name)


class Bottleneck(_Residual):
    """conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1-BN + shortcut, then
    ReLU; the inner width defaults to out_channels // 4 (ResNet-50 style)."""

    def __init__(self, in_channels, out_channels, stride=1, bottleneck_channels=None, *, rng=None,
                 dtype=np.float32):
        super().__init__()
        mid = bottleneck_channels or max(1, out_channels // 4)
        self.in_channels, self.out_channels, self.bottleneck_channels = in_channels, out_channels, mid
        self.stride = _checks.int_pair(stride, "stride")
        self.dtype = np.dtype(dtype)
        self.main = [
            Conv2D(in_channels, mid, 1, bias=False, rng=rng, dtype=dtype), BatchNorm2D(mid, dtype=dtype), ReLU(),
            Conv2D(mid, mid, 3, stride=self.stride, padding=1, bias=False, rng=rng, dtype=dtype),
            BatchNorm2D(mid, dtype=dtype), ReLU(),
            Conv2D(mid, out_channels, 1, bias=False, rng=rng, dtype=dtype), BatchNorm2D(out_channels, dtype=dtype),
        ]
        self.shortcut = self._make_shortcut(in_channels, out_channels, self.stride, dtype, rng)
        self.relu = ReLU()

    def get_config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, stride=list(self.stride),
                    bottleneck_channels=self.bottleneck_channels, dtype=self.dtype.name)


class SEBlock(Layer):
    """Squeeze-and-excitation: x * sigmoid(W2 relu(W1 mean_hw(x))) per channel."""

    def __init__(self, channels, reduction=16, *, rng=None, dtype=np.float32):
        super().__init__()
        self.channels, self.reduction = channels, reduction
        self.dtype = np.dtype(dtype)
        hidden = max(1, channels // reduction)
        self.excite = [GlobalAvgPool2D(), Dense(channels, hidden, rng=rng, dtype=dtype), ReLU(),
                       Dense(hidden, channels, rng=rng, dtype=dtype), Sigmoid()]
        self._cache = None

    def children(self):
        return [(f"excite.{i}", layer) for i, layer in enumerate(self.excite)]

    def get_config(self):
        return dict(channels=self.channels, reduction=self.reduction, dtype=self.dtype.name)

    def forward(self, x):
        x = self._input(x, 4, "(N, C, H, W)", self.dtype)
        scale = _chain_forward(self.excite, x)  # (N, C)
        self._cache = (x, scale)
        return x * scale[:, :, None, None]

    def backward(self, d_out):
        x, scale = self._need_cache(self._cache)
        d_scale = (d_out * x).sum(axis=(2, 3))
        return d_out * scale[:, :, None, None] + _chain_backward(self.excite, d_scale)


class DepthwiseSeparableConv(Layer):
    """Depthwise KxK conv (groups = in_channels) then pointwise 1x1 conv."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, *, rng=None,
                 dtype=np.float32):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dtype = np.dtype(dtype)
        self.depthwise = Conv2D(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                                groups=in_channels, rng=rng, dtype=dtype)
        self.pointwise = Conv2D(in_channels, out_channels, 1, rng=rng, dtype=dtype)

    def children(self):
        return [("depthwise", self.depthwise), ("pointwise", self.pointwise)]

    def get_config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    dtype=self.dtype.name)

    def forward(self, x):
        return self.pointwise.forward(self.depthwise.forward(x))

    def backward(self, d_out):
        return self.depthwise.backward(self.pointwise.backward(d_out))
