"""Train a CNN on MNIST, Fashion-MNIST or CIFAR-10:  python -m fastconv.train [options]

Prints the architecture, a progress bar per epoch, and per-epoch train/test
loss and accuracy; writes model.npz, metrics.json, curves.png, filters.png,
confusion.png and a checkpoint per epoch (``--resume`` continues from it and
gives the same result as an uninterrupted run with the same seed).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, _threads, backends, datasets, distributed
from .architectures import ARCHITECTURES, INPUT_CHANNELS
from .distributed import DataParallel
from .augment import batches, horizontal_flip, random_crop, random_shift
from .losses import SoftmaxCrossEntropy
from ._npz import read_npz, write_npz
from ._progress import NoProgress
from .model import build_model, model_arrays, parse_json_entry
from .optim import SGD, Adam, AdamW, CosineAnnealingLR, OneCycleLR, StepLR, TriangularLR, WeightAverage

CHECKPOINT = "checkpoint.npz"


# Options that define a run; a resumed run takes them from its checkpoint.
SETTINGS = ("dataset", "arch", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
            "schedule", "seed", "augment", "limit", "label_smoothing", "ema", "tta", "preset")
DATASETS = (*sorted(datasets.SPECS), "cifar10")

# Recipes: option values a --preset sets (options given on the command line win).
# Their measured time to accuracy: docs/recipes.md (bench/recipes.py runs the seeds).
PRESETS = {
    "mnist-fast": dict(dataset="mnist", arch="seed", epochs=2, batch_size=128, optimizer="sgd", lr=0.2,
                       momentum=0.9, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1),
    "mnist-99.4": dict(dataset="mnist", arch="seed", epochs=5, batch_size=128, optimizer="sgd", lr=0.2,
                       momentum=0.9, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1, augment=True),
    "cifar10-fast": dict(dataset="cifar10", arch="fast_cifar", epochs=8, batch_size=256, optimizer="sgd", lr=0.2,
                         momentum=0.9, weight_decay=5e-4, schedule="triangular", label_smoothing=0.2, augment=True,
                         ema=0.99, tta=True),
}


def parse_args(argv=None):
    """The options, with ``args.given``: the names the command line set explicitly."""
    p = _parser()
    args = p.parse_args(argv)
    quiet = _parser()
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    args.given = sorted(vars(quiet.parse_args(argv)))
    if args.preset is not None:
        for key, value in PRESETS[args.preset].items():
            if key not in args.given:
                setattr(args, key, value)
    if args.lr is None:
        args.lr = 0.05 if args.optimizer == "sgd" else 1e-3
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _prog() -> str:
    """How the user started this command: the installed script or ``python -m``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("fastconv-") else "python -m fastconv.train"


def _parser():
    p = argparse.ArgumentParser(prog=_prog(), description=" ".join(__doc__.split("\n\n")[0].split()),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a recipe: sets the options it names unless given (see docs/recipes.md)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist", help="data set")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="seed",
                   help="network (fastconv.architectures): seed = the guides' CNN, bn = padded convolutions with "
                        "BatchNorm; simple_cnn, vgg_bn, resnet20, resnet18, fast_cifar for CIFAR-10")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=64, help="images per optimizer step")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd", help="optimizer")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.05 for sgd, 1e-3 for adam/adamw)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (Nesterov)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    p.add_argument("--schedule", choices=["none", "step", "cosine", "onecycle", "triangular"], default="cosine",
                   help="learning-rate schedule, stepped every batch")
    p.add_argument("--augment", action="store_true",
                   help="MNIST: random shifts of up to 2 pixels; CIFAR-10: random crop (padding 4) + horizontal flip")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="evaluate an exponential moving average of the weights with this decay per step")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average the logits of x and its mirror")
    p.add_argument("--backend", choices=list(backends.BACKEND_NAMES), default=None,
                   help="kernel backend (default: the fastest that loads: c, then numba)")
    p.add_argument("--threads", type=int, default=None, help="threads for kernels and BLAS (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling, augmentation, dropout")
    p.add_argument("--data-dir", default=None, help="directory with the idx files (raw or .gz)")
    p.add_argument("--out", default="runs/latest", help="output directory (on --resume: the checkpoint's)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue from a checkpoint.npz, with its settings")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    p.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                   help="stop after this epoch, leaving the checkpoint (as an interrupted run would)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--distributed", action="store_true",
                   help="require an MPI launch (mpirun -np N ...); without it an MPI launch is detected anyway")
    p.add_argument("--sync-bn", action="store_true",
                   help="with several ranks: BatchNorm statistics over the global batch, not each rank's shard")
    return p


