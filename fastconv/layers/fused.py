"""The stages of CNN's fusion table (fastconv/fusion.py): Conv2D -> ReLU ->
MaxPool2D (ConvPoolReLU, CroppedConv), BatchNorm -> ReLU (BatchNormReLU) and
BatchNorm2D -> ReLU -> MaxPool2D (BatchNormReLUPool, at the end of this file).

``CNN`` runs a Conv2D, ReLU, MaxPool2D triple as a :class:`ConvPoolReLU` when groups == 1, the
pool has no padding and the backend's fused kernels are its fast path (see
:func:`fusable`).  Results are the same as running the three layers (tested).

* Forward: :func:`fastconv.functional.conv2d_maxpool`: a convolution with few
  taps (a first layer on 1-channel images) computed plane by plane in cache,
  so its full-resolution output never reaches memory; a wider one as im2row
  (of only the outputs the pool reads) + GEMM + a pool over the GEMM's rows.
* Backward: max pool's gradient is nonzero only at the winners, so the
  weight, bias and input gradients come from the pooled gradient and the
  indices (``conv2d_maxpool_backward_params`` / ``_input``): a quarter of the
  multiply-adds of the GEMMs on a dense d_conv (2x2 pool), which is never
  written.

ReLU runs after the pool (max commutes with ReLU, as in ``CNN._schedule``),
in place on the pooled output; its backward happens in the gradient kernels
(``relu_out``: units the ReLU zeroed are skipped).  The weight gradients land
in the Conv2D's ``d_weights``/``d_bias`` as usual; the MaxPool2D's, ReLU's
and Conv2D's own caches are not filled (the stage keeps what backward needs).
"""
from __future__ import annotations

import numpy as np

from .. import _autotune, _checks, backends
from .. import functional as F
from .base import Layer
from .norm import BatchNorm2D


class FusedStage(Layer):
    """Base of the stages CNN's fusion table (fastconv.model.FUSION_TABLE)
    builds: a Layer that runs ``layers`` -- fastconv layers it does not own --
    as one step.  Its parameters are theirs (``children``); it is not saved
    (the model saves its layers) and so is not in the layer registry."""

    saveable = False

    def __init__(self, *layers):
        super().__init__(layers[0].backend)
        self.layers = tuple(layers)

    def children(self):
        return [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]

    def get_config(self):
        raise TypeError(f"{type(self).__name__} is an execution stage of CNN, not saved itself: "
                        f"save the model, whose layers it runs")

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(map(repr, self.layers))})"


def fusable(conv, pool) -> bool:
    """Whether Conv2D ``conv`` followed by MaxPool2D ``pool`` should run as a
    ConvPoolReLU stage: the geometry qualifies and the backend's fused kernels
    are its fast path (``FUSE_CONV_POOL`` in the backend module: True for C;
    Numba's are correct but slower than its separate layers in a training step,
    and the NumPy reference stays the plain layer-by-layer computation)."""
    if conv.groups != 1 or pool.padding != (0, 0) or pool.ceil_mode or conv.backend != pool.backend:
        return False
    return backends.resolve(conv.backend).FUSE_CONV_POOL


