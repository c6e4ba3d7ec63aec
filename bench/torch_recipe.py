"""The MNIST recipes in PyTorch, for time-to-accuracy side by side with
fastconv's (bench/recipes.py): the same network (the guides' CNN), optimizer,
one-cycle schedule, label smoothing, batch size and augmentation, on the same
arrays, in a process of its own.

    pip install torch==2.13.0
    python bench/torch_recipe.py mnist-fast [--seeds 1]

Prints and returns each run's test accuracy and training wall time
(evaluation excluded).
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("preset", choices=["mnist-fast", "mnist-99.4"], help="the recipe")
    p.add_argument("--seeds", type=int, default=1, help="runs, seeds 0..N-1")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = p.parse_args()
    import warnings

    import torch  # first: PyTorch runs with its own OpenMP settings, as a PyTorch user's script would
    import torch.nn as nn

    warnings.filterwarnings("ignore", message="libgomp was loaded before fastconv")  # only NumPy helpers used
    from fastconv.augment import batches, random_shift
    from fastconv.datasets import load_mnist
    from fastconv.train import PRESETS

    recipe = PRESETS[args.preset]
    if args.threads:
        torch.set_num_threads(args.threads)
    x_train, y_train, x_test, y_test = load_mnist(verbose=False)
    results = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"], nesterov=True,
                              weight_decay=recipe["weight_decay"])
        steps = recipe["epochs"] * -(-len(x_train) // recipe["batch_size"])
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps, pct_start=0.3)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
        train_seconds, history = 0.0, []
        for epoch in range(recipe["epochs"]):
            rng = np.random.default_rng([seed, epoch])
            start = time.perf_counter()
            model.train()
            for xb, yb in batches(x_train, y_train, recipe["batch_size"], shuffle=True, rng=rng):
                if recipe.get("augment"):
                    xb = random_shift(xb, 2, rng)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(torch.from_numpy(np.ascontiguousarray(xb))), torch.from_numpy(yb)).backward()
                opt.step()
                sched.step()
            train_seconds += time.perf_counter() - start
            model.eval()
            with torch.no_grad():
                preds = torch.cat([model(torch.from_numpy(x_test[i:i + 1000])).argmax(1)
                                   for i in range(0, len(x_test), 1000)]).numpy()
            history.append(dict(epoch=epoch + 1, test_acc=float((preds == y_test).mean()), seconds=train_seconds))
        results.append(dict(seed=seed, test_accuracy=history[-1]["test_acc"], train_seconds=train_seconds,
                            history=history, torch=torch.__version__, threads=torch.get_num_threads()))
        print(f"PyTorch {torch.__version__} {args.preset} seed {seed}: {100 * history[-1]['test_acc']:.2f}% in "
              f"{train_seconds:.1f} s of training ({torch.get_num_threads()} threads)", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
