"""Stateless operations: NCHW arrays in, arrays out, dispatched to a backend.

Every function takes an optional keyword ``backend=`` ("numpy", "numba", "c");
without it the current backend is used (see :func:`fastconv.set_backend`).
"""
from .batchnorm import (BatchNormCache, BatchNormPoolCache, batch_norm_backward, batch_norm_forward,
                        batch_norm_relu_max_pool, batch_norm_relu_max_pool_backward, bn_pool_unsupported,
                        relu_gradient)
from .conv import conv2d_maxpool, conv2d_maxpool_backward_input, conv2d_maxpool_backward_params
from .im2col import col2im, im2col
from .layers import (Conv2dCache, LinearCache, add, conv2d, conv2d_backward, crop_hw, linear, linear_backward,
                     pad_hw, relu, relu_backward)
from .pooling import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_unpool2d,
)

__all__ = [
    "BatchNormCache",
    "BatchNormPoolCache",
    "Conv2dCache",
    "LinearCache",
    "conv2d",
    "conv2d_backward",
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "add",
    "crop_hw",
    "pad_hw",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_relu_max_pool",
    "batch_norm_relu_max_pool_backward",
    "bn_pool_unsupported",
    "relu_gradient",
    "col2im",
    "conv2d_maxpool",
    "conv2d_maxpool_backward_input",
    "conv2d_maxpool_backward_params",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "im2col",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
]
