"""Branch containers (Residual, Concat), ReLU6 and the blocks built from them
(SEBasicBlock, MBConv, DenseBlock): forward against plain NumPy, gradcheck in
float64, save and load."""
import numpy as np
import pytest

import fastconv
from fastconv import (CNN, BatchNorm2D, Concat, Conv2D, Dense, DenseBlock, Flatten, GlobalAvgPool2D, MBConv, ReLU,
                      ReLU6, Residual, SEBasicBlock, load_model)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("make, shape", [
    (lambda: Residual([Conv2D(3, 3, 3, padding=1)], None), (2, 3, 5, 5)),
    (lambda: Residual([Conv2D(3, 4, 3, padding=1, stride=2)], [Conv2D(3, 4, 1, stride=2)]), (2, 3, 6, 6)),
    (lambda: Concat([[], [Conv2D(3, 2, 3, padding=1)], [Conv2D(3, 1, 1), ReLU()]]), (2, 3, 5, 4)),
    (lambda: SEBasicBlock(4, 4, reduction=2), (2, 4, 6, 6)),
    (lambda: SEBasicBlock(3, 8, stride=2, reduction=4), (2, 3, 6, 6)),
    (lambda: MBConv(4, 4, expansion=2), (2, 4, 5, 5)),
    (lambda: MBConv(4, 6, expansion=1, stride=2), (2, 4, 6, 6)),
    (lambda: DenseBlock(2, 3, 2, bn_size=2), (3, 3, 5, 5)),
])
def test_composed_blocks_pass_gradcheck(make, shape):
    fastconv.seed(1)
    layer = make().astype(np.float64)
    assert fastconv.gradcheck(layer, _x(*shape)) < 1e-6


def test_relu6_values_and_gradient():
    x = np.array([[-1.0, 0.5, 5.9, 6.0, 7.0]])
    layer = ReLU6()
    np.testing.assert_array_equal(layer.forward(x), [[0, 0.5, 5.9, 6.0, 6.0]])
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), [[0, 1, 1, 0, 0]])
    assert fastconv.gradcheck(ReLU6(), _x(2, 7) * 4 + 3) < 1e-6


def test_residual_and_concat_compute_what_they_say():
    fastconv.seed(0)
    conv, short = Conv2D(2, 3, 3, padding=1), Conv2D(2, 3, 1)
    x = _x(2, 2, 4, 4).astype(np.float32)
    np.testing.assert_allclose(Residual(conv, short).forward(x), conv.forward(x) + short.forward(x), rtol=1e-6)
    same = Conv2D(2, 2, 3, padding=1)
    np.testing.assert_allclose(Residual([same]).forward(x), same.forward(x) + x, rtol=1e-6)
    out = Concat([[], [conv]]).forward(x)
    np.testing.assert_array_equal(out[:, :2], x)
    np.testing.assert_allclose(out[:, 2:], conv.forward(x), rtol=1e-6)


def test_block_shapes():
    x = _x(2, 8, 8, 8).astype(np.float32)
    assert DenseBlock(3, 8, 4).forward(x).shape == (2, 8 + 3 * 4, 8, 8)
    assert isinstance(MBConv(8, 8).body[0], Residual)  # residual when shapes match
    assert not any(isinstance(l, Residual) for l in MBConv(8, 16).body)
    assert MBConv(8, 16, stride=2).forward(x).shape == (2, 16, 4, 4)
    assert SEBasicBlock(8, 16, stride=2).forward(x).shape == (2, 16, 4, 4)


def test_mismatched_branches_say_so():
    x = _x(1, 2, 4, 4).astype(np.float32)
    with pytest.raises(ValueError, match="main branch gives shape \\(1, 3, 4, 4\\), the shortcut \\(1, 2, 4, 4\\)"):
        Residual([Conv2D(2, 3, 1)]).forward(x)
    with pytest.raises(ValueError, match="all but the channel axis must match"):
        Concat([[], [Conv2D(2, 2, 3)]]).forward(x)
    with pytest.raises(TypeError, match="main\\[0\\] is a int"):
        Residual([3])


def test_composed_model_saves_and_loads(tmp_path):
    fastconv.seed(3)
    model = CNN([Conv2D(3, 8, 3, padding=1, bias=False), BatchNorm2D(8), ReLU(),
                 Residual([Conv2D(8, 8, 3, padding=1), ReLU6()], [Conv2D(8, 8, 1)]),
                 SEBasicBlock(8, 8, reduction=4), MBConv(8, 8, expansion=2), DenseBlock(2, 8, 4),
                 Concat([[], [Conv2D(16, 4, 1)]]), GlobalAvgPool2D(), Flatten(), Dense(20, 10)])
    x = _x(2, 3, 8, 8).astype(np.float32)
    model.eval()
    out = model.forward(x)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz").eval()
    np.testing.assert_allclose(loaded.forward(x), out, rtol=1e-5, atol=1e-6)
    assert loaded.num_params() == model.num_params()
