"""The cifar10-fast recipe in PyTorch, for time to accuracy beside fastconv's
(bench/recipes.py cifar10-fast): the same network (fastconv.architectures.fast_cifar),
SGD with Nesterov momentum, the triangular schedule, label smoothing, crop +
flip augmentation, weight averaging and flip test-time augmentation, on the
same arrays, in a process of its own.

    pip install torch==2.13.0
    python bench/torch_cifar_recipe.py --data-dir ../shared/data [--seed 0]

Prints each epoch's test accuracy and the training wall time (evaluation excluded).
"""
import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--data-dir", default=None, help="CIFAR-10 source (see fastconv.datasets.load_cifar10)")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    args = p.parse_args()
    import torch  # first: PyTorch runs with its own OpenMP settings
    import torch.nn as nn

    warnings.filterwarnings("ignore", message="libgomp was loaded before fastconv")
    import numpy as np

    from fastconv.architectures import CIFAR10_MEAN, CIFAR10_STD
    from fastconv.augment import batches, horizontal_flip, random_crop
    from fastconv.datasets import load_cifar10
    from fastconv.train import PRESETS

    recipe = PRESETS["cifar10-fast"]
    epochs = args.epochs or recipe["epochs"]
    x_train, y_train, x_test, y_test = load_cifar10(args.data_dir, verbose=False)
    torch.manual_seed(args.seed)

    def cbr(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    class Res(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.body = nn.Sequential(*cbr(w, w), *cbr(w, w))

        def forward(self, x):
            return x + self.body(x)

    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    model = nn.Sequential(*cbr(3, 24), *cbr(24, 48), nn.MaxPool2d(2), Res(48), *cbr(48, 96), nn.MaxPool2d(2),
                          *cbr(96, 192), nn.MaxPool2d(2), Res(192), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(192, 10))
    opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"], nesterov=True,
                          weight_decay=recipe["weight_decay"])
    steps = epochs * -(-len(x_train) // recipe["batch_size"])
    up = max(1, int(0.25 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (0.1 + 0.9 * t / up) if t < up else max(0.0, (steps - t) / max(1, steps - up)))
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(
        recipe["ema"]), use_buffers=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
    train_seconds = 0.0
    for epoch in range(epochs):
        rng = np.random.default_rng([args.seed, epoch])
        start = time.perf_counter()
        model.train()
        for xb, yb in batches(x_train, y_train, recipe["batch_size"], shuffle=True, rng=rng):
            xb = horizontal_flip(random_crop(xb, 4, rng), 0.5, rng)
            opt.zero_grad(set_to_none=True)
            loss_fn(model((torch.from_numpy(np.ascontiguousarray(xb)) - mean) / std), torch.from_numpy(yb)).backward()
            opt.step()
            ema.update_parameters(model)
            sched.step()
        train_seconds += time.perf_counter() - start
        net = ema.module.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, len(x_test), 1000):
                xb = (torch.from_numpy(x_test[i:i + 1000]) - mean) / std
                logits = net(xb) + net(torch.flip(xb, dims=[3]))
                correct += int((logits.argmax(1).numpy() == y_test[i:i + 1000]).sum())
        print(f"PyTorch {torch.__version__} epoch {epoch + 1}/{epochs}: test accuracy {100 * correct / len(x_test):.2f}% "
              f"after {train_seconds:.0f} s of training ({torch.get_num_threads()} threads)", flush=True)


if __name__ == "__main__":
    main()
