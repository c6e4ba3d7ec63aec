"""Every Python block of the README runs as it stands: pasted into a fresh
interpreter (a subprocess in an empty directory), with no names supplied."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastconv.datasets import load_mnist

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(verbose=False)  # into the cache the blocks then read


def _run(block, tmp_path):
    out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"README block failed:\n{block}\n--- stderr ---\n{out.stderr[-3000:]}"
    return out.stdout


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_as_pasted(index, tmp_path, mnist):
    stdout = _run(BLOCKS[index], tmp_path)
    block = BLOCKS[index]
    if "cnn.update_params" in block:  # the guides' drop-in loop learns
        assert "total parameters: 225,034" in stdout
        assert float(stdout.split()[-1]) > 0.9, stdout
    if "opt.step()" in block:  # the optimizer loop: one epoch, saved and loaded
        assert float(stdout.split()[-1]) > 0.97, stdout
        assert (tmp_path / "model.npz").exists()
    if "im2col(x, 3, 3, stride=1" in block:
        assert "(9, 43264) (64, 1, 28, 28) (64, 1, 14, 14)" in stdout
