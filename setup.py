"""Builds the optional C/OpenMP extensions through cffi (metadata: pyproject.toml).

One extension per x86-64 instruction-set level (fastconv/_build_cffi.py);
fastconv loads the widest one the CPU runs.  If the extensions cannot be
compiled (no C compiler, no OpenMP), installation still succeeds with a
warning; fastconv then runs on its NumPy and Numba backends, says so once when
it first picks a backend, and `fastconv.available_backends()` leaves out "c".
"""
import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _build_script():
    # loaded from its file: importing the package would need its run-time dependencies
    spec = importlib.util.spec_from_file_location("_fastconv_build", Path(__file__).parent / "fastconv" / "_build_cffi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when a C extension cannot build."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing, OpenMP missing, ...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        bar = "*" * 78
        sys.stderr.write(
            f"\n{bar}\nWARNING: fastconv's C backend was not built: {exc}\n"
            "fastconv still works on the 'numpy' and 'numba' backends. To get the\n"
            "'c' backend, install a C compiler with OpenMP (e.g. gcc) and reinstall.\n"
            f"{bar}\n\n"
        )


setup(
    cffi_modules=_build_script().cffi_modules(),
    cmdclass={"build_ext": OptionalBuildExt},
)
