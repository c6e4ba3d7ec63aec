"""cffi build script (out-of-line API mode) for the C/OpenMP backend.

setup.py names the builders of this file in ``cffi_modules``; it can also be
run directly (``python fastconv/_build_cffi.py``) to build them in place.
The cdef is the block of ``csrc/fastconv.h`` between the CDEF markers, so the
prototypes are written once.

Portability: the same sources are compiled once per instruction-set level
(``ISA_LEVELS``), each into its own extension ``fastconv._fastconv_c_<level>``;
at import, ``fastconv.backends.c_backend`` loads the widest level this CPU
runs.  A wheel built on an AVX-512 machine therefore still runs on an AVX2
one.  Environment variables read at build time:

* ``FASTCONV_MARCH=native`` (or any -march value) builds one extension for
  that target instead (``_fastconv_c_custom``), tuned to the build machine;
  it is used wherever it is present.
* ``FASTCONV_SANITIZE=1`` adds AddressSanitizer + UndefinedBehaviorSanitizer
  (see docs/testing.md for how to run the tests under them).
"""
from __future__ import annotations

import sys

if __name__ == "__main__":
    # run as a script, fastconv/ is sys.path[0]: its signal.py would shadow the
    # standard library's (which the compiler's subprocess calls import)
    sys.path.pop(0)

import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

from cffi import FFI  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
MODULE_PREFIX = "fastconv._fastconv_c_"

# (level, gcc flags): the x86-64 micro-architecture levels of the psABI.
# v2 is SSE4.2 (any x86-64 CPU since ~2009), v3 adds AVX2 + FMA, v4 AVX-512.
_X86_LEVELS = (("v2", ["-march=x86-64-v2"]), ("v3", ["-march=x86-64-v3"]), ("v4", ["-march=x86-64-v4"]))


def isa_levels() -> tuple[tuple[str, list[str]], ...]:
    """The extensions to build: (level name, compiler flags)."""
    custom = os.environ.get("FASTCONV_MARCH")
    if custom:
        return (("custom", [f"-march={custom}"]),)
    if platform.machine().lower() in ("x86_64", "amd64"):
        return _X86_LEVELS
    return (("generic", []),)  # other architectures: the compiler's default target


def read_cdef(header: Path = CSRC / "fastconv.h") -> str:
    text = header.read_text()
    match = re.search(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", text, re.S)
    if match is None:
        raise RuntimeError(f"{header} has no CDEF BEGIN/END block")
    return match.group(1)


def c_sources() -> list[str]:
    # Relative paths keep absolute build paths out of the generated sources.
    return sorted(os.path.relpath(p, ROOT) for p in CSRC.glob("*.c"))


def _sanitizer_flags() -> list[str]:
    if os.environ.get("FASTCONV_SANITIZE", "0") in ("", "0"):
        return []
    return ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"]


def make_builder(level: str, flags: list[str]) -> FFI:
    builder = FFI()
    builder.cdef(read_cdef())
    sanitize = _sanitizer_flags()
    builder.set_source(
        MODULE_PREFIX + level,
        '#include "fastconv.h"',
        sources=c_sources(),
        include_dirs=[os.path.relpath(CSRC, ROOT)],
        depends=sorted(os.path.relpath(p, ROOT) for p in CSRC.glob("*.h")),  # rebuild when a header changes
        extra_compile_args=["-O3", "-fopenmp", *flags, *sanitize],
        extra_link_args=["-fopenmp", *sanitize],
    )
    return builder


for _level, _flags in isa_levels():
    globals()[f"ffibuilder_{_level}"] = make_builder(_level, _flags)


def cffi_modules() -> list[str]:
    """The setup.py ``cffi_modules`` entries, one per level."""
    return [f"fastconv/_build_cffi.py:ffibuilder_{level}" for level, _ in isa_levels()]


if __name__ == "__main__":
    os.chdir(ROOT)
    for _level, _ in isa_levels():
        globals()[f"ffibuilder_{_level}"].compile(verbose=True)
