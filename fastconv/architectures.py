"""Named architectures for the training command.  They end in logits (no
Softmax): training fuses softmax into SoftmaxCrossEntropy."""
from __future__ import annotations

from .layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize,
                     ReLU)
from .model import CNN

# MNIST pixel statistics (of [0, 1] images), for the in-model Normalize layer.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def seed_cnn(num_classes=10):
    """The guides' network: Conv32-Pool-Conv64-Pool-Dense128-Dense10 (225,034 parameters)."""
    return CNN([
        Conv2D(1, 32, kernel_size=3), ReLU(), MaxPool2D(2, 2),
        Conv2D(32, 64, kernel_size=3), ReLU(), MaxPool2D(2, 2),
        Flatten(), Dense(64 * 5 * 5, 128), ReLU(), Dense(128, num_classes),
    ])


def bn_cnn(num_classes=10):
    """A stronger variant: normalised input, three padded conv-BN-ReLU-pool
    stages (32, 64, 128 channels), dropout and a BatchNorm'd hidden layer."""
    return CNN([
        Normalize(MNIST_MEAN, MNIST_STD),
        Conv2D(1, 32, 3, padding=1, bias=False), BatchNorm2D(32), ReLU(), MaxPool2D(2),      # 14x14
        Conv2D(32, 64, 3, padding=1, bias=False), BatchNorm2D(64), ReLU(), MaxPool2D(2),     # 7x7
        Conv2D(64, 128, 3, padding=1, bias=False), BatchNorm2D(128), ReLU(), MaxPool2D(2),   # 3x3
        Flatten(), Dropout(0.3), Dense(128 * 3 * 3, 128, bias=False), BatchNorm1D(128), ReLU(),
        Dropout(0.3), Dense(128, num_classes),
    ])


ARCHITECTURES = {"seed": seed_cnn, "bn": bn_cnn}