def take_checkpoint_settings(args, saved: dict, checkpoint: Path) -> None:
    """A resumed run takes its settings (SETTINGS) and output directory from
    the checkpoint; an option given explicitly with another value is an error."""
    for key in SETTINGS:
        if key not in saved:
            continue
        if key in args.given and getattr(args, key) != saved[key]:
            flag = "--" + key.replace("_", "-")
            sys.exit(f"--resume: the checkpoint was made with {flag} {saved[key]!r}, this command gives "
                     f"{getattr(args, key)!r}; a resumed run keeps its settings (leave {flag} out)")
        setattr(args, key, saved[key])
    if "out" not in args.given:
        args.out = str(checkpoint.parent)


def make_optimizer(args, model):
    if args.optimizer == "sgd":
        return SGD(model, args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                   weight_decay=args.weight_decay)
    cls = Adam if args.optimizer == "adam" else AdamW
    return cls(model, args.lr, weight_decay=args.weight_decay)


def make_schedule(args, optimizer, steps_per_epoch):
    total = args.epochs * steps_per_epoch
    if args.schedule == "step":
        return StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if args.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total, warmup_steps=min(200, total // 10))
    if args.schedule == "onecycle":
        return OneCycleLR(optimizer, max_lr=args.lr, total_steps=total)
    if args.schedule == "triangular":
        return TriangularLR(optimizer, max_lr=args.lr, total_steps=total)
    return None


def evaluate(model, x, y, batch_size=1000, dp=None, tta=False):
    """(mean loss, accuracy, predictions) in eval mode.  With ``dp`` over
    several ranks each evaluates its shard of x; the figures and the
    predictions (in x's order) are combined on every rank.  ``tta``: the
    logits are the mean of those of x and of x mirrored left-right."""
    if dp is not None and dp.size > 1:
        start, stop = dp.shard_bounds(len(x))
        loss, _, preds = evaluate(model, x[start:stop], y[start:stop], batch_size, tta=tta) if stop > start else (
            0.0, 0.0, np.empty(0, np.int64))
        total = dp.sum(loss * (stop - start))[0]
        preds = np.concatenate(dp.comm.allgather(preds))
        return total / len(x), float((preds == y).mean()), preds
    loss_fn = SoftmaxCrossEntropy()
    was_training = model.training
    model.eval()
    total, preds = 0.0, []
    try:
        for i in range(0, len(x), batch_size):
            logits = model.forward(x[i:i + batch_size])
            if tta:
                logits = (logits + model.forward(np.ascontiguousarray(x[i:i + batch_size, :, :, ::-1]))) / 2
            total += loss_fn.forward(logits, y[i:i + batch_size]) * len(logits)
            preds.append(logits.argmax(axis=1))
    finally:
        model.train(was_training)
    preds = np.concatenate(preds)
    return total / len(x), float((preds == y).mean()), preds


def _reseed_randomness(model, seed, epoch, rank=0):
    """Dropout generators restart from (seed, epoch, layer) every epoch, so a
    resumed run draws exactly the masks of an uninterrupted one; each rank of
    a distributed run draws its own."""
    k = 0

    def visit(layer):
        nonlocal k
        if hasattr(layer, "rng"):
            layer.rng = np.random.default_rng([seed, epoch, k] + ([rank] if rank else []))
            k += 1
        for _, child in layer.children():
            visit(child)

    visit(model)


def train_epoch(model, optimizer, schedule, x, y, args, epoch, progress, dp, ema=None):
    """One pass over (x, y) in global batches of args.batch_size; each rank
    trains on its shard of every batch.  Returns (loss, accuracy, seconds)."""
    loss_fn = SoftmaxCrossEntropy(label_smoothing=args.label_smoothing)
    _reseed_randomness(model, args.seed, epoch, dp.rank)
    model.train()
    rng = np.random.default_rng([args.seed, epoch])  # shuffling and augmentation of this epoch
    seen = correct = 0
    total_loss = 0.0
    start = time.perf_counter()
    bar = progress(total=len(x), desc=f"epoch {epoch + 1}/{args.epochs}", unit="img", leave=False)
    for xb, yb in batches(x, y, args.batch_size, shuffle=True, rng=rng):
        if args.augment:  # the whole batch on every rank: the same draws as one process
            xb = (horizontal_flip(random_crop(xb, 4, rng), 0.5, rng) if args.dataset == "cifar10"
                  else random_shift(xb, 2, rng))
        xb, yb = dp.shard(xb), dp.shard(yb)
        logits = model.forward(xb)
        loss = loss_fn.forward(logits, yb)
        dp.backward(loss_fn.backward())
        optimizer.step()
        if ema is not None:
            ema.update()
        if schedule is not None:
            schedule.step()
        seen += len(xb)
        correct += int((logits.argmax(axis=1) == yb).sum())
        total_loss += loss * len(xb)
        bar.update(len(xb) * dp.size)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    bar.close()
    total_loss, correct, seen = dp.sum(total_loss, correct, seen)
    return total_loss / seen, correct / seen, time.perf_counter() - start


def _progress_bar(args):
    """tqdm on a terminal; nothing in a log file or a pipe (one line per epoch is printed either way)."""
    if not args.no_progress and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            return tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass
    return NoProgress


def _show_library_messages():
    """The command shows fastconv's INFO messages (downloads, Numba's first
    compile) on stderr; as a library fastconv only logs them."""
    logger = logging.getLogger("fastconv")
    if not any(getattr(h, "_fastconv_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        handler._fastconv_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def save_checkpoint(path, model, optimizer, schedule, state, ema=None):
    arrays = model_arrays(model)
    arrays.update({"opt:" + k: v for k, v in optimizer.state_dict().items()})
    if ema is not None:
        arrays.update({"ema:" + k: v for k, v in ema.state_dict().items()})
    state = {**state, "schedule_step": schedule.last_step if schedule else 0,
             "architecture": model.get_config(), "format": "fastconv.checkpoint"}
    arrays["__checkpoint__"] = np.array(json.dumps(state))
    write_npz(path, arrays)


def load_checkpoint(path, arrays=None):
    """(state dict, model, optimizer state, weight-average state) of a checkpoint (its arrays given,
    or read from ``path``); ValueError naming the file for anything that is
    not a readable one (untrusted input)."""
    path = Path(path)
    arrays = dict(read_npz(path, "fastconv training checkpoint") if arrays is None else arrays)
    if "__checkpoint__" not in arrays:
        raise ValueError(f"{path} is not a fastconv training checkpoint")
    state = parse_json_entry(arrays.pop("__checkpoint__"), path, "checkpoint state")
    for key, kind in (("architecture", dict), ("args", dict), ("history", list), ("epoch", int),
                      ("schedule_step", int)):
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise ValueError(f"{path}: the checkpoint state's {key!r} is {state.get(key)!r:.80}; "
                             f"expected a {kind.__name__}")
    model = build_model(state["architecture"], arrays, path)
    opt_state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt:")}
    ema_state = {k[4:]: v for k, v in arrays.items() if k.startswith("ema:")}
    return state, model, opt_state, ema_state


def write_figures(out: Path, history, model, confusion, class_names):
    """curves.png, filters.png and confusion.png (needs matplotlib: the [plots] extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, scale, title in ((a1, "loss", 1, "loss"), (a2, "acc", 100, "accuracy (%)")):
        for split in ("train", "test"):
            ax.plot(epochs, [scale * h[f"{split}_{key}"] for h in history], "o-", label=split)
        ax.set(xlabel="epoch", ylabel=title, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, not 0.96 ... 1.04
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)

    conv = next(l for l in model.layers if hasattr(l, "kernel_size"))
    w = conv.weights[:, 0]
    limit = float(np.abs(w).max()) or 1.0  # one symmetric scale for every tile: filters compare
    cols = 8
    rows = int(np.ceil(len(w) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1 + 1, rows * 1.1), squeeze=False)
    for ax, k in zip(np.ravel(axes), range(rows * cols)):
        ax.axis("off")
        if k < len(w):
            image = ax.imshow(w[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
    fig.suptitle("first-layer filters (input channel 0)")
    fig.savefig(out / "filters.png", dpi=100)
    plt.close(fig)

    k = len(class_names)
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(confusion, cmap="Blues")
    ax.set(xlabel="predicted", ylabel="true", title="test confusion matrix", xticks=range(k), yticks=range(k))
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    for i in range(confusion.shape[0]):
        for j in range(confusion.shape[1]):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=9,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    fig.colorbar(im, label="images")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100)
    plt.close(fig)


def confusion_matrix(y_true, y_pred, k=10):
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def main(argv=None):
    args = parse_args(argv)
    comm = distributed.world()
    if args.distributed and comm is None:
        sys.exit("error: --distributed needs several ranks: mpirun -np N python -m fastconv.train ...")
    if comm is None:
        return run(args, DataParallel(None, threads=None))
    try:  # a failing rank ends every rank, with its number and the error
        return run(args, DataParallel(None, comm, threads=None))
    except SystemExit as exc:
        if exc.code in (None, 0):
            raise
        distributed.abort_on_error(comm, RuntimeError(exc.code))
    except BaseException as exc:  # noqa: BLE001 - reported, then every rank ends
        distributed.abort_on_error(comm, exc)


def run(args, dp):
    """The training command for parsed ``args``; ``dp`` holds the ranks (one without MPI)."""
    leader = dp.rank == 0
    say = print if leader else (lambda *a, **k: None)
    if args.threads is not None:
        _threads.set_num_threads(args.threads)
    elif dp.comm is not None:
        _threads.set_num_threads(distributed.default_threads(dp.comm))  # never oversubscribe
    if args.backend is not None:
        backends.set_backend(args.backend)
    if args.resume:
        # rank 0 reads the file and sends it: the other ranks need no shared file system
        arrays = read_npz(args.resume, "fastconv training checkpoint") if leader else None
        arrays = dp.comm.bcast(arrays, root=0) if dp.comm is not None else arrays
        state, model, opt_state, ema_state = load_checkpoint(args.resume, arrays)
        take_checkpoint_settings(args, state["args"], Path(args.resume))
    if dp.comm is not None:
        distributed.check_same_on_every_rank(
            dp.comm, "command line", {k: getattr(args, k) for k in (*SETTINGS, "resume", "backend", "sync_bn")})
    out = Path(args.out)
    if leader:
        out.mkdir(parents=True, exist_ok=True)
    progress = _progress_bar(args) if leader else NoProgress
    if leader:
        _show_library_messages()

    try:
        x_train, y_train, x_test, y_test = load_data(args.dataset, args.data_dir)
    except datasets.DatasetError as exc:
        sys.exit(f"error: {exc}")
    if INPUT_CHANNELS[args.arch] != x_train.shape[1]:
        sys.exit(f"error: --arch {args.arch} takes {INPUT_CHANNELS[args.arch]}-channel images; {args.dataset} has "
                 f"{x_train.shape[1]}. For {args.dataset} use one of: "
                 + ", ".join(a for a, c in INPUT_CHANNELS.items() if c == x_train.shape[1]))
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    if args.test_limit:
        x_test, y_test = x_test[:args.test_limit], y_test[:args.test_limit]

    history, start_epoch = [], 0
    if args.resume:
        history, start_epoch = state["history"], state["epoch"]
        say(f"resuming after epoch {start_epoch} from {args.resume}")
    else:
        np.random.seed(args.seed)
        from . import _random

        _random.seed(args.seed)
        model = ARCHITECTURES[args.arch]()
        opt_state = ema_state = None
    dp.attach(model, sync_batchnorm=args.sync_bn)
    ema = WeightAverage(model, args.ema) if args.ema else None
    if ema is not None and ema_state:
        ema.load_state_dict(ema_state)

    def evaluate_now():
        with ema.swapped() if ema is not None else contextlib.nullcontext():
            return evaluate(model, x_test, y_test, dp=dp, tta=args.tta)

    optimizer = make_optimizer(args, model)
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    schedule = make_schedule(args, optimizer, steps_per_epoch)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
        if schedule is not None:
            schedule.last_step = state["schedule_step"]
            optimizer.lr = schedule.lr_at(schedule.last_step)

    say(model.summary(x_train.shape[1:]))
    say(f"backend={backends.get_backend()} threads={_threads.get_num_threads()} ranks={dp.size} "
        f"train={len(x_train)} test={len(x_test)} optimizer={args.optimizer} lr={args.lr} "
        f"schedule={args.schedule} augment={args.augment}")

    for epoch in range(start_epoch, args.epochs):
        comm_before = dp.communication_seconds
        train_loss, train_acc, seconds = train_epoch(model, optimizer, schedule, x_train, y_train,
                                                     args, epoch, progress, dp, ema)
        test_loss, test_acc, preds = evaluate_now()
        history.append(dict(epoch=epoch + 1, train_loss=train_loss, train_acc=train_acc,
                            test_loss=test_loss, test_acc=test_acc, seconds=seconds,
                            images_per_second=len(x_train) / seconds,
                            communication_seconds=dp.communication_seconds - comm_before))
        say(f"epoch {epoch + 1:2d}/{args.epochs}: train loss {train_loss:.4f} acc {100 * train_acc:.2f}% | "
            f"test loss {test_loss:.4f} acc {100 * test_acc:.2f}% | {seconds:.1f} s "
            f"({len(x_train) / seconds:.0f} img/s)", flush=True)
        if leader:
            save_checkpoint(out / CHECKPOINT, model, optimizer, schedule,
                            dict(epoch=epoch + 1, history=history, args=_saved_args(args)), ema)
        if args.stop_after is not None and epoch + 1 >= args.stop_after and epoch + 1 < args.epochs:
            say(f"stopping after epoch {epoch + 1}; continue with --resume {out / CHECKPOINT}")
            return dict(stopped_after=epoch + 1, epochs=history)

    test_loss, test_acc, preds = evaluate_now()
    if not leader:
        return dict(test_accuracy=test_acc, epochs=history, rank=dp.rank)
    confusion = confusion_matrix(y_test, preds)
    with ema.swapped() if ema is not None else contextlib.nullcontext():  # the weights that were evaluated
        model.save(out / "model.npz", extra=dict(dataset=args.dataset, arch=args.arch))
    steps = steps_per_epoch * max(1, len(history))
    metrics = dict(
        test_accuracy=test_acc, test_loss=test_loss, epochs=history,
        seconds=sum(h["seconds"] for h in history), backend=backends.get_backend(),
        threads=_threads.get_num_threads(), world_size=dp.size,
        communication_seconds_per_step=dp.communication_seconds / steps,
        args=_saved_args(args), confusion=confusion.tolist(),
        versions=dict(fastconv=__version__, numpy=np.__version__, python=platform.python_version()),
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    figures = ""
    if not args.no_plots:
        try:
            write_figures(out, history, model, confusion, class_names(args.dataset))
            figures = ", curves.png, filters.png, confusion.png"
        except ImportError:
            figures = " (no figures: matplotlib is not installed; pip install 'fastconv[plots]')"
    print(f"final test accuracy {100 * test_acc:.2f}%; wrote {out}/model.npz, metrics.json{figures}")
    return metrics


def load_data(name: str, data_dir=None):
    """(x_train, y_train, x_test, y_test) of a data set the command knows."""
    if name == "cifar10":
        return datasets.load_cifar10(data_dir)
    return datasets.load(datasets.SPECS[name], data_dir)


def class_names(name: str):
    return datasets.CIFAR10_CLASSES if name == "cifar10" else datasets.SPECS[name].class_names


def _saved_args(args) -> dict:
    return {k: v for k, v in vars(args).items() if k != "given"}


if __name__ == "__main__":
    main()
