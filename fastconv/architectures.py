"""Named architectures for the training command.  They end in logits (no
Softmax): training fuses softmax into SoftmaxCrossEntropy."""
from __future__ import annotations

from .layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, MaxPool2D,
                     Normalize, ReLU, Residual, ResidualBlock)
from .model import CNN

# Pixel statistics (of [0, 1] images), for the in-model Normalize layer.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


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


def _conv_bn_relu(cin, cout, stride=1):
    return [Conv2D(cin, cout, 3, stride=stride, padding=1, bias=False), BatchNorm2D(cout), ReLU()]


def simple_cnn(num_classes=10, in_channels=3):
    """Guide 002's CIFAR-10 network: three conv-BN-ReLU-pool blocks (32, 64,
    128 channels), global average pooling, dropout 0.5, one linear layer."""
    return CNN([
        Normalize(CIFAR10_MEAN, CIFAR10_STD),
        Conv2D(in_channels, 32, 3, padding=1), BatchNorm2D(32), ReLU(), MaxPool2D(2),
        Conv2D(32, 64, 3, padding=1), BatchNorm2D(64), ReLU(), MaxPool2D(2),
        Conv2D(64, 128, 3, padding=1), BatchNorm2D(128), ReLU(), MaxPool2D(2),
        GlobalAvgPool2D(), Dropout(0.5), Dense(128, num_classes),
    ])


def vgg_bn(num_classes=10, in_channels=3):
    """Guide 004's VGG-style network with BatchNorm: 64-64-pool, 128-128-pool,
    256-256-256-pool (conv-BN-ReLU), global average pooling, 256-unit hidden
    layer with dropout 0.5."""
    layers = [Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    cin = in_channels
    for widths in ((64, 64), (128, 128), (256, 256, 256)):
        for width in widths:
            layers += [Conv2D(cin, width, 3, padding=1), BatchNorm2D(width), ReLU()]
            cin = width
        layers.append(MaxPool2D(2))
    layers += [GlobalAvgPool2D(), Dense(256, 256), ReLU(), Dropout(0.5), Dense(256, num_classes)]
    return CNN(layers)


def _resnet(stage_widths, blocks_per_stage, num_classes, in_channels):
    layers = [Normalize(CIFAR10_MEAN, CIFAR10_STD), *_conv_bn_relu(in_channels, stage_widths[0])]
    cin = stage_widths[0]
    for stage, width in enumerate(stage_widths):
        for block in range(blocks_per_stage[stage]):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(ResidualBlock(cin, width, stride=stride))
            cin = width
    return CNN(layers + [GlobalAvgPool2D(), Dense(cin, num_classes)])


def resnet20(num_classes=10, in_channels=3):
    """He et al.'s CIFAR ResNet-20: 16-32-64 channels, three BasicBlocks per stage (0.27 M parameters)."""
    return _resnet((16, 32, 64), (3, 3, 3), num_classes, in_channels)


def resnet18(num_classes=10, in_channels=3):
    """Guide 004's CIFAR-sized ResNet-18: a 3x3 stem of 64 channels, then
    BasicBlocks [2, 2, 2, 2] at 64-128-256-512 channels (11.2 M parameters)."""
    return _resnet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, in_channels)


def fast_cifar(num_classes=10, in_channels=3):
    """A small fast CIFAR-10 network for 2-core recipes (ResNet-9's shape at
    a quarter of its width): conv 24, then [conv 48, pool, residual of two
    convs], [conv 96, pool], [conv 192, pool, residual], global max via
    pooling, features scaled by 1/8, linear (0.93 M parameters)."""
    def res(width):
        return [Residual([*_conv_bn_relu(width, width), *_conv_bn_relu(width, width)])]

    return CNN([
        Normalize(CIFAR10_MEAN, CIFAR10_STD), *_conv_bn_relu(in_channels, 24),
        *_conv_bn_relu(24, 48), MaxPool2D(2), *res(48),                 # 16x16
        *_conv_bn_relu(48, 96), MaxPool2D(2),                           # 8x8
        *_conv_bn_relu(96, 192), MaxPool2D(2), *res(192),               # 4x4
        MaxPool2D(4), Flatten(),
        Normalize(0.0, 8.0),  # logits / 8 (ResNet-9's 0.125 scale): large early logits diverge at lr 0.2
        Dense(192, num_classes),
    ])


ARCHITECTURES = {"seed": seed_cnn, "bn": bn_cnn, "simple_cnn": simple_cnn, "vgg_bn": vgg_bn,
                 "resnet20": resnet20, "resnet18": resnet18, "fast_cifar": fast_cifar}
# The data set each architecture is built for (the training command checks it).
INPUT_CHANNELS = {"seed": 1, "bn": 1, "simple_cnn": 3, "vgg_bn": 3, "resnet20": 3, "resnet18": 3, "fast_cifar": 3}
