"""Evaluate a saved model:  python -m fastconv.evaluate model.npz [--dataset D] [--data-dir DIR]

Prints test accuracy and the confusion matrix; refuses files that are not
fastconv models."""
from __future__ import annotations

import argparse
import sys



from .model import load_model, read_model_file
from .train import DATASETS, confusion_matrix, evaluate, load_data


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fastconv.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default: the data set the model was trained on")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    try:
        meta, _ = read_model_file(args.model)
        model = load_model(args.model)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = args.dataset or meta.get("extra", {}).get("dataset", "mnist")
    _, _, x_test, y_test = load_data(name, args.data_dir)
    loss, acc, preds = evaluate(model, x_test, y_test)
    cm = confusion_matrix(y_test, preds)
    print(f"{args.model}: {name} test accuracy {100 * acc:.2f}% ({int((preds == y_test).sum())}/{len(y_test)}), "
          f"loss {loss:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print("      " + " ".join(f"{j:>5d}" for j in range(cm.shape[1])))
    for i, row in enumerate(cm):
        print(f"{i:>5d} " + " ".join(f"{v:>5d}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