class ConvPoolReLU(FusedStage):
    """The fused stage of Conv2D, MaxPool2D, ReLU.

    Three equivalent paths: "fused" (the fused kernels both ways), "plain"
    (the plain layers: the conv cropped to what the pool reads, the pool,
    then the ReLU, and their backward) and "sparse" (the plain layers forward
    -- the direct or Winograd convolution beats im2row + GEMM on wide layers --
    and the fused kernels' winner-sparse backward from the pool's indices).
    Which runs is measured per machine and shape on first use
    (fastconv/_autotune.py; ``$FASTCONV_FUSED_STAGES`` pins one: on, off, sparse),
    since none is faster everywhere."""

    def __init__(self, conv, pool, relu):
        super().__init__(conv, pool, relu)
        self.conv, self.pool, self.relu = conv, pool, relu
        self._plain = (CroppedConv(conv, pool), pool, relu)
        self._cache = None
        self._path = None  # the path the last forward took

    def _key(self, x, variant: str) -> str:
        c, p = self.conv, self.pool
        return (f"conv-pool-relu|{backends.resolve(c.backend).__name__}|{x.shape}|{x.dtype}|{c.weights.shape}|"
                f"{c.stride}|{c.padding}|{c.dilation}|{c.bias is not None}|{p.pool_size}|{p.stride}|{variant}")

    def _level(self) -> str:
        return getattr(backends.resolve(self.conv.backend), "TUNING_ID", "")

    def _measure(self, x, variant: str) -> str:
        """Time both paths as this stage is used -- forward only in eval,
        with the backward variant (input gradient or parameters only) that
        training asked for -- and restore the gradients the runs overwrote."""
        def run(path):
            def go():
                out = self._forward(x, path)
                if variant != "forward":
                    self._backward_path(np.ones_like(out), path, input_grad=variant == "input")
            return go

        conv = self.conv
        saved = (conv.d_weights.copy(), None if conv.bias is None else conv.d_bias.copy())
        paths = ("fused", "plain") if variant == "forward" else ("fused", "plain", "sparse")
        choice = _autotune.choose(self._key(x, variant), {path: run(path) for path in paths}, self._level())
        conv.d_weights[...] = saved[0]
        if saved[1] is not None:
            conv.d_bias[...] = saved[1]
        return choice

    def _geometry(self):
        c, p = self.conv, self.pool
        return dict(stride=c.stride, padding=c.padding, dilation=c.dilation, pool_size=p.pool_size,
                    pool_stride=p.stride, backend=c.backend)

    def forward(self, x):
        x = self.conv._prepare(x)
        pinned = _autotune.mode()
        self._x, self._undecided = x, False
        if pinned != "auto":
            self._path = {"on": "fused", "off": "plain"}.get(pinned, pinned)
        elif not self.conv.training:
            self._path = _autotune.remembered(self._key(x, "forward"), self._level()) or self._measure(x, "forward")
        else:
            # the backward variant (input gradient or parameters only) is known
            # only at backward: decide there if this shape has no choice yet
            variant = getattr(self, "_variant", "input")
            known = _autotune.remembered(self._key(x, variant), self._level())
            self._path, self._undecided = known or "fused", known is None
        return self._forward(x, self._path)

    def _decide_at_backward(self, variant: str) -> None:
        self._variant = variant
        if not self._undecided:
            return
        self._undecided = False
        choice = self._measure(self._x, variant)
        if choice != self._path:  # recompute the forward state of the chosen path (same output)
            self._path = choice
            self._forward(self._x, choice)

    def _forward(self, x, path):
        if path != "fused":
            for layer in self._plain:
                x = layer.forward(x)
            return x
        conv = self.conv
        bias = conv.bias if conv.bias is not None else np.zeros(conv.out_channels, conv.dtype)
        out, indices = F.conv2d_maxpool(x, conv.weights, bias, relu=True, **self._geometry())
        self._cache = (x, indices, out)
        return out

    def backward_params_only(self, d_out):
        """The convolution's d_weights and d_bias; no input gradient."""
        self._decide_at_backward("params")
        self._backward_path(d_out, self._path, input_grad=False)

    def backward(self, d_out):
        self._decide_at_backward("input")
        return self._backward_path(d_out, self._path, input_grad=True)

    def _backward_path(self, d_out, path, input_grad):
        if path == "plain":
            crop, pool, relu = self._plain
            d = pool.backward(relu.backward(d_out))
            if input_grad:
                return crop.backward(d)
            crop.backward_params_only(d)
            return None
        if path == "sparse":
            return self._backward_after_plain(d_out, input_grad)
        return self._backward(*self.conv._need_cache(self._cache), d_out, input_grad)

    def _backward_after_plain(self, d_out, input_grad):
        """The winner-sparse backward of a plain forward: the pool's indices
        are positions in the cropped convolution's output, so the kernels run
        on the cropped input; the input gradient is padded back."""
        crop, pool, relu = self._plain
        indices, _, swapped = pool._need_cache(pool._cache)
        indices = indices.transpose(1, 0, 2, 3) if swapped else indices
        # the cropped input as the convolution kept it: contiguous (a fresh
        # copy of the strided crop took 0.15 ms on the seed network's 12x12)
        cropped = self.conv._need_cache(self.conv._cache).x
        d_x = self._backward(cropped, indices, relu._need_cache(relu._out), d_out, input_grad)
        return None if d_x is None else _padded_back(d_x, self._x.shape, self.conv.backend)

    def _backward(self, x, indices, out, d_out, input_grad):
        conv = self.conv
        d_out = np.asarray(d_out, dtype=conv.dtype)
        if d_out.shape != out.shape:
            raise ValueError(f"{self!r}: d_out has shape {d_out.shape}, but the forward output was {out.shape}")
        # the ReLU's backward happens in the kernels: they skip units with out <= 0
        d_w, d_b = F.conv2d_maxpool_backward_params(x, d_out, indices, conv.weights.shape, relu_out=out,
                                                    **self._geometry())
        conv.d_weights[...] = d_w
        if conv.bias is not None:
            conv.d_bias[...] = d_b
        if not input_grad:
            return None
        return F.conv2d_maxpool_backward_input(d_out, indices, conv.weights, x.shape, relu_out=out,
                                               **self._geometry())


