"""hypothesis: random configurations; every backend agrees with the reference,
and col2im is the adjoint of im2col."""
import numpy as np
from hypothesis import given, settings, strategies as st

import fastconv
from conftest import TOL


@st.composite
def conv_configs(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    fh, fw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # input at least as large as the dilated kernel minus the padding
    h = draw(st.integers(max(1, dh * (fh - 1) + 1 - 2 * ph), 12))
    w = draw(st.integers(max(1, dw * (fw - 1) + 1 - 2 * pw), 12))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return dict(shape=(n, c, h, w), k=(fh, fw), stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), dtype=dtype, seed=draw(st.integers(0, 2**32 - 1)))


def _kw(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])


@settings(max_examples=60, deadline=None)
@given(conv_configs())
def test_backends_agree_with_reference(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"]).astype(cfg["dtype"])
    ref_col = fastconv.im2col(x, *cfg["k"], backend="numpy", **_kw(cfg))
    col = rng.standard_normal(ref_col.shape).astype(cfg["dtype"])
    ref_x = fastconv.col2im(col, x.shape, *cfg["k"], backend="numpy", **_kw(cfg))
    for name in fastconv.available_backends():
        got_col = fastconv.im2col(x, *cfg["k"], backend=name, **_kw(cfg))
        np.testing.assert_array_equal(got_col, ref_col)  # a pure copy: exact
        got_x = fastconv.col2im(col, x.shape, *cfg["k"], backend=name, **_kw(cfg))
        np.testing.assert_allclose(got_x, ref_x, **TOL[cfg["dtype"]])


@settings(max_examples=60, deadline=None)
@given(conv_configs())
def test_adjoint_identity(cfg):
    """<im2col(x), c> == <x, col2im(c)> for every backend."""
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"])
    for name in fastconv.available_backends():
        col_x = fastconv.im2col(x, *cfg["k"], backend=name, **_kw(cfg))
        c = rng.standard_normal(col_x.shape)
        lhs = np.vdot(col_x, c)
        rhs = np.vdot(x, fastconv.col2im(c, x.shape, *cfg["k"], backend=name, **_kw(cfg)))
        np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)
