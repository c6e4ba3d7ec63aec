"""Backend registry and resolution.

Every backend module exposes the same kernel names with the same argument
order (inputs, then preallocated outputs, then integer sizes).  Which module a
call uses is resolved in this order:

1. an explicit ``backend=`` argument (layers and functional ops take one),
2. the innermost :func:`use_backend` block of the calling thread, then
   :func:`set_backend` (process-wide),
3. the ``FASTCONV_BACKEND`` environment variable,
4. the default: the first of ``config.DEFAULT_BACKEND_ORDER`` that loads.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from pathlib import Path
from types import ModuleType

from .. import config

BACKEND_NAMES = ("numpy", "numba", "c")

_MODULES = {
    "numpy": "fastconv.backends.numpy_ref",
    "numba": "fastconv.backends.numba_kernels",
    "c": "fastconv.backends.c_backend",
}

_loaded: dict[str, ModuleType] = {}
_failures: dict[str, str] = {}
_selected: str | None = None  # set_backend: the whole process
_thread_local = threading.local()  # use_backend: .selected, this thread only


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run here; the message says why and what to do."""


def _check_name(name, source: str = "backend") -> str:
    if not isinstance(name, str) or name.lower() not in BACKEND_NAMES:
        raise ValueError(
            f"unknown {source} {name!r}; valid names are {', '.join(map(repr, BACKEND_NAMES))}"
        )
    return name.lower()


def load(name: str) -> ModuleType:
    """Import backend ``name`` or raise BackendUnavailableError with the reason."""
    name = _check_name(name)
    if name in _loaded:
        return _loaded[name]
    if name in _failures:
        raise BackendUnavailableError(_failures[name])
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError as exc:
        _failures[name] = _explain_failure(name, exc)
        raise BackendUnavailableError(_failures[name]) from exc
    _loaded[name] = module
    from .. import _threads

    _threads.apply_to_backend(module)
    return module


def _explain_failure(name: str, exc: ImportError) -> str:
    if name == "c":
        checkout = Path(__file__).resolve().parents[2]
        if (checkout / "csrc").is_dir() and (checkout / "setup.py").is_file():
            fix = f"then rebuild it in this checkout with `pip install -e {checkout}`"
        else:
            fix = "then reinstall fastconv so it compiles: `pip install --force-reinstall --no-cache-dir fastconv`"
        return (
            f"the C backend is unavailable: {exc}. It is compiled when fastconv is installed "
            f"and needs a C compiler with OpenMP (gcc >= 11); install one ({fix}); "
            f"until then fastconv runs on the other backends"
        )
    if name == "numba":
        return (
            f"the Numba backend is unavailable: {exc}. Install it with `pip install numba`"
        )
    return f"the {name} backend is unavailable: {exc}"


def available_backends() -> list[str]:
    """Names of the backends that load on this machine, in registry order."""
    names = []
    for name in BACKEND_NAMES:
        try:
            load(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


_warned: set[str] = set()


def default_backend() -> str:
    for name in config.DEFAULT_BACKEND_ORDER:
        try:
            load(name)
            return name
        except BackendUnavailableError as exc:
            # a preferred backend that did not load is said once, where the
            # user sees it (the install step's warning scrolls away in pip)
            if name not in _warned:
                _warned.add(name)
                warnings.warn(f"{exc} [fastconv falls back to the next backend]", RuntimeWarning, stacklevel=3)
            continue
    return "numpy"  # pragma: no cover - the reference always imports


def get_backend() -> str:
    """Name of the backend used when a call does not name one."""
    local = getattr(_thread_local, "selected", None)
    if local is not None:
        return local
    if _selected is not None:
        return _selected
    env = os.environ.get(config.ENV_BACKEND)
    if env:
        return _check_name(env, f"backend in ${config.ENV_BACKEND}")
    return default_backend()


def set_backend(name: str) -> None:
    """Use backend ``name`` from now on (``None`` returns to env/default)."""
    global _selected
    if name is None:
        _selected = None
        return
    load(name)  # fail now, with the reason, rather than at the first kernel call
    _selected = _check_name(name)


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: ``with fastconv.use_backend("numba"): ...``.

    Affects only the calling thread (other threads keep their own choice);
    blocks nest.  ``set_backend`` is the process-wide setting."""
    module = load(name)  # fail now, with the reason
    previous = getattr(_thread_local, "selected", None)
    _thread_local.selected = _check_name(name)
    try:
        yield module
    finally:
        _thread_local.selected = previous


def resolve(name: str | None = None) -> ModuleType:
    """The backend module for a call: ``name`` if given, else get_backend()."""
    return load(get_backend() if name is None else name)
