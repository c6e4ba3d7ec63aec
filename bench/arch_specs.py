"""The networks of the architecture benchmark, as plain data that both
builders read: fastconv's (bench/arch_worker.py with --lib fastconv) and
PyTorch's (the same file with --lib torch, which never imports fastconv).

A spec is a list of layers; each layer is a tuple (kind, *arguments):
    ("conv", in, out, k, stride, padding, bias)     ("dwconv", channels, k, stride, padding)
    ("bn", c)  ("bn1d", c)  ("relu",)  ("pool", k)  ("gap",)  ("flatten",)
    ("dense", in, out, bias)  ("dropout", p)  ("block", in, out, stride)   # ResNet BasicBlock
"""
from __future__ import annotations


def _cbr(cin, cout, stride=1, bias=False):
    return [("conv", cin, cout, 3, stride, 1, bias), ("bn", cout), ("relu",)]


def _dw_separable(cin, cout, stride):
    return [("dwconv", cin, 3, stride, 1), ("bn", cin), ("relu",),
            ("conv", cin, cout, 1, 1, 0, False), ("bn", cout), ("relu",)]


NETWORKS = {
    # the guides' MNIST network (guide 003's class API)
    "seed_cnn": ((1, 28, 28), [("conv", 1, 32, 3, 1, 0, True), ("relu",), ("pool", 2),
                               ("conv", 32, 64, 3, 1, 0, True), ("relu",), ("pool", 2), ("flatten",),
                               ("dense", 1600, 128, True), ("relu",), ("dense", 128, 10, True)]),
    # fastconv.architectures.bn_cnn without its Normalize layer (inputs are normalised)
    "bn_cnn": ((1, 28, 28), [*_cbr(1, 32), ("pool", 2), *_cbr(32, 64), ("pool", 2), *_cbr(64, 128), ("pool", 2),
                             ("flatten",), ("dropout", 0.3), ("dense", 1152, 128, False), ("bn1d", 128), ("relu",),
                             ("dropout", 0.3), ("dense", 128, 10, True)]),
    # issue 14's VGG-style network (a small guide 004 VGG with BatchNorm)
    "vgg_small": ((3, 32, 32), [*_cbr(3, 32), *_cbr(32, 32), ("pool", 2), *_cbr(32, 64), *_cbr(64, 64), ("pool", 2),
                                *_cbr(64, 128), ("pool", 2), ("flatten",), ("dense", 2048, 10, True)]),
    # issue 14's ResNet with BasicBlocks (a small guide 004 ResNet)
    "resnet_small": ((3, 32, 32), [*_cbr(3, 16), ("block", 16, 16, 1), ("block", 16, 32, 2), ("block", 32, 64, 2),
                                   ("gap",), ("dense", 64, 10, True)]),
    # guide 002's CIFAR-10 network (fastconv.architectures.simple_cnn without Normalize)
    "simple_cnn": ((3, 32, 32), [*_cbr(3, 32, bias=True), ("pool", 2), *_cbr(32, 64, bias=True), ("pool", 2),
                                 *_cbr(64, 128, bias=True), ("pool", 2), ("gap",), ("dropout", 0.5),
                                 ("dense", 128, 10, True)]),
    # a MobileNet-style depthwise-separable network
    "mobilenet_small": ((3, 32, 32), [*_cbr(3, 32), *_dw_separable(32, 64, 1), *_dw_separable(64, 128, 2),
                                      *_dw_separable(128, 128, 2), ("gap",), ("dense", 128, 10, True)]),
    # LeNet-5 on CIFAR-sized inputs (guide 004)
    "lenet5": ((3, 32, 32), [("conv", 3, 6, 5, 1, 0, True), ("relu",), ("pool", 2), ("conv", 6, 16, 5, 1, 0, True),
                             ("relu",), ("pool", 2), ("flatten",), ("dense", 400, 120, True), ("relu",),
                             ("dense", 120, 84, True), ("relu",), ("dense", 84, 10, True)]),
}


def conv_layers(name):
    """(in, out, k, stride, padding, groups, input H) of every convolution of a
    network, blocks expanded: for per-convolution GFLOP/s."""
    (c, h, _), spec = NETWORKS[name]
    found = []

    def walk(layers, c, h):
        for kind, *a in layers:
            if kind == "conv":
                found.append((a[0], a[1], a[2], a[3], a[4], 1, h))
                c, h = a[1], (h + 2 * a[4] - a[2]) // a[3] + 1
            elif kind == "dwconv":
                found.append((a[0], a[0], a[1], a[2], a[3], a[0], h))
                h = (h + 2 * a[3] - a[1]) // a[2] + 1
            elif kind == "pool":
                h //= a[0]
            elif kind == "block":
                cin, cout, s = a
                walk([("conv", cin, cout, 3, s, 1, False), ("conv", cout, cout, 3, 1, 1, False)], cin, h)
                if s != 1 or cin != cout:  # the 1x1 projection shortcut
                    walk([("conv", cin, cout, 1, s, 0, False)], cin, h)
                c, h = cout, (h - 1) // s + 1
        return c, h

    walk(spec, c, h)
    return found
