"""Layer: parameters, gradients, buffers, train/eval, config for save/load."""
from __future__ import annotations

import numpy as np

# Every layer class registers here by name, so a saved model can be rebuilt.
LAYER_REGISTRY: dict[str, type] = {}


def grad_name(param: str) -> str:
    """The gradient attribute of a parameter: weights -> d_weights."""
    return "d_" + param


class Layer:
    """Base class.  Subclasses set ``_params`` (names of trainable arrays; each
    has a gradient ``d_<name>`` of the same shape, updated in place by
    backward) and ``_buffers`` (state saved with the model, e.g. running
    statistics), implement ``forward``/``backward`` and ``get_config``."""

    _params: tuple[str, ...] = ()
    _buffers: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        LAYER_REGISTRY[cls.__name__] = cls

    def __init__(self, backend: str | None = None):
        self.training = True
        self.backend = backend

    # ------------------------------------------------------------ structure
    def children(self):
        """(name, layer) pairs of sub-layers; blocks override this."""
        return []

    def parameters(self, prefix: str = ""):
        """Yield (name, value, grad) for every trainable array, sub-layers included."""
        for name in self._params:
            value = getattr(self, name)
            if value is not None:
                yield prefix + name, value, getattr(self, grad_name(name))
        for child_name, child in self.children():
            yield from child.parameters(f"{prefix}{child_name}.")

    def buffers(self, prefix: str = ""):
        """Yield (name, value) for saved non-trainable state."""
        for name in self._buffers:
            yield prefix + name, getattr(self, name)
        for child_name, child in self.children():
            yield from child.buffers(f"{prefix}{child_name}.")

    def params(self):
        return [v for _, v, _ in self.parameters()]

    def grads(self):
        return [g for _, _, g in self.parameters()]

    def num_params(self) -> int:
        return int(sum(v.size for v in self.params()))

    def zero_grad(self):
        for g in self.grads():
            g[...] = 0

    def train(self, mode: bool = True):
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def astype(self, dtype):
        """Convert parameters, gradients and float buffers to ``dtype`` (in place); returns self."""
        for name in self._params:
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).astype(dtype))
                setattr(self, grad_name(name), getattr(self, grad_name(name)).astype(dtype))
        for name in self._buffers:
            setattr(self, name, getattr(self, name).astype(dtype))
        if hasattr(self, "dtype"):
            self.dtype = np.dtype(dtype)
        for _, child in self.children():
            child.astype(dtype)
        return self

    def get_config(self) -> dict:
        """Constructor arguments (JSON-serialisable) that rebuild this layer."""
        return {}

    # ----------------------------------------------------------- computing
    def forward(self, x):
        raise NotImplementedError

    def backward(self, d_out):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------- helpers
    def _input(self, x, ndim, layout, dtype=None):
        """Validate a forward input: rank, numeric type; cast to ``dtype``."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "fiu" or x.dtype == bool:
            raise TypeError(f"{self!r}: input has dtype {x.dtype}; expected a real numeric array")
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            hint = "; add a batch axis with x[None]" if x.ndim + 1 in allowed else ""
            raise ValueError(f"{self!r} expects a {layout} input, got shape {x.shape}{hint}")
        if dtype is not None and x.dtype != dtype:
            x = x.astype(dtype)
        return x

    def _need_cache(self, cache, what="forward"):
        if cache is None:
            raise RuntimeError(f"{self!r}: backward called before {what}")
        return cache
