"""One contract per kernel: the prototypes in csrc/fastconv.h (between the
CDEF markers, which cffi also reads) are the source; every backend must offer
every kernel there, with the same parameters in the same order."""
import inspect
import re

import numpy as np
import pytest

from fastconv import functional as F
from fastconv._build_cffi import read_cdef
from fastconv._geometry import C_STRUCTS
from fastconv.backends import BACKEND_NAMES, BackendUnavailableError, load
from fastconv.functional import conv as conv_module


def contract() -> dict[str, list[str]]:
    """kernel name -> parameter names, from the f32 prototypes (checked equal to the f64 ones)."""
    protos: dict[str, dict[str, list[str]]] = {}
    for m in re.finditer(r"int\s+fc_(\w+?)_(f32|f64)\s*\(([^)]*)\)", read_cdef()):
        names = [re.split(r"[\s*]+", p.strip())[-1] for p in m.group(3).split(",")]
        protos.setdefault(m.group(1), {})[m.group(2)] = names
    for name, variants in protos.items():
        assert set(variants) == {"f32", "f64"}, f"fc_{name} lacks a dtype variant: {sorted(variants)}"
        assert variants["f32"] == variants["f64"], f"fc_{name}_f32 and _f64 differ: {variants}"
    return {name: v["f32"] for name, v in protos.items()}


KERNELS = contract()


def _parameters(fn):
    fn = getattr(fn, "kernel", fn)  # the Numba wrappers keep the jitted kernel here
    fn = getattr(fn, "py_func", fn)
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_backend_offers_every_kernel_with_the_contracts_parameters(backend, kernel):
    try:
        module = load(backend)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    fn = getattr(module, kernel, None)
    assert fn is not None, f"the {backend} backend lacks kernel {kernel!r} of csrc/fastconv.h"
    if backend == "c":
        assert kernel in module.KERNEL_NAMES
    else:
        assert _parameters(fn) == KERNELS[kernel], f"{backend}.{kernel} parameters differ from fc_{kernel}"


@pytest.mark.parametrize("record", sorted(C_STRUCTS, key=lambda r: r.__name__))
def test_each_geometry_record_is_its_c_struct(record):
    """One contract per record: the Python fields are the C struct's, in order
    (the C backend passes a record's fields by name, the others by position)."""
    try:
        c = load("c")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    assert [name for name, _ in c.ffi.typeof(C_STRUCTS[record]).fields] == list(record._fields)


def test_the_contract_is_not_empty():
    assert {"im2col", "col2im", "maxpool_fwd", "bn_stats", "sgd_update", "im2row", "rows_maxpool"} <= set(KERNELS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c, pool, pool_stride", [(3, 2, 2), (4, 3, 2), (2, 2, 1)])
def test_the_reference_rows_path_equals_the_reference_direct_path(dtype, c, pool, pool_stride):
    """numpy_ref.im2row + rows_maxpool (the fast backends' many-tap path, in
    the reference) give what the reference's direct conv_maxpool_fwd gives."""
    rng = np.random.default_rng(c)
    x = rng.standard_normal((3, c, 11, 10)).astype(dtype)
    w = rng.standard_normal((5, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    geo = dict(stride=1, padding=1, dilation=1, pool_size=pool, pool_stride=pool_stride)
    want_out, want_idx = F.conv2d_maxpool(x, w, b, **geo, backend="numpy")
    cg, pg = conv_module._geometries(x.shape, w.shape, 1, 1, 1, pool, pool_stride)
    out, idx = np.empty_like(want_out), np.empty_like(want_idx)
    conv_module._gemm_conv_maxpool(load("numpy"), x, w, b, out, idx, cg, pg)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, want_out, **tol)
    np.testing.assert_array_equal(idx, want_idx)
