"""Optimizers (SGD, Adam, AdamW) and learning-rate schedules.

An optimizer takes a model or layer (anything with ``parameters()``), or an
iterable of (name, value, grad) triples.  Given a model it asks for the
parameters at every step, so it never holds stale arrays; state (momentum,
Adam moments) is kept per parameter name.
"""
from __future__ import annotations

import math

import numpy as np

from . import backends


def _scalar(v, key: str) -> float:
    arr = np.asarray(v)
    if arr.shape != () or arr.dtype.kind not in "iuf":
        raise ValueError(f"optimizer state {key!r} must be a number, got {arr.dtype} of shape {arr.shape}")
    return float(arr)


def _check_param(name: str, value, grad) -> None:
    """A parameter and its gradient as the update kernels need them: float
    arrays of one shape and dtype (a gradient of another shape, even of the
    same size, is a bug upstream, not something to apply)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise TypeError(f"parameter {name!r} must be a float NumPy array, got {type(value).__name__}"
                        + (f" of dtype {value.dtype}" if isinstance(value, np.ndarray) else ""))
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"gradient of {name!r} must be a NumPy array, got {type(grad).__name__}")
    if grad.shape != value.shape:
        raise ValueError(f"gradient of {name!r} has shape {grad.shape}; expected the parameter's shape {value.shape}")
    if grad.dtype != value.dtype:
        raise TypeError(f"gradient of {name!r} has dtype {grad.dtype}; expected the parameter's dtype {value.dtype}")
    if not value.flags.writeable:
        raise ValueError(f"parameter {name!r} is read-only; the optimizer updates it in place")


def _check_slot(key: str, arr, value: np.ndarray) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise ValueError(f"optimizer state {key!r} must be a numeric array, got {type(arr).__name__}"
                         + (f" of dtype {arr.dtype}" if isinstance(arr, np.ndarray) else ""))
    if arr.shape != value.shape:
        raise ValueError(f"optimizer state {key!r} has shape {arr.shape}; its parameter has shape {value.shape}")


class Optimizer:
    slots: tuple[str, ...] = ()  # names of the per-parameter state arrays

    def __init__(self, params, lr):
        if not lr >= 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = float(lr)
        self.initial_lr = self.lr
        if hasattr(params, "parameters"):
            self._source = params.parameters
        else:
            triples = list(params)
            if not triples or len(triples[0]) != 3:
                raise TypeError("params must be a model/layer or an iterable of (name, value, grad)")
            self._source = lambda: iter(triples)
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0

    def parameters(self):
        return self._source()

    def zero_grad(self):
        for _, _, grad in self.parameters():
            grad[...] = 0

    def step(self):
        self.steps += 1
        for name, value, grad in self.parameters():
            _check_param(name, value, grad)
            state = self.state.setdefault(name, {})
            for slot, arr in state.items():  # state may come from a file: never trust its shape
                _check_slot(f"{name}/{slot}", arr, value)
            self._update(state, value, grad)

    def _update(self, state, value, grad):
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat arrays for checkpoints: 'name/slot' -> array, plus scalars."""
        flat = {f"{name}/{slot}": arr for name, slots in self.state.items() for slot, arr in slots.items()}
        flat["__steps__"] = np.array(self.steps)
        flat["__lr__"] = np.array(self.lr)
        return flat

    def load_state_dict(self, flat: dict) -> None:
        """Restore what state_dict() wrote.  The arrays are untrusted (a
        checkpoint file): each must name a parameter of this optimizer and
        have its shape; they are stored as copies in the parameter's dtype.
        Raises ValueError naming the offending entry; nothing is changed then."""
        if not hasattr(flat, "keys"):
            raise TypeError(f"optimizer state must be a mapping of arrays, got {type(flat).__name__}")
        for key in ("__steps__", "__lr__"):
            if key not in flat:
                raise ValueError(f"optimizer state lacks {key!r}; expected what state_dict() returns")
        steps, lr = _scalar(flat["__steps__"], "__steps__"), _scalar(flat["__lr__"], "__lr__")
        if steps != int(steps) or steps < 0:
            raise ValueError(f"optimizer state '__steps__' is {steps}; expected a step count >= 0")
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"optimizer state '__lr__' is {lr}; expected a finite learning rate >= 0")
        params = {name: value for name, value, _ in self.parameters()}
        state: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in flat.items():
            if key.startswith("__"):
                continue
            name, _, slot = str(key).rpartition("/")
            if name not in params:
                raise ValueError(f"optimizer state entry {key!r} names no parameter of this model "
                                 f"(parameters: {', '.join(list(params)[:6])}, ...)")
            if slot not in self.slots:
                raise ValueError(f"optimizer state entry {key!r}: {type(self).__name__} keeps "
                                 f"{', '.join(self.slots) or 'no state'}, not {slot!r}")
            _check_slot(key, arr, params[name])
            state.setdefault(name, {})[slot] = np.array(arr, dtype=params[name].dtype)
        for name, slots in state.items():
            if set(slots) != set(self.slots):
                raise ValueError(f"optimizer state of {name!r} has {sorted(slots)}; "
                                 f"{type(self).__name__} needs all of {list(self.slots)}")
        self.steps, self.lr, self.state = int(steps), float(lr), state


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay, PyTorch's
    update: v = momentum*v + g; p -= lr * (g + momentum*v if nesterov else v)."""

    slots = ("velocity",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def _update(self, state, value, grad):
        # One pass per parameter in the current backend's kernel (the NumPy
        # reference takes several); velocity lives in the optimizer state.
        kernels = backends.resolve(None)
        if value.dtype not in (np.float32, np.float64) or grad.dtype != value.dtype or not (
                value.flags.c_contiguous and grad.flags.c_contiguous):
            kernels = backends.load("numpy")  # views, other dtypes: the NumPy reference handles any array
        first = "velocity" not in state
        if self.momentum and first:
            state["velocity"] = np.empty_like(value)
        velocity = state.get("velocity", value)  # unused without momentum
        if velocity.dtype != value.dtype or not velocity.flags.c_contiguous:
            kernels = backends.load("numpy")
        kernels.sgd_update(value, grad, velocity, value.size, self.lr, self.momentum,
                                          self.weight_decay, int(self.nesterov), int(first))


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; weight_decay is L2 added to
    the gradient (use AdamW for decoupled decay)."""

    decoupled = False
    slots = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2 = map(float, betas)
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def _update(self, state, value, grad):
        g = grad
        if self.weight_decay and not self.decoupled:
            g = grad + self.weight_decay * value
        if "m" not in state:
            state["m"] = np.zeros_like(value)
            state["v"] = np.zeros_like(value)
        m, v = state["m"], state["v"]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1**self.steps)
        v_hat = v / (1 - self.beta2**self.steps)
        if self.weight_decay and self.decoupled:
            value -= value.dtype.type(self.lr * self.weight_decay) * value
        value -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(value.dtype)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


