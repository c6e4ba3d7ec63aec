"""What a user meets (issue 17): help texts, logs, files, plots, errors, info."""
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import datasets
from fastconv import train as train_cmd

ROOT = Path(__file__).resolve().parent.parent


def test_every_option_has_help_and_shows_its_default():
    parser = train_cmd._parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help text"
    text = parser.format_help()
    assert "(default: 8)" in text and "(default: 64)" in text and "(default: runs/latest)" in text


def test_the_installed_script_names_itself(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fastconv-train"])
    assert train_cmd._parser().format_usage().startswith("usage: fastconv-train")
    monkeypatch.setattr(sys, "argv", ["/x/fastconv/train.py"])
    assert train_cmd._parser().format_usage().startswith("usage: python -m fastconv.train")


@pytest.mark.parametrize("script", ["cold_start.py", "profile_step.py", "report.py", "thread_scaling.py"])
def test_bench_script_descriptions_are_whole_sentences(script):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    description = out.stdout.split("\n\n")[1].strip()
    assert description.endswith("."), description


def _short_run(tmp_path, *extra):
    return train_cmd.main(["--limit", "256", "--test-limit", "64", "--epochs", "1", "--out", str(tmp_path), *extra])


def test_no_progress_bar_in_a_log_and_one_line_per_epoch(mnist_cached, tmp_path, capfd):
    _short_run(tmp_path, "--no-plots")  # stderr is captured: not a terminal
    out, err = capfd.readouterr()
    assert "\r" not in err and "\r" not in out
    assert sum(line.startswith("epoch  1/1:") for line in out.splitlines()) == 1


def test_saved_files_have_the_usual_mode(mnist_cached, tmp_path):
    old = os.umask(0o022)
    try:
        _short_run(tmp_path, "--no-plots")
    finally:
        os.umask(old)
    for name in ("model.npz", "checkpoint.npz", "metrics.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_figures_need_only_the_plots_extra(mnist_cached, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    metrics = _short_run(tmp_path)
    assert metrics["test_accuracy"] > 0
    assert "pip install 'fastconv[plots]'" in capsys.readouterr().out
    assert not (tmp_path / "curves.png").exists()


def test_figures_of_a_one_epoch_fashion_run(tmp_path):
    pytest.importorskip("matplotlib")
    model = fastconv.architectures.seed_cnn()
    history = [dict(epoch=1, train_loss=0.5, test_loss=0.4, train_acc=0.8, test_acc=0.85)]
    confusion = np.arange(100).reshape(10, 10)
    train_cmd.write_figures(tmp_path, history, model, confusion, datasets.FASHION_MNIST.class_names)
    for name in ("curves.png", "filters.png", "confusion.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_a_missing_fashion_mnist_says_how_to_install_it(tmp_path, monkeypatch):
    spec = datasets.FASHION_MNIST.__class__(**{**datasets.FASHION_MNIST.__dict__, "mirrors": (),
                                               "system_dir": str(tmp_path / "absent")})
    with pytest.raises(datasets.DatasetError, match="apt-get install dataset-fashion-mnist"):
        datasets.fetch(spec, tmp_path, cache=tmp_path / "cache", verbose=False)
    # and the command ends in that message, not a traceback
    def missing(*args, **kwargs):
        raise datasets.DatasetError("could not get verified fashion-mnist files; sudo apt-get install ...")

    monkeypatch.setattr(datasets, "load", missing)
    with pytest.raises(SystemExit, match="^error: could not get verified fashion-mnist"):
        train_cmd.main(["--dataset", "fashion-mnist", "--out", str(tmp_path / "run")])


def test_numba_says_once_that_it_compiles(caplog):
    numba_kernels = pytest.importorskip("fastconv.backends.numba_kernels")

    class Fresh:  # a dispatcher that has no machine code yet
        signatures = []

    caplog.set_level(logging.INFO, logger="fastconv")
    told = numba_kernels._told_about_compiling
    numba_kernels._told_about_compiling = False
    try:
        numba_kernels._say_compiling_once(Fresh())
        numba_kernels._say_compiling_once(Fresh())
    finally:
        numba_kernels._told_about_compiling = told
    assert caplog.text.count("compiles them, 10-20 s") == 1


def test_info_command_says_what_fastconv_runs_on():
    out = subprocess.run([sys.executable, "-m", "fastconv.info"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for expected in ("fastconv 0.", "backends:", "numpy: available", "default:", "threads:", "numba cache:",
                     "data cache:"):
        assert expected in out.stdout, expected
    if "c" in fastconv.available_backends():
        assert "extension level" in out.stdout
