"""cffi build script (out-of-line API mode) for the C/OpenMP backend.

setup.py names this file in ``cffi_modules``; it can also be run directly
(``python fastconv/_build_cffi.py``) to build the extension in place.
The cdef is the block of ``csrc/fastconv.h`` between the CDEF markers, so the
prototypes are written once.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
MODULE_NAME = "fastconv._fastconv_c"


def read_cdef(header: Path = CSRC / "fastconv.h") -> str:
    text = header.read_text()
    match = re.search(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", text, re.S)
    if match is None:
        raise RuntimeError(f"{header} has no CDEF BEGIN/END block")
    return match.group(1)


def c_sources() -> list[str]:
    # Relative paths keep absolute build paths out of the generated sources.
    return sorted(os.path.relpath(p, ROOT) for p in CSRC.glob("*.c"))


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    MODULE_NAME,
    '#include "fastconv.h"',
    sources=c_sources(),
    include_dirs=[os.path.relpath(CSRC, ROOT)],
    depends=sorted(os.path.relpath(p, ROOT) for p in CSRC.glob("*.h")),  # rebuild when a header changes
    # The extension is built on the machine that runs it, so tune for it;
    # FASTCONV_MARCH=x86-64-v2 (say) builds a portable binary instead.
    extra_compile_args=["-O3", "-fopenmp", f"-march={os.environ.get('FASTCONV_MARCH', 'native')}"],
    extra_link_args=["-fopenmp"],
)

if __name__ == "__main__":
    os.chdir(ROOT)
    ffibuilder.compile(verbose=True)
