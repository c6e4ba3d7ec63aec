"""C/OpenMP backend: a thin cffi wrapper around csrc/.

Each kernel picks its ``_f32``/``_f64`` variant from the dtype of its first
array, passes raw buffers (``ffi.from_buffer``, no copies) and turns a non-zero
status into an exception.  cffi releases the GIL around every call.

The sources are built once per x86-64 level (fastconv/_build_cffi.py); this
module loads the widest one the CPU runs, or the one ``FASTCONV_C_ISA``
names (``v2``, ``v3``, ``v4``: to test a narrower path on a wider machine).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from .. import _blas_symbols
from .._geometry import C_STRUCTS
from . import _gemm_conv

ENV_ISA = "FASTCONV_C_ISA"
_LEVEL_NAMES = {"custom": 99, "v4": 4, "v3": 3, "v2": 2, "generic": 0}


def _built_levels() -> list[str]:
    found = []
    for name in _LEVEL_NAMES:
        try:
            importlib.util.find_spec(f"fastconv._fastconv_c_{name}") and found.append(name)
        except (ImportError, ValueError):  # pragma: no cover
            pass
    return found


def _load_extension():
    """(ffi, lib, level name) of the extension to use; ImportError with the
    reason when there is none that this CPU runs."""
    built = _built_levels()
    if not built:
        raise ImportError("no compiled extension fastconv._fastconv_c_<level> is installed")
    # any extension answers which level the CPU runs; ask the narrowest
    probe = importlib.import_module(f"fastconv._fastconv_c_{built[-1]}")
    cpu = probe.lib.fc_cpu_level()
    wanted = os.environ.get(ENV_ISA)
    if wanted:
        if wanted not in built:
            raise ImportError(f"${ENV_ISA}={wanted!r}, but the built levels are {built}")
        if _LEVEL_NAMES[wanted] > max(cpu, 0) and wanted not in ("custom", "generic"):
            raise ImportError(f"${ENV_ISA}={wanted!r}: this CPU runs x86-64 level {cpu} only")
        name = wanted
    else:
        name = next((n for n in built if n in ("custom", "generic") or _LEVEL_NAMES[n] <= cpu), None)
        if name is None:
            raise ImportError(f"this CPU runs x86-64 level {cpu}; the built levels are {built}")
    module = importlib.import_module(f"fastconv._fastconv_c_{name}")
    return module.ffi, module.lib, name, module.__file__


ffi, lib, ISA_LEVEL, _EXTENSION_FILE = _load_extension()  # ImportError here = no usable extension


def _tuning_id(level: str, path: str) -> str:
    """The level and a digest of the compiled kernels: path choices measured
    on first use (fastconv/_autotune.py) are remembered per build, so a
    rebuilt extension (new kernels, same version number) measures again."""
    try:
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]
    except OSError:
        digest = "unknown"
    return f"{level}-{digest}"


TUNING_ID = _tuning_id(ISA_LEVEL, _EXTENSION_FILE)

# CNN runs Conv2D -> ReLU -> MaxPool2D of few-tap layers through conv_maxpool_*
# (layers/fused.py): here they beat im2col + GEMM + pool.
# conv2d_maxpool with many taps runs im2row + GEMM + rows_maxpool (functional/conv.py)
CONV_MAXPOOL_VIA_ROWS = True
FUSE_CONV_POOL = True


def conv_maxpool_direct(cg, pg) -> bool:
    """Whether conv2d_maxpool's forward runs conv_maxpool_fwd even with many
    taps: its phase kernels take the geometry (csrc/conv_pool22_tmpl.h)."""
    return bool(lib.fc_conv_maxpool_phase_ok(_c_value(cg), _c_value(pg)))

# CNN runs BatchNorm2D -> ReLU -> MaxPool2D through bnpool_* (layers/fused.py
# BatchNormReLUPool): one pass each way instead of the layers' five.
FUSE_BN_POOL = True

_CTYPE = {
    np.dtype(np.float32): "float[]",
    np.dtype(np.float64): "double[]",
    np.dtype(np.int64): "int64_t[]",
    np.dtype(np.uint8): "uint8_t[]",
}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

_STATUS_MESSAGES = {
    lib.FC_ERR_SIZE: "a size argument is non-positive or inconsistent with the array shapes",
    lib.FC_ERR_INDEX: "an index points outside its (H, W) plane",
    lib.FC_ERR_NOMEM: "the C kernel could not allocate its scratch memory",
    lib.FC_ERR_NOBLAS: "no BLAS was attached (fc_set_blas)",
}


def set_num_threads(n: int) -> None:
    lib.fc_set_num_threads(n)


def built_levels() -> list[str]:
    """The instruction-set levels built on this install, widest first."""
    return _built_levels()


def has_openmp() -> bool:
    return bool(lib.fc_has_openmp())


def _c_value(value):
    """A geometry record as a pointer to its C struct; a size as itself."""
    struct = C_STRUCTS.get(type(value))
    return value if struct is None else ffi.new(f"{struct} *", value._asdict())


def _kernel(name: str):
    variants = {dt: getattr(lib, f"fc_{name}_{sfx}") for dt, sfx in _SUFFIX.items()}

    def call(*args):
        # arrays (None for an optional one: NULL) first, then geometry records or sizes
        split = next((i for i, a in enumerate(args) if a is not None and not isinstance(a, np.ndarray)), len(args))
        arrays, sizes = args[:split], args[split:]
        fn = variants[next(a for a in arrays if a is not None).dtype]
        status = fn(*(ffi.NULL if a is None else ffi.from_buffer(_CTYPE[a.dtype], a) for a in arrays),
                    *(_c_value(v) for v in sizes))
        if status != lib.FC_OK:
            message = _STATUS_MESSAGES.get(status, f"unknown status {status}")
            error = IndexError if status == lib.FC_ERR_INDEX else ValueError
            if status == lib.FC_ERR_NOMEM:
                error = MemoryError
            raise error(f"C kernel fc_{name}: {message}")

    call.__name__ = name
    call.__doc__ = f"C kernel fc_{name}_f32 / fc_{name}_f64 (see csrc/)."
    return call


# Every kernel of the cdef (csrc/fastconv.h, the contract) that has both an
# _f32 and an _f64 symbol, under its plain name: im2col, maxpool_fwd, ...
KERNEL_NAMES = sorted(name[3:-4] for name in dir(lib)
                      if name.startswith("fc_") and name.endswith("_f32") and hasattr(lib, name[:-4] + "_f64"))
for _name in KERNEL_NAMES:
    globals()[_name] = _kernel(_name)
del _name


def attach_blas() -> str | None:
    """Hand NumPy's BLAS to the C convolution kernels (fastconv/_blas_symbols.py);
    the library's path, or None when the C backend runs without one."""
    found = _blas_symbols.find_gemm()
    if found is None:
        lib.fc_set_blas(ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, 0)
        return None
    path, *pointers, int64 = found
    status = lib.fc_set_blas(*(ffi.cast("void *", p or 0) for p in pointers), int(int64))
    return path if status == lib.FC_OK else None


