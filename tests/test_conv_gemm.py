"""The convolution kernels conv2d_fwd / conv2d_bwd: the C backend's implicit
GEMM (column tiles in cache, BLAS called from C) and direct convolution, and
the im2col + matmul driver of the other backends, against the loop oracle
(tests/naive.py)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastconv
import naive
from conftest import TOL
from fastconv import functional as F
from fastconv._geometry import ConvGeometry
from fastconv.backends import BackendUnavailableError, load


def _c():
    try:
        return load("c")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def c_without_blas():
    """The C backend with its BLAS detached (as on a NumPy without OpenBLAS)."""
    c = _c()
    c.lib.fc_set_blas(c.ffi.NULL, c.ffi.NULL, c.ffi.NULL, c.ffi.NULL, 0)
    try:
        yield c
    finally:
        c.attach_blas()


def _naive(x, w, b, stride, padding, dilation, groups, d_out):
    """The loop oracle (tests/naive.py), its gradients taken group by group."""
    f, cg = w.shape[:2]
    fg = f // groups
    out = naive.conv2d(x, w, b, stride, padding, dilation, groups)
    d_x, d_w, d_b = np.zeros_like(x), np.zeros_like(w), d_out.sum(axis=(0, 2, 3))
    for k in range(groups):
        xs, fs = slice(k * cg, (k + 1) * cg), slice(k * fg, (k + 1) * fg)
        d_w[fs] = naive.conv2d_params_grad(x[:, xs], d_out[:, fs], w[fs].shape, stride, padding, dilation)[0]
        d_x[:, xs] = naive.conv2d_input_grad(w[fs], d_out[:, fs], x[:, xs].shape, stride, padding, dilation)
    return out, d_x, d_w, d_b


def _numpy_reference(x, w, b, stride, padding, dilation, groups, d_out):
    out, cache = F.conv2d(x, w, b, stride, padding, dilation, groups, backend="numpy")
    d_x, d_w, d_b = F.conv2d_backward(d_out, cache)
    return out, d_x, d_w, (d_b if b is not None else d_out.sum(axis=(0, 2, 3)))


def _check(backend, n, c, h, w, f, k, stride, padding, dilation, groups, bias, dtype, seed, oracle=_numpy_reference):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c // groups, *k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if bias else None
    out, cache = F.conv2d(x, wt, b, stride, padding, dilation, groups, backend=backend)
    assert out.flags.c_contiguous
    d_out = rng.standard_normal(out.shape).astype(dtype)
    f64 = [None if a is None else a.astype(np.float64) for a in (x, wt, b, d_out)]
    want_out, want_dx, want_dw, want_db = oracle(*f64[:3], stride, padding, dilation, groups, f64[3])
    d_x, d_w, d_b = F.conv2d_backward(d_out, cache)
    # sums of up to n*OH*OW products: float32 rounding grows with their count
    tol = dict(rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * np.sqrt(n * h * w * c * k[0] * k[1]))
    np.testing.assert_allclose(out, want_out, **tol)
    np.testing.assert_allclose(d_x, want_dx, **tol)
    np.testing.assert_allclose(d_w, want_dw, **tol)
    if bias:
        np.testing.assert_allclose(d_b, want_db, **tol)
    else:
        assert d_b is None
    # parameters only: the same weight gradient, no input gradient
    d_x2, d_w2, _ = F.conv2d_backward(d_out, cache, input_grad=False)
    assert d_x2 is None
    np.testing.assert_array_equal(d_w2, d_w)


@pytest.mark.parametrize("groups, k, stride, padding, dilation", [
    (1, (3, 3), (1, 1), (1, 1), (1, 1)), (2, (3, 2), (2, 1), (0, 2), (1, 2)), (1, (1, 1), (1, 1), (0, 0), (1, 1)),
])
def test_the_reference_convolution_matches_the_loop_oracle(groups, k, stride, padding, dilation):
    _check("numpy", n=2, c=4, h=7, w=6, f=4, k=k, stride=stride, padding=padding, dilation=dilation, groups=groups,
           bias=True, dtype=np.float64, seed=1, oracle=_naive)


@st.composite
def conv_shapes(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    c, f = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 11))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 11))
    return dict(n=draw(st.integers(1, 10)), c=c, h=h, w=w, f=f, k=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), groups=groups, bias=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float32, np.float64])), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=80, deadline=None)
@given(conv_shapes())
def test_every_backend_matches_the_reference_on_random_geometry(cfg):
    for backend in fastconv.available_backends():
        _check(backend, **cfg)


@settings(max_examples=60, deadline=None)
@given(conv_shapes())
def test_the_c_direct_convolution_matches_the_reference_on_random_geometry(cfg):
    """Pinned to "direct": one-group geometries run the direct kernels (any
    kernel size, stride, padding, dilation); grouped ones fall back."""
    _c()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTCONV_CONV_PATH", "direct")
        _check("c", **{**cfg, "groups": 1, "c": cfg["c"] // cfg["groups"], "f": cfg["f"] // cfg["groups"]})


@settings(max_examples=60, deadline=None)
@given(conv_shapes(), st.integers(1, 70))
def test_the_c_channel_vector_convolution_matches_the_reference_on_random_geometry(cfg, filters):
    """Pinned to "ocvec": strides 1 and 2, one group, padding within the
    kernel's reach (what it takes), up to 70 filters (partial blocks of two
    vectors)."""
    _c()
    k, d = cfg["k"], cfg["dilation"]
    padding = tuple(min(p, (kk - 1) * dd) for p, kk, dd in zip(cfg["padding"], k, d))
    h, w = (max(size, dd * (kk - 1) + 1 - 2 * p) for size, kk, dd, p in zip((cfg["h"], cfg["w"]), k, d, padding))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTCONV_CONV_PATH", "ocvec")
        _check("c", **{**cfg, "groups": 1, "c": cfg["c"] // cfg["groups"], "f": filters, "padding": padding,
                       "h": h, "w": w})


@settings(max_examples=40, deadline=None)
@given(conv_shapes())
def test_the_c_depthwise_convolution_matches_the_reference_on_random_geometry(cfg):
    """Pinned to "direct", as depthwise (groups == channels == filters)."""
    _c()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTCONV_CONV_PATH", "direct")
        _check("c", **{**cfg, "f": cfg["c"], "groups": cfg["c"]})


@pytest.mark.parametrize("shape", [
    # more positions than one register block, more filters than one filter block, more images than blocks
    dict(n=10, c=5, h=19, w=23, f=19, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    # padding beyond the kernel's reach: the input gradient crops its padded gradient
    dict(n=2, c=3, h=6, w=5, f=4, k=(3, 3), padding=(3, 2), dilation=(1, 1)),
    dict(n=3, c=4, h=9, w=8, f=6, k=(5, 3), padding=(2, 0), dilation=(2, 3)),
    dict(n=2, c=33, h=3, w=3, f=2, k=(1, 1), padding=(0, 0), dilation=(1, 1)),
    # few input channels: the input gradient's narrow blocks (1, 2 and 4 planes), whole and partial
    dict(n=3, c=1, h=28, w=27, f=32, k=(3, 3), padding=(0, 0), dilation=(1, 1)),
    dict(n=2, c=2, h=19, w=21, f=6, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    dict(n=2, c=3, h=17, w=16, f=5, k=(5, 5), padding=(2, 2), dilation=(1, 1)),
    # strided (phase planes): ResNet's downsampling, odd sizes, a 1x1 shortcut (phases no tap reaches),
    # unequal strides with dilation, an even kernel, padding beyond the kernel's reach
    dict(n=10, c=5, h=17, w=16, f=19, k=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1)),
    dict(n=3, c=7, h=9, w=8, f=9, k=(1, 1), stride=(2, 2), padding=(0, 0), dilation=(1, 1)),
    dict(n=3, c=4, h=13, w=11, f=6, k=(3, 2), stride=(2, 3), padding=(1, 2), dilation=(2, 1)),
    dict(n=2, c=3, h=8, w=8, f=5, k=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1)),
    dict(n=2, c=3, h=6, w=7, f=4, k=(3, 3), stride=(3, 2), padding=(3, 2), dilation=(1, 1)),
    # small maps stacked (stack_geom): shared padding rows and columns, a last stack of fewer images,
    # padding beyond the kernel's reach (not shared), unequal padding, dilation, few input channels
    dict(n=37, c=6, h=4, w=4, f=9, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    dict(n=23, c=5, h=7, w=7, f=11, k=(3, 3), padding=(2, 2), dilation=(1, 1)),
    dict(n=19, c=4, h=5, w=6, f=8, k=(1, 1), padding=(1, 0), dilation=(1, 1)),
    dict(n=29, c=3, h=6, w=5, f=7, k=(3, 5), padding=(1, 2), dilation=(2, 1)),
    dict(n=17, c=9, h=3, w=8, f=5, k=(2, 3), padding=(0, 1), dilation=(1, 1)),
])
def test_the_c_direct_convolution_across_blocks_and_paddings(shape, dtype, monkeypatch):
    _c()
    monkeypatch.setenv("FASTCONV_CONV_PATH", "direct")
    _check("c", **{"stride": (1, 1), **shape}, groups=1, bias=True, dtype=dtype, seed=8)


@settings(max_examples=60, deadline=None)
@given(conv_shapes())
def test_the_c_winograd_convolution_matches_the_reference_on_random_geometry(cfg):
    """Pinned to "winograd": 3x3, stride 1, one group, padding 0-2 (any map
    size down to 1x1, odd output sizes: partial tiles)."""
    _c()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTCONV_CONV_PATH", "winograd")
        _check("c", **{**cfg, "groups": 1, "c": cfg["c"] // cfg["groups"], "f": cfg["f"] // cfg["groups"],
                       "k": (3, 3), "stride": (1, 1), "dilation": (1, 1), "h": cfg["h"] + 2, "w": cfg["w"] + 2})


@pytest.mark.parametrize("shape", [
    # more images than blocks, odd maps (partial tiles), unequal padding, padding 2 (the input gradient's 0)
    dict(n=37, c=5, h=9, w=7, f=6, padding=(1, 1)),
    dict(n=3, c=4, h=8, w=11, f=3, padding=(2, 0)),
    dict(n=5, c=3, h=3, w=3, f=2, padding=(0, 2)),
    # channels past one GEMM panel, one image per block (a map larger than a block's budget)
    dict(n=2, c=70, h=33, w=30, f=67, padding=(1, 1)),
    # 1x1 and 2x2 maps (one tile, mostly padding), batch of one
    dict(n=1, c=6, h=1, w=1, f=5, padding=(1, 1)),
    dict(n=9, c=2, h=2, w=2, f=3, padding=(2, 2)),
])
def test_the_c_winograd_convolution_across_blocks_and_paddings(shape, dtype, monkeypatch):
    _c()
    monkeypatch.setenv("FASTCONV_CONV_PATH", "winograd")
    _check("c", **shape, k=(3, 3), stride=(1, 1), dilation=(1, 1), groups=1, bias=True, dtype=dtype, seed=10)


def test_the_c_winograd_kernels_refuse_other_geometries():
    c = _c()
    if not c.lib.fc_blas_ready():
        pytest.skip("no BLAS attached")
    x = np.ones((1, 2, 6, 6), np.float32)
    for g in (ConvGeometry(1, 2, 6, 6, 2, 3, 3, 1, 1, 3, 3, 1, 1, 10, 10, 1),  # padding 3
              ConvGeometry(1, 2, 6, 6, 2, 5, 5, 1, 1, 2, 2, 1, 1, 6, 6, 1),  # 5x5
              ConvGeometry(1, 2, 6, 6, 2, 3, 3, 2, 2, 1, 1, 1, 1, 3, 3, 1),  # stride 2
              ConvGeometry(1, 2, 6, 6, 2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6, 2)):  # two groups
        wt = np.ones((2, 2 // g.groups, g.kh, g.kw), np.float32)
        o = np.empty((1, 2, g.oh, g.ow), np.float32)
        with pytest.raises(ValueError, match="fc_conv2d_winograd_fwd"):
            c.conv2d_winograd_fwd(x, wt, None, o, g)
        with pytest.raises(ValueError, match="fc_conv2d_winograd_bwd"):
            c.conv2d_winograd_bwd(x, wt, np.ones_like(o), None, np.empty_like(wt), None, g)
        assert "winograd" not in c._paths_for(g)
    # maps whose one image's transformed data would not fit the per-thread scratch bound
    big = ConvGeometry(1, 64, 256, 256, 64, 3, 3, 1, 1, 1, 1, 1, 1, 256, 256, 1)
    assert "winograd" not in c._paths_for(big) and "winograd" in c._paths_for(big._replace(h=64, w=64, oh=64, ow=64))


@pytest.mark.parametrize("shape", [
    # the shapes it is for: 7x7 (tiles 1 x 7), 8x8 and 4x4 (2 x 4), 14x14 (2 x 7), more filters than
    # one block of two vectors and not a multiple of it, more channels than one tap table row
    dict(n=5, c=40, h=7, w=7, f=70, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    dict(n=4, c=33, h=8, w=8, f=33, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    dict(n=3, c=20, h=4, w=4, f=17, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    dict(n=2, c=9, h=14, w=14, f=40, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    # 10x10 and 5x5 (2 x 5 with AVX-512, 1 x 5 below): the seed network's second convolution cropped
    dict(n=3, c=32, h=12, w=12, f=64, k=(3, 3), padding=(0, 0), dilation=(1, 1)),
    dict(n=2, c=12, h=5, w=5, f=20, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    # tiles past the map's last rows and columns (odd sizes), 1x1 maps, unpadded, 1x1 kernels,
    # dilation, unequal kernels and padding, one filter, one channel
    dict(n=3, c=6, h=11, w=13, f=9, k=(3, 3), padding=(0, 1), dilation=(1, 1)),
    dict(n=6, c=16, h=1, w=1, f=20, k=(3, 3), padding=(1, 1), dilation=(1, 1)),
    dict(n=2, c=7, h=5, w=9, f=3, k=(1, 1), padding=(0, 0), dilation=(1, 1)),
    dict(n=3, c=4, h=9, w=8, f=6, k=(5, 3), padding=(4, 0), dilation=(2, 3)),
    dict(n=2, c=1, h=6, w=10, f=1, k=(2, 3), padding=(1, 2), dilation=(1, 1)),
    # strided (the forward; the backward is the direct kernel's): ResNet's downsampling, odd sizes,
    # unequal strides with dilation, a 1x1 shortcut
    dict(n=5, c=32, h=16, w=16, f=40, k=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1)),
    dict(n=3, c=6, h=9, w=11, f=9, k=(3, 3), stride=(2, 2), padding=(1, 0), dilation=(1, 1)),
    dict(n=2, c=5, h=10, w=9, f=7, k=(3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
    dict(n=4, c=8, h=8, w=8, f=33, k=(1, 1), stride=(2, 2), padding=(0, 0), dilation=(1, 1)),
])
def test_the_c_channel_vector_convolution_across_tiles_and_blocks(shape, dtype, monkeypatch):
    _c()
    monkeypatch.setenv("FASTCONV_CONV_PATH", "ocvec")
    _check("c", **{"stride": (1, 1), **shape}, groups=1, bias=True, dtype=dtype, seed=10)


def test_the_c_channel_vector_kernels_refuse_what_they_do_not_run():
    """Strides past 2, groups and padding past the kernel's reach get
    FC_ERR_SIZE (a ValueError naming the kernel), and are not offered as a
    path."""
    c = _c()
    x = np.ones((1, 4, 6, 6), np.float32)
    for g in (ConvGeometry(1, 4, 6, 6, 4, 3, 3, 3, 1, 1, 1, 1, 1, 2, 6, 1),   # stride 3
              ConvGeometry(1, 4, 6, 6, 4, 3, 3, 1, 1, 3, 0, 1, 1, 10, 4, 1),  # padding 3 > (3 - 1) * 1
              ConvGeometry(1, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6, 2)):  # two groups
        out, w = np.empty((1, 4, g.oh, g.ow), np.float32), np.ones((4, 4 // g.groups, 3, 3), np.float32)
        with pytest.raises(ValueError, match="fc_conv2d_ocvec_fwd"):
            c.conv2d_ocvec_fwd(x, w, None, out, g)
        with pytest.raises(ValueError, match="fc_conv2d_ocvec_bwd"):
            c.conv2d_ocvec_bwd(x, w, np.ones_like(out), None, np.empty_like(w), None, g)
        assert "ocvec" not in c._paths_for(g)


@pytest.mark.parametrize("shape", [
    # ResNet/MobileNet-like: stride 1 and 2, more positions than one block, more images than blocks
    dict(n=10, c=6, h=17, w=19, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)),
    dict(n=9, c=5, h=16, w=15, k=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1)),
    # even and wide kernels, dilation, unequal strides, padding beyond the kernel's reach, 1x1 stride 2
    dict(n=3, c=4, h=11, w=9, k=(2, 5), stride=(1, 2), padding=(0, 2), dilation=(2, 1)),
    dict(n=2, c=3, h=7, w=8, k=(3, 3), stride=(3, 2), padding=(3, 2), dilation=(1, 1)),
    dict(n=2, c=3, h=8, w=7, k=(1, 1), stride=(2, 2), padding=(0, 0), dilation=(1, 1)),
])
def test_the_c_direct_depthwise_convolution(shape, dtype, monkeypatch):
    """groups == channels == filters runs the depthwise direct kernels."""
    _c()
    monkeypatch.setenv("FASTCONV_CONV_PATH", "direct")
    _check("c", **shape, f=shape["c"], groups=shape["c"], bias=True, dtype=dtype, seed=9)


def test_the_c_direct_kernels_refuse_groups_but_depthwise():
    c = _c()
    g = ConvGeometry(1, 4, 5, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 3, 3, 2)  # two groups of two channels
    x, wt, out = np.ones((1, 4, 5, 5), np.float32), np.ones((4, 2, 3, 3), np.float32), np.empty((1, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="fc_conv2d_direct_fwd"):
        c.conv2d_direct_fwd(x, wt, None, out, g)
    with pytest.raises(ValueError, match="fc_conv2d_direct_bwd"):
        c.conv2d_direct_bwd(x, wt, np.ones_like(out), None, np.empty_like(wt), None, g)


@pytest.mark.parametrize("shape", [
    # several column tiles per image (C*KH*KW*positions past the 256 KB tile)
    dict(n=3, c=16, h=40, w=37, f=8, k=(3, 3), stride=(1, 1), padding=(1, 1)),
    # more images than weight-gradient blocks (8), strided, 1x1 shortcut-like
    dict(n=19, c=6, h=9, w=9, f=5, k=(3, 3), stride=(2, 2), padding=(1, 1)),
    dict(n=11, c=7, h=8, w=6, f=9, k=(1, 1), stride=(1, 1), padding=(0, 0)),  # pointwise: x is the columns
    dict(n=4, c=7, h=8, w=6, f=9, k=(1, 1), stride=(2, 2), padding=(0, 0)),
])
def test_the_c_implicit_gemm_matches_the_reference_across_tiles_and_blocks(shape, dtype):
    _c()
    _check("c", **shape, dilation=(1, 1), groups=1, bias=True, dtype=dtype, seed=3)


def test_without_a_blas_the_c_backend_runs_im2col_and_matmul(c_without_blas, dtype):
    assert not c_without_blas.lib.fc_blas_ready()
    _check("c", n=3, c=4, h=7, w=6, f=5, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                          groups=1, bias=True, dtype=dtype, seed=4)
    x, wt = np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32)
    g = ConvGeometry(1, 1, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 3, 3, 1)
    with pytest.raises(ValueError, match="no BLAS was attached"):
        c_without_blas._CONV_PATHS["implicit"][0](x, wt, None, np.empty((1, 1, 3, 3), np.float32), g)


def test_numpys_blas_is_found_and_attached():
    """NumPy's wheels ship OpenBLAS: the C convolution must find it there (a
    silent fallback to matmul would lose its speed unnoticed)."""
    c = _c()
    from threadpoolctl import threadpool_info

    if not any(i.get("internal_api") == "openblas" for i in threadpool_info()):
        pytest.skip("NumPy's BLAS here is not OpenBLAS")
    assert c.BLAS_PATH is not None and c.lib.fc_blas_ready()


@pytest.mark.parametrize("path", ["implicit", "direct", "ocvec", "winograd"])
def test_the_c_convolution_gives_the_same_bits_at_one_and_two_threads(path, monkeypatch):
    _c()
    monkeypatch.setenv("FASTCONV_CONV_PATH", path)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((13, 8, 12, 12), dtype=np.float32)
    wt = rng.standard_normal((16, 8, 3, 3), dtype=np.float32)
    b = rng.standard_normal(16, dtype=np.float32)
    d_out = rng.standard_normal((13, 16, 12, 12), dtype=np.float32)
    results = []
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        out, cache = F.conv2d(x, wt, b, 1, 1, backend="c")
        results.append((out, *F.conv2d_backward(d_out, cache)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_a_bad_geometry_record_is_refused_by_the_c_kernel():
    c = _c()
    x = np.ones((1, 1, 3, 3), np.float32)
    wt = np.ones((1, 1, 3, 3), np.float32)
    out = np.empty((1, 1, 1, 1), np.float32)
    bad = ConvGeometry(1, 1, 3, 3, 1, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2, 1)  # output would be 1x1, not 2x2
    with pytest.raises(ValueError, match="fc_conv2d_fwd"):
        c._CONV_PATHS["implicit"][0](x, wt, None, out, bad)
    with pytest.raises(ValueError, match="fc_conv2d_fwd"):  # groups must divide the channels
        c._CONV_PATHS["implicit"][0](x, wt, None, out, ConvGeometry(1, 1, 3, 3, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1, 2))


@pytest.mark.parametrize("path", ["im2col", "direct", "ocvec", "winograd", "auto"])
def test_the_c_convolutions_other_paths_and_the_measured_choice(path, dtype, monkeypatch, tmp_path):
    c = _c()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the autotuner's file goes here
    monkeypatch.setenv("FASTCONV_CONV_PATH", path)
    from fastconv import _autotune

    _autotune.forget()
    monkeypatch.setattr(c, "_conv_choice", {})
    _check("c", n=9, c=6, h=8, w=7, f=5, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1,
           bias=True, dtype=dtype, seed=6)
    if path == "auto" and c.lib.fc_blas_ready():
        # forward and backward chosen apart
        assert {stage for stage, *_ in c._conv_choice} == {"forward", "backward"}
        assert set(c._conv_choice.values()) <= {"implicit", "im2col", "direct", "ocvec", "winograd"}
        assert len(c._conv_choice) == 2  # measured once per stage for the shape, then remembered
    _autotune.forget()


def test_a_bad_conv_path_setting_is_refused(monkeypatch):
    c = _c()
    if not c.lib.fc_blas_ready():
        pytest.skip("no BLAS attached: one path only")
    monkeypatch.setenv("FASTCONV_CONV_PATH", "fastest")
    with pytest.raises(ValueError, match="FASTCONV_CONV_PATH must be auto, implicit, im2col, direct, ocvec or winograd"):
        F.conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32), backend="c")
