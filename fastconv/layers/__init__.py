"""Layer classes with the names and attributes of the from-scratch guides."""
from .activations import Dropout, Dropout2D, LeakyReLU, Normalize, ReLU, ReLU6, Sigmoid, Softmax
from .base import LAYER_REGISTRY, Layer
from .blocks import Bottleneck, DepthwiseSeparableConv, ResidualBlock, SEBlock
from .compose import Concat, DenseBlock, MBConv, Residual, SEBasicBlock
from .conv import Conv2D
from .dense import Dense, Flatten
from .norm import BatchNorm1D, BatchNorm2D
from .pooling import AdaptiveAvgPool2D, AvgPool2D, GlobalAvgPool2D, MaxPool2D

__all__ = [
    "AdaptiveAvgPool2D", "AvgPool2D", "BatchNorm1D", "BatchNorm2D", "Bottleneck", "Conv2D", "Dense",
    "DepthwiseSeparableConv", "Dropout", "Dropout2D", "Flatten", "GlobalAvgPool2D", "LAYER_REGISTRY",
    "Layer", "LeakyReLU", "MaxPool2D", "Normalize", "ReLU", "ResidualBlock", "SEBlock", "Sigmoid", "Softmax",
    "Concat", "DenseBlock", "MBConv", "ReLU6", "Residual", "SEBasicBlock",
]
