"""Layer: parameters, gradients, buffers, train/eval, config for save/load."""
from __future__ import annotations

import functools

import numpy as np

# Every fastconv layer class registers here by name, so a saved model can be rebuilt.
LAYER_REGISTRY: dict[str, type] = {}


def grad_name(param: str) -> str:
    """The gradient attribute of a parameter: weights -> d_weights."""
    return "d_" + param


def _clears_fused_mark(forward):
    @functools.wraps(forward)
    def run(self, *args, **kwargs):
        if self._fused_into is not None:
            self._fused_into = None
        return forward(self, *args, **kwargs)

    return run


class Layer:
    """Base class.  Subclasses set ``_params`` (names of trainable arrays; each
    has a gradient ``d_<name>`` of the same shape, updated in place by
    backward) and ``_buffers`` (state saved with the model, e.g. running
    statistics), implement ``forward``/``backward`` and ``get_config``."""

    _params: tuple[str, ...] = ()
    _buffers: tuple[str, ...] = ()
    _arrays: frozenset = frozenset()  # all of the above and the gradients (set per subclass)
    # Set by CNN.forward when this layer ran inside a fused or reordered stage:
    # its caches then do not describe its own forward, so its backward refuses.
    # The layer's own forward clears it.
    _fused_into: str | None = None
    # Saved with a model and rebuilt by name (False: fused stages, which a
    # model builds from its layers)
    saveable = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._arrays = frozenset((*cls._params, *map(grad_name, cls._params), *cls._buffers))
        if "forward" in cls.__dict__:
            cls.forward = _clears_fused_mark(cls.__dict__["forward"])
        # fastconv's own classes only: a user's class of the same name (a
        # tutorial's own ``ReLU``) must not replace the built-in one in load_model
        if cls.__module__.split(".")[0] == "fastconv" and cls.saveable:
            LAYER_REGISTRY[cls.__name__] = cls

    def __init__(self, backend: str | None = None):
        self.training = True
        self.backend = backend

    def __setattr__(self, name, value):
        # The dtype policy: a layer computes in its ``dtype`` (float32 unless
        # constructed otherwise or converted with ``astype``).  A parameter,
        # gradient or buffer assigned from outside -- ``layer.weights =
        # np.random.randn(...)``, float64 as the guides write it -- is
        # converted to that dtype on assignment, and must keep its shape.
        if value is not None and name in self._arrays and "dtype" in self.__dict__:
            value = np.ascontiguousarray(value, dtype=self.dtype)
            current = self.__dict__.get(name)
            if isinstance(current, np.ndarray) and current.shape != value.shape:
                raise ValueError(f"{type(self).__name__}.{name} has shape {current.shape}; "
                                 f"the assigned array has shape {value.shape}")
        object.__setattr__(self, name, value)

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
        if hasattr(self, "dtype"):
            self.dtype = np.dtype(dtype)  # first: assignments below convert to it
        for name in self._params:
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).astype(dtype))
                setattr(self, grad_name(name), getattr(self, grad_name(name)).astype(dtype))
        for name in self._buffers:
            setattr(self, name, getattr(self, name).astype(dtype))
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
        if x.size == 0:
            raise ValueError(f"{self!r}: the input is empty (shape {x.shape}); pass at least one sample")
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
        if self._fused_into is not None:
            raise RuntimeError(
                f"{self!r}: its last forward ran fused with its neighbours inside {self._fused_into}, "
                f"so its own backward cannot run; call model.backward(d_out), or build the model "
                f"with CNN(layers, fuse=False) to call each layer's backward by hand")
        if cache is None:
            raise RuntimeError(f"{self!r}: backward called before {what}")
        return cache


def layer_spec(layer) -> dict:
    """The saved form of a layer: its class name and constructor config."""
    return {"class": type(layer).__name__, "config": layer.get_config()}


def build_layer(spec) -> Layer:
    """A layer from its saved form (``layer_spec``); ValueError for anything
    that is not one (model files are untrusted input)."""
    if not isinstance(spec, dict):
        raise ValueError(f"a layer entry must be an object with 'class' and 'config', got {spec!r:.80}")
    name = spec.get("class")
    cls = LAYER_REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown layer class {name!r:.80}")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"the config of layer {name} must be an object, got {config!r:.80}")
    return cls(**config)
