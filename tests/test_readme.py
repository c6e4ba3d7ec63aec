"""The README's Python examples run as written (on a slice of MNIST)."""
import re
from pathlib import Path

import numpy as np

import fastconv

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_drop_in_example(capsys):
    block = next(b for b in _python_blocks() if "cnn.update_params" in b)
    rng = np.random.default_rng(0)
    x_batch = rng.random((8, 1, 28, 28), dtype=np.float32)
    onehot = np.eye(10)[rng.integers(0, 10, 8)]
    exec(block, {"x_batch": x_batch, "onehot": onehot})
    assert "total parameters: 225,034" in capsys.readouterr().out


def test_optimizer_example(capsys, monkeypatch, tmp_path):
    block = next(b for b in _python_blocks() if "opt.step()" in b and "load_mnist" in b)
    full = fastconv.datasets.load_mnist(verbose=False)
    small = (full[0][:2000], full[1][:2000], full[2][:1000], full[3][:1000])
    monkeypatch.setattr(fastconv.datasets, "load_mnist", lambda *a, **k: small)
    monkeypatch.chdir(tmp_path)
    exec(block, {})
    assert float(capsys.readouterr().out.split()[-1]) > 0.85
    assert (tmp_path / "model.npz").exists()