def unused_tail(conv, pool, out_hw):
    """(rows, cols) at the bottom/right of a Conv2D output of size ``out_hw``
    that MaxPool2D ``pool`` (no padding, floor mode) never reads; (0, 0) when
    the convolution has padding (cropping its input would move the padding)."""
    if conv.padding != (0, 0) or pool.padding != (0, 0):
        return 0, 0
    used = [(((size - k) // s) * s + k) if size >= k else size
            for size, k, s in zip(out_hw, pool.pool_size, pool.stride)]
    return out_hw[0] - used[0], out_hw[1] - used[1]


def _padded_back(d_x, x_shape, backend):
    """The input gradient of a cropped input, zeros where the crop dropped it."""
    if d_x.shape == tuple(x_shape):  # nothing was cropped
        return d_x
    return F.pad_hw(d_x, x_shape[2], x_shape[3], backend=backend)


class CroppedConv(FusedStage):
    """A Conv2D whose last output rows/columns the next MaxPool2D drops
    (floor mode: 11x11 -> 5x5 reads only 10x10): the input is cropped to the
    rows and columns the kept outputs read, so the GEMMs, im2col and col2im
    skip the dropped ones (17 % of the seed network's second convolution).
    Pool and ReLU then see the cropped output; the final result and every
    gradient are the same.  The input gradient is padded back with zeros,
    the exact gradient of inputs only dropped outputs depended on."""

    def __init__(self, conv, pool):
        super().__init__(conv)  # the pool only tells what to crop: it runs as itself
        self.conv, self.pool = conv, pool
        self._x_shape = None

    def _crop(self, x_shape):
        """(rows, cols) of an input of shape x_shape that the conv reads for
        the outputs the pool reads (see unused_tail); slicing more than the
        input has is harmless."""
        conv = self.conv
        kh, kw = conv.kernel_size
        out_hw = _checks.conv_output_size(*x_shape[2:], kh, kw, conv.stride, conv.padding, conv.dilation)
        drop_h, drop_w = unused_tail(conv, self.pool, out_hw)
        (sh, sw), (dh, dw) = conv.stride, conv.dilation
        rows = (out_hw[0] - drop_h - 1) * sh + (kh - 1) * dh + 1
        cols = (out_hw[1] - drop_w - 1) * sw + (kw - 1) * dw + 1
        return rows, cols

    def forward(self, x):
        x = np.asarray(x)
        self._x_shape = x.shape
        if x.ndim != 4:
            return self.conv.forward(x)  # let Conv2D explain the error
        rows, cols = self._crop(x.shape)
        rows, cols = min(rows, x.shape[2]), min(cols, x.shape[3])  # a padded conv may read past the input
        if (rows, cols) == x.shape[2:]:
            return self.conv.forward(x)
        return self.conv.forward(F.crop_hw(x, rows, cols, backend=self.conv.backend))

    def backward(self, d_out):
        return _padded_back(self.conv.backward(d_out), self._x_shape, self.conv.backend)

    def backward_params_only(self, d_out):
        self.conv.backward_params_only(d_out)


class BatchNormReLU(FusedStage):
    """BatchNorm (1D or 2D) then ReLU in one pass each way: the normalisation
    writes max(., 0) directly, and its backward counts the gradient only where
    that output is positive (``batch_norm_forward(relu=True)``).  Two of the
    five passes over the activation forward and three of eight backward are
    saved.  The BatchNorm's parameters, gradients and running statistics are
    its own, updated as when it runs alone."""

    def __init__(self, bn, relu):
        super().__init__(bn, relu)
        self.bn, self.relu = bn, relu
        self._cache = None

    def forward(self, x):
        bn = self.bn
        x = bn._input(x, bn._ndim, bn._layout, bn.dtype)
        if x.shape[1] != bn.num_features:
            raise ValueError(f"{bn!r} expects {bn.num_features} channels, got input of shape {x.shape}")
        out, self._cache = F.batch_norm_forward(
            x, bn.gamma, bn.beta, bn.running_mean, bn.running_var, training=bn.training, momentum=bn.momentum,
            eps=bn.eps, relu=True, reduce=bn.reduce, backend=bn.backend)
        return out

    def backward(self, d_out):
        bn = self.bn
        d_x, d_gamma, d_beta = F.batch_norm_backward(np.asarray(d_out, dtype=bn.dtype), bn._need_cache(self._cache))
        bn.d_gamma[...] = d_gamma
        bn.d_beta[...] = d_beta
        return d_x


class BatchNormReLUPool(FusedStage):
    """BatchNorm2D, ReLU, MaxPool2D (windows that do not overlap, no padding)
    in one pass each way (``functional.batch_norm_relu_max_pool``): forward
    pools the normalised values as it computes them, so the full-resolution
    output is never written nor read back; backward takes the BatchNorm sums
    over the winners and writes d_x once, without the pool's dense gradient.
    Built from a BatchNormReLU stage and the pool after it (the fusion
    table); parameters, gradients and running statistics are the
    BatchNorm's, updated as when the layers run alone."""

    def __init__(self, bn_relu, pool):
        super().__init__(bn_relu.bn, bn_relu.relu, pool)
        self.bn, self.pool = bn_relu.bn, pool
        self._cache = None

    def forward(self, x):
        bn = self.bn
        x = bn._input(x, 4, bn._layout, bn.dtype)
        if x.shape[1] != bn.num_features:
            raise ValueError(f"{bn!r} expects {bn.num_features} channels, got input of shape {x.shape}")
        out, self._cache = F.batch_norm_relu_max_pool(
            x, bn.gamma, bn.beta, bn.running_mean, bn.running_var, self.pool.pool_size, self.pool.stride,
            training=bn.training, momentum=bn.momentum, eps=bn.eps, reduce=bn.reduce, backend=bn.backend)
        return out

    def backward(self, d_out):
        bn = self.bn
        d_x, d_gamma, d_beta = F.batch_norm_relu_max_pool_backward(np.asarray(d_out, dtype=bn.dtype),
                                                                   bn._need_cache(self._cache))
        bn.d_gamma[...] = d_gamma
        bn.d_beta[...] = d_beta
        return d_x


def bn_pool_fusable(bn_relu, pool) -> bool:
    """Whether a BatchNormReLU stage and the MaxPool2D after it run as a
    BatchNormReLUPool: a 2-D BatchNorm, a pool the fused kernels take
    (``functional.bn_pool_unsupported``), one backend, and that backend's
    ``FUSE_BN_POOL`` (the NumPy reference computes layer by layer)."""
    bn = bn_relu.bn
    if type(bn) is not BatchNorm2D or bn.backend != pool.backend:
        return False
    if F.bn_pool_unsupported(pool.pool_size, pool.stride, pool.padding, pool.ceil_mode) is not None:
        return False
    return backends.resolve(bn.backend).FUSE_BN_POOL