BLAS_PATH = attach_blas()

# Three ways to run a convolution, chosen per shape -- forward and backward
# separately -- by measuring them on first use (fastconv/_autotune.py;
# $FASTCONV_CONV_PATH pins one):
# - "implicit": one single-threaded BLAS GEMM per image tile of columns built
#   in cache (wins on 1x1 and strided convolutions, wide maps);
# - "im2col": im2col + NumPy's multithreaded matmul over a chunk of images
#   (wins when an image has few output positions: the GEMM is wider);
# - "direct": stride 1, one group: the padded image read at shifted offsets,
#   register-blocked, no BLAS (csrc/conv_direct_tmpl.h; wins on 3x3 maps of
#   16x16 and more);
# - "ocvec": strides 1 and 2, one group: output channels along the vector
#   lanes, register tiles of real output positions (csrc/conv_ocvec_tmpl.h;
#   for small maps, where the direct kernel computes much padding); its
#   stride-1 input gradient and 3x3 weight gradient are its own, the rest the
#   direct kernel's;
# - "winograd": 3x3, stride 1, one group: Winograd F(2x2, 3x3), 16 BLAS GEMMs
#   per block of images on transformed tiles, 2.25x fewer multiplies
#   (csrc/conv_winograd_tmpl.h; wins from ~48 channels on 8x8 to 16x16 maps);
#   its weight gradient is the direct kernel's.
# Without a BLAS to call from C, "implicit" and "winograd" are not offered.
ENV_CONV_PATH = "FASTCONV_CONV_PATH"
_CONV_PATHS = {
    "implicit": (conv2d_fwd, conv2d_bwd),  # noqa: F821 - the C kernels, bound above
    "im2col": _gemm_conv.make_conv2d_kernels(im2col, col2im),  # noqa: F821
    "direct": (conv2d_direct_fwd, conv2d_direct_bwd),  # noqa: F821
    "ocvec": (conv2d_ocvec_fwd, conv2d_ocvec_bwd),  # noqa: F821
    "winograd": (conv2d_winograd_fwd, conv2d_winograd_bwd),  # noqa: F821
}
_conv_choice: dict = {}
WINOGRAD_MAX_IMAGE_BYTES = 16 << 20  # (float64 bound) 64 + 64 channels up to 64x64 maps
# "ocvec" is for small maps: on 32x32 outputs it ran at half the direct
# kernel's speed (its broadcasts sweep a padded image larger than L1), and
# with few taps per output its scalar stores dominate (0.1-0.5x on 1- and
# 3-channel first layers).  Those are left out of the measured choice (it
# costs a few runs of each candidate); a pinned $FASTCONV_CONV_PATH=ocvec
# still runs it on any geometry it takes.
OCVEC_MAX_POSITIONS = 16 * 16  # output positions per image
OCVEC_MIN_TAPS = 64