# ---------------------------------------------------------------- schedules
class _Schedule:
    """Call ``step()`` once per epoch (or per batch, as you define the
    horizon); it sets ``optimizer.lr``."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.initial_lr
        self.last_step = 0
        optimizer.lr = self.lr_at(0)

    def step(self):
        self.last_step += 1
        self.optimizer.lr = self.lr_at(self.last_step)
        return self.optimizer.lr

    def get_lr(self):
        return self.optimizer.lr


class StepLR(_Schedule):
    """lr = base * gamma ** (step // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class CosineAnnealingLR(_Schedule):
    """Cosine from base to eta_min over T_max steps, with optional linear warm-up."""

    def __init__(self, optimizer, T_max, eta_min=0.0, warmup_steps=0):
        self.T_max, self.eta_min, self.warmup = int(T_max), float(eta_min), int(warmup_steps)
        super().__init__(optimizer)

    def lr_at(self, t):
        if t < self.warmup:
            return self.base_lr * (t + 1) / self.warmup
        frac = min(1.0, (t - self.warmup) / max(1, self.T_max - self.warmup))
        return self.eta_min + (self.base_lr - self.eta_min) * 0.5 * (1 + math.cos(math.pi * frac))


class OneCycleLR(_Schedule):
    """Smith's one-cycle: cosine up from max_lr/div_factor to max_lr over
    pct_start of total_steps, then cosine down to max_lr/final_div_factor."""

    def __init__(self, optimizer, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4):
        self.max_lr, self.total = float(max_lr), int(total_steps)
        self.up = max(1, int(pct_start * self.total))
        self.start_lr = self.max_lr / div_factor
        self.final_lr = self.start_lr / final_div_factor
        super().__init__(optimizer)

    @staticmethod
    def _cos(a, b, frac):
        return b + (a - b) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    def lr_at(self, t):
        if t < self.up:
            return self._cos(self.start_lr, self.max_lr, t / self.up)
        return self._cos(self.max_lr, self.final_lr, (t - self.up) / max(1, self.total - self.up))


class TriangularLR(_Schedule):
    """Linear up from max_lr/div_factor to max_lr over pct_start of
    total_steps, then linear down to 0 (the fast CIFAR-10 recipes' schedule)."""

    def __init__(self, optimizer, max_lr, total_steps, pct_start=0.25, div_factor=10.0):
        self.max_lr, self.total = float(max_lr), max(1, int(total_steps))
        self.up = max(1, int(pct_start * self.total))
        self.start_lr = self.max_lr / div_factor
        super().__init__(optimizer)

    def lr_at(self, t):
        if t < self.up:
            return self.start_lr + (self.max_lr - self.start_lr) * t / self.up
        return self.max_lr * max(0.0, (self.total - t) / max(1, self.total - self.up))


class WeightAverage:
    """An exponential moving average of a model's parameters and buffers
    (``avg = decay * avg + (1 - decay) * value`` after each ``update()``),
    evaluated by swapping it in: ``with ema.swapped(): evaluate(model)``."""

    def __init__(self, model, decay=0.999):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.model, self.decay = model, float(decay)
        self.average = {name: value.copy() for name, value in self._arrays()}

    def _arrays(self):
        yield from ((n, v) for n, v, _ in self.model.parameters())
        yield from self.model.buffers()

    def update(self):
        for name, value in self._arrays():
            avg = self.average[name]
            avg *= avg.dtype.type(self.decay)
            avg += avg.dtype.type(1 - self.decay) * value

    def swapped(self):
        """Context manager: the model holds the averaged weights inside it."""
        import contextlib

        @contextlib.contextmanager
        def swap():
            saved = {name: value.copy() for name, value in self._arrays()}
            for name, value in self._arrays():
                value[...] = self.average[name]
            try:
                yield self.model
            finally:
                for name, value in self._arrays():
                    value[...] = saved[name]

        return swap()

    def state_dict(self) -> dict:
        return dict(self.average)

    def load_state_dict(self, arrays: dict) -> None:
        """Restore averages (untrusted: each must match its array's shape)."""
        for name, value in self._arrays():
            if name not in arrays:
                raise ValueError(f"weight-average state lacks {name!r}")
            if np.shape(arrays[name]) != value.shape:
                raise ValueError(f"weight-average state {name!r} has shape {np.shape(arrays[name])}; "
                                 f"expected {value.shape}")
            self.average[name] = np.array(arrays[name], dtype=value.dtype)
