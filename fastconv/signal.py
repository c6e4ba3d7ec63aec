"""The guides' warm-up functions, fast: 1-D/2-D convolution (cross-correlation,
no kernel flip) of plain signals and images, classic kernels, size arithmetic."""
from __future__ import annotations

import numpy as np

from . import _checks
from .functional import im2col

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
SOBEL_Y = SOBEL_X.T.copy()
SHARPEN = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64)
BLUR = np.full((3, 3), 1 / 9)


def _float(a, name, ndim):
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        a = a.astype(np.float64)
    return _checks.float_array(a, name, ndim=ndim)


def output_size(n, kernel, stride=1, padding=0, dilation=1) -> int:
    """``(n + 2*padding - dilation*(kernel-1) - 1) // stride + 1``."""
    size = (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if size < 1:
        raise ValueError(f"a kernel of {kernel} (dilation {dilation}) does not fit an input of {n} "
                         f"with padding {padding}")
    return size


def conv1d(signal, kernel, stride=1, padding=0):
    """Valid cross-correlation of a 1-D signal (zero padding on both ends)."""
    s = _float(signal, "signal", 1)
    k = _float(kernel, "kernel", 1)
    dtype = np.result_type(s, k)
    col = im2col(s.astype(dtype)[None, None, None, :], 1, k.size, stride=(1, stride), padding=(0, padding))
    return k.astype(dtype) @ col


def conv2d(image, kernel, stride=1, padding=0):
    """Cross-correlation of a 2-D image with a 2-D kernel."""
    img = _float(image, "image", 2)
    k = _float(kernel, "kernel", 2)
    dtype = np.result_type(img, k)
    oh, ow = _checks.conv_output_size(*img.shape, *k.shape, _checks.int_pair(stride, "stride"),
                                      _checks.int_pair(padding, "padding", minimum=0), (1, 1))
    col = im2col(img.astype(dtype)[None, None], *k.shape, stride=stride, padding=padding)
    return (k.astype(dtype).reshape(-1) @ col).reshape(oh, ow)


def conv2d_multichannel(image, kernel, stride=1, padding=0):
    """(C, H, W) image with (O, C, KH, KW) kernels -> (O, OH, OW)."""
    img = _float(image, "image", 3)
    k = _float(kernel, "kernel", 4)
    if k.shape[1] != img.shape[0]:
        raise ValueError(f"kernel has {k.shape[1]} input channels but the image has {img.shape[0]}")
    dtype = np.result_type(img, k)
    oh, ow = _checks.conv_output_size(*img.shape[1:], *k.shape[2:], _checks.int_pair(stride, "stride"),
                                      _checks.int_pair(padding, "padding", minimum=0), (1, 1))
    col = im2col(img.astype(dtype)[None], *k.shape[2:], stride=stride, padding=padding)
    return (k.astype(dtype).reshape(k.shape[0], -1) @ col).reshape(k.shape[0], oh, ow)


def receptive_field(layers):
    """Receptive field (h, w) of the last output pixel of a stack of layers
    (Conv2D, MaxPool2D, AvgPool2D; others pass through)."""
    rf, jump = [1, 1], [1, 1]
    for layer in layers:
        k = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if k is None:
            continue
        s = getattr(layer, "stride", (1, 1))
        d = getattr(layer, "dilation", (1, 1))
        for a in range(2):
            rf[a] += d[a] * (k[a] - 1) * jump[a]
            jump[a] *= s[a]
    return tuple(rf)


def count_params(model_or_layers) -> int:
    """Number of trainable values in a model, a layer or a list of layers."""
    if hasattr(model_or_layers, "num_params"):
        return model_or_layers.num_params()
    return sum(layer.num_params() for layer in model_or_layers)
