"""Draw a receptive field from input gradients (guide 004's picture).

    python examples/receptive_field.py [--out receptive_field.png]

Backpropagates a gradient of 1 at the centre unit of a network's last feature
map (every other unit 0) to the input: the pixels with a nonzero input
gradient are the unit's receptive field, and the gradient's size shows the
*effective* receptive field -- concentrated in the middle, far smaller than
the theoretical square.  Draws the theoretical and the effective field side
by side for a plain conv stack and for one with a residual block (matplotlib:
pip install "fastconv[plots]").
"""
import argparse

import numpy as np

import fastconv
from fastconv import CNN, BatchNorm2D, Conv2D, MaxPool2D, ReLU, Residual
from fastconv.signal import receptive_field


def input_gradient(model, size=64, seed=0):
    """|d (centre unit of the last feature map, summed over channels) / d input|."""
    x = np.random.default_rng(seed).standard_normal((1, 1, size, size))
    out = model.forward(x)
    d_out = np.zeros_like(out)
    d_out[0, :, out.shape[2] // 2, out.shape[3] // 2] = 1.0
    return np.abs(model.backward(d_out))[0, 0]


def longest_path(layers):
    """The layers on the longest path of a model (a Residual's main branch)."""
    out = []
    for layer in layers:
        out += longest_path(layer.main) if isinstance(layer, Residual) else [layer]
    return out


def networks():
    fastconv.seed(0)
    plain = CNN([Conv2D(1, 8, 3, padding=1), ReLU(), Conv2D(8, 8, 3, padding=1), ReLU(), MaxPool2D(2),
                 Conv2D(8, 8, 3, padding=1), ReLU(), Conv2D(8, 8, 3, padding=1), ReLU()], fuse=False).astype(np.float64)
    residual = CNN([Conv2D(1, 8, 3, padding=1), ReLU(), MaxPool2D(2),
                    Residual([Conv2D(8, 8, 3, padding=1), BatchNorm2D(8), ReLU(), Conv2D(8, 8, 3, padding=1)]),
                    ReLU()], fuse=False).astype(np.float64)
    return {"conv stack": plain, "with a residual block": residual}


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--out", default="receptive_field.png", help="figure to write")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = networks()
    fig, axes = plt.subplots(1, len(nets), figsize=(5 * len(nets), 4.5), squeeze=False)
    for ax, (name, model) in zip(axes[0], nets.items()):
        grad = input_gradient(model)
        rows, cols = np.nonzero(grad)
        extent = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
        theory = receptive_field(longest_path(model.layers))
        image = ax.imshow(grad / grad.max(), cmap="magma")
        ax.set_title(f"{name}\nnonzero: {extent[0]}x{extent[1]} px, theory (convs, pools): {theory[0]}x{theory[1]}")
        fig.colorbar(image, ax=ax, label="|input gradient| / max")
        print(f"{name}: input gradient nonzero over {extent[0]}x{extent[1]} pixels "
              f"(theoretical receptive field {theory[0]}x{theory[1]})")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