def _ocvec_worth_measuring(stage: str, g) -> bool:
    """Whether "ocvec" is a candidate for ``stage`` of geometry g: small
    output maps, enough taps per output -- in both correlations it runs (the
    forward; the input gradient, stride 1 only: strided, its backward is the
    direct kernel's, nothing to measure)."""
    if stage == "backward" and (g.sh, g.sw) != (1, 1):
        return False
    positions = max(g.oh * g.ow, g.h * g.w if stage == "backward" else 0)
    return positions <= OCVEC_MAX_POSITIONS and min(g.c, g.f) * g.kh * g.kw >= OCVEC_MIN_TAPS


def _paths_for(g) -> list[str]:
    """The paths that can run geometry ``g`` here."""
    names = ["implicit", "im2col"] if lib.fc_blas_ready() else ["im2col"]
    if g.groups == 1 or g.groups == g.c == g.f:  # one group, or depthwise
        names.append("direct")
    if (g.groups == 1 and g.sh in (1, 2) and g.sw in (1, 2) and 0 <= g.ph <= (g.kh - 1) * g.dh
            and 0 <= g.pw <= (g.kw - 1) * g.dw):
        names.append("ocvec")
    # Winograd's blocks hold whole images: its scratch per thread is at least one
    # image's transformed input and products, so large maps are left to the others
    wino_image_bytes = 16 * (g.c + g.f) * ((g.oh + 1) // 2) * ((g.ow + 1) // 2) * 8
    if (lib.fc_blas_ready() and g.groups == 1 and (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)
            and g.ph <= 2 and g.pw <= 2 and wino_image_bytes <= WINOGRAD_MAX_IMAGE_BYTES):
        names.append("winograd")
    return names


def conv_path(stage: str, x, wt, b, g) -> str:
    """The path (a name of _CONV_PATHS) that runs ``stage``
    ("forward" or "backward") of this call's shape: pinned by
    $FASTCONV_CONV_PATH, else the fastest measured.  The backward is measured
    with the input gradient and runs the same path without it, so the weight
    gradient does not depend on whether the input gradient was asked for."""
    names = _paths_for(g)
    pinned = os.environ.get(ENV_CONV_PATH, "auto").strip().lower()
    if pinned in _CONV_PATHS:
        return pinned if pinned in names else names[0]
    if pinned != "auto":
        raise ValueError(f"${ENV_CONV_PATH} must be auto, {', '.join(list(_CONV_PATHS)[:-1])} or "
                         f"{list(_CONV_PATHS)[-1]}, got {pinned!r}")
    if "ocvec" in names and not _ocvec_worth_measuring(stage, g):
        names.remove("ocvec")
    if len(names) == 1:
        return names[0]
    key = (stage, x.dtype.str, g)
    if key not in _conv_choice:
        from .. import _autotune

        # out doubles as the backward's output gradient: defined values (fresh
        # memory could hold infs and NaNs, and warnings from the timing runs)
        out = np.zeros((g.n, g.f, g.oh, g.ow), dtype=x.dtype)
        d_x = np.empty_like(x)
        d_w, d_b = np.empty_like(wt), None if b is None else np.empty_like(b)
        if stage == "forward":
            cands = {n: (lambda fwd=_CONV_PATHS[n][0]: fwd(x, wt, b, out, g)) for n in names}
        else:  # a zero output gradient (its values do not change the work)
            cands = {n: (lambda bwd=_CONV_PATHS[n][1]: bwd(x, wt, out, d_x, d_w, d_b, g)) for n in names}
        what = f"conv2d {stage} {x.dtype} {tuple(g)}"
        _conv_choice[key] = _autotune.choose(what, cands, level=TUNING_ID, repeats=3)
    return _conv_choice[key]


def conv2d_fwd(x, wt, b, out, g):
    _CONV_PATHS[conv_path("forward", x, wt, b, g)][0](x, wt, b, out, g)


def conv2d_bwd(x, wt, d_out, d_x, d_w, d_b, g):
    _CONV_PATHS[conv_path("backward", x, wt, d_b, g)][1](x, wt, d_out, d_x, d_w, d_b, g)
