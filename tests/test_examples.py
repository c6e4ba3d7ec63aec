"""The examples run, and say what is true."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import CNN, Conv2D
from fastconv.signal import receptive_field

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import receptive_field as rf_example  # noqa: E402


def test_input_gradients_cover_exactly_the_receptive_field_of_a_linear_stack():
    fastconv.seed(0)
    model = CNN([Conv2D(1, 2, 3, padding=1), Conv2D(2, 2, 5, padding=2), Conv2D(2, 1, 3, padding=1, dilation=1)],
                fuse=False).astype(np.float64)
    grad = rf_example.input_gradient(model, size=33)
    rows, cols = np.nonzero(grad)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == receptive_field(model.layers) == (9, 9)


def test_receptive_field_example_draws_its_figure(tmp_path):
    pytest.importorskip("matplotlib")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "receptive_field.py"), "--out",
                          str(tmp_path / "rf.png")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "conv stack: input gradient nonzero over" in out.stdout
    assert (tmp_path / "rf.png").stat().st_size > 5000
