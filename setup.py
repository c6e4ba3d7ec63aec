"""Builds the optional C/OpenMP extension through cffi (metadata: pyproject.toml).

If the extension cannot be compiled (no C compiler, no OpenMP), installation
still succeeds with a warning; fastconv then runs on its NumPy and Numba
backends and `fastconv.available_backends()` leaves out "c".
"""
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the C backend cannot build."""

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
    cffi_modules=["fastconv/_build_cffi.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
