"""CNN (alias Sequential): the container of the from-scratch guides, plus
summary(), predict(), save() and load_model()."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .backends import get_backend
from .layers.base import LAYER_REGISTRY, Layer
from .layers.fused import ConvPoolReLU, CroppedConv, fusable

FORMAT = "fastconv.model"
FORMAT_VERSION = 1
_META_KEY = "__fastconv_model__"


class CNN(Layer):
    """A stack of layers: forward in order, backward in reverse,
    update_params(lr) takes a plain SGD step on every parameter."""

    def __init__(self, layers):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is {type(layer).__name__}, not a fastconv Layer")

    def children(self):
        return [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]

    def _schedule(self):
        """Execution order, rebuilt only when the layer list changes.

        * A ReLU directly followed by a MaxPool2D runs as pool-then-ReLU.
          ReLU commutes with max (max(relu(x)) == relu(max(x)), also with
          -inf padding) and the gradients w.r.t. x are identical, but the ReLU
          then touches a 4x smaller tensor (2x2 pool) in both passes.
        * A Conv2D (groups 1) followed by that pool (no padding) and ReLU runs
          as one ConvPoolReLU stage where the backend's fused kernels are its
          fast path (layers/fused.py): the convolution's full output or its
          dense gradient never reach memory; gradients come from the winners.
        * Any other unpadded Conv2D before an unpadded MaxPool2D gets only the
          input rows and columns whose outputs the pool reads (CroppedConv)."""
        # fusion depends on the backend, which set_backend may change
        key = (get_backend(), *map(id, self.layers))
        if getattr(self, "_order_key", None) == key:
            return self._order
        order, i = [], 0
        while i < len(self.layers):
            layer = self.layers[i]
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if type(layer).__name__ == "ReLU" and type(nxt).__name__ == "MaxPool2D":
                order += [nxt, layer]
                i += 2
            else:
                order.append(layer)
                i += 1
        fused, i = [], 0
        while i < len(order):
            conv, pool, relu = (order[i:i + 3] + [None, None])[:3]
            if (type(conv).__name__, type(pool).__name__, type(relu).__name__) == (
                    "Conv2D", "MaxPool2D", "ReLU") and fusable(conv, pool):
                fused.append(ConvPoolReLU(conv, pool, relu))
                i += 3
            elif (type(conv).__name__, type(pool).__name__) == ("Conv2D", "MaxPool2D") and (
                    conv.padding == (0, 0) and pool.padding == (0, 0)):
                fused.append(CroppedConv(conv, pool))  # a no-op crop when the pool reads everything
                i += 1
            else:
                fused.append(order[i])
                i += 1
        self._order_key, self._order = key, fused
        return fused

    def forward(self, x):
        for stage in self._schedule():
            x = stage.forward(x)
        return x

    def backward(self, d_out, input_grad=True):
        """Backpropagate ``d_out``; returns d_x, or None with input_grad=False.

        Without the input gradient (a training loop never needs the gradient
        of the images), backward stops at the first stage with parameters,
        which computes only its parameter gradients when it can
        (``backward_params_only``): parameter-free layers before it
        (Normalize, Dropout, ...) need no backward at all."""
        order = self._schedule()
        stop = 0
        if not input_grad:
            stop = next((k for k, s in enumerate(order) if _has_params(s)), len(order))
        for k in range(len(order) - 1, stop - 1, -1):
            stage = order[k]
            if k == stop and not input_grad:
                if hasattr(stage, "backward_params_only"):
                    stage.backward_params_only(d_out)
                else:
                    stage.backward(d_out)
                return None
            d_out = stage.backward(d_out)
        return d_out if input_grad else None

    def update_params(self, lr):
        """Plain SGD: value -= lr * grad, for every parameter (BatchNorm's too)."""
        for _, value, grad in self.parameters():
            value -= value.dtype.type(lr) * grad

    def predict(self, x, batch_size=1000):
        """Class indices (argmax of the output), computed in eval mode."""
        was_training = self.training
        self.eval()
        try:
            outs = [self.forward(x[i:i + batch_size]).argmax(axis=-1) for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return np.concatenate(outs)

    def summary(self, input_shape) -> str:
        """A table of layers, output shapes and parameter counts for an input of
        ``input_shape`` ((C, H, W) or (features,); a batch axis is allowed)."""
        shape = tuple(input_shape)
        x = np.zeros((1, *shape) if len(shape) in (1, 3) else shape, dtype=np.float32)
        was_training = self.training
        self.eval()
        rows = []
        try:
            for i, layer in enumerate(self.layers):
                x = layer.forward(x)
                rows.append((f"{i}: {type(layer).__name__}", str((None, *x.shape[1:])), layer.num_params()))
        finally:
            self.train(was_training)
        total = sum(r[2] for r in rows)
        widths = [max(len(h), *(len(str(r[k])) for r in rows)) for k, h in enumerate(("layer", "output shape"))]
        lines = [f"{'layer':<{widths[0]}}  {'output shape':<{widths[1]}}  {'params':>12}",
                 "-" * (widths[0] + widths[1] + 16)]
        lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>12,}" for a, b, c in rows]
        lines += ["-" * (widths[0] + widths[1] + 16), f"total parameters: {total:,}"]
        return "\n".join(lines)

    # -------------------------------------------------------------- save
    def get_config(self):
        return {"layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    def save(self, path, extra: dict | None = None):
        """Write the model to ``path`` (.npz): parameters, buffers and the
        architecture as JSON.  No pickle; written to a temporary file and
        renamed, so a crash never leaves a half-written model."""
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "class": type(self).__name__,
                "architecture": self.get_config(), "extra": extra or {}}
        atomic_save_npz(path, {_META_KEY: np.array(json.dumps(meta)), **model_arrays(self)})



def _has_params(stage) -> bool:
    layers = stage.layers if isinstance(stage, (ConvPoolReLU, CroppedConv)) else (stage,)
    return any(True for layer in layers for _ in layer.parameters())


Sequential = CNN


def atomic_save_npz(path, arrays: dict) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def model_arrays(model) -> dict[str, np.ndarray]:
    """Every parameter and buffer, keyed as saved: 'param:<name>', 'buffer:<name>'."""
    arrays = {"param:" + n: v for n, v, _ in model.parameters()}
    arrays.update({"buffer:" + n: v for n, v in model.buffers()})
    return arrays


def build_layer(spec: dict) -> Layer:
    cls = LAYER_REGISTRY.get(spec.get("class"))
    if cls is None:
        raise ValueError(f"unknown layer class {spec.get('class')!r}")
    return cls(**spec.get("config", {}))


def read_model_file(path):
    """(metadata dict, {name: array}) of a saved model; ValueError naming the
    file and the problem for anything that is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if _META_KEY not in data.files:
                raise ValueError(f"{path} is not a fastconv model: it has no {_META_KEY} entry")
            meta = json.loads(str(data[_META_KEY]))
            arrays = {k: data[k] for k in data.files if k != _META_KEY}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable fastconv model (corrupt or truncated?): {exc}") from None
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path} is not a readable fastconv model: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastconv model (format {meta.get('format')!r})")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer fastconv (format version {meta['version']})")
    return meta, arrays


def load_model(path) -> CNN:
    """Rebuild a model written by CNN.save (loads with allow_pickle=False)."""
    meta, arrays = read_model_file(path)
    return build_model(meta["architecture"], arrays, path)


def build_model(architecture: dict, arrays: dict, path) -> CNN:
    """A CNN from its saved architecture, filled with ``arrays`` (keys as in
    model_arrays); ValueError naming ``path`` if they do not fit."""
    try:
        model = CNN([build_layer(spec) for spec in architecture["layers"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot rebuild the architecture: {exc}") from None
    targets = model_arrays(model)
    missing = sorted(set(targets) - set(arrays))
    if missing:
        raise ValueError(f"{path}: missing arrays {missing[:5]}")
    for key, target in targets.items():
        if arrays[key].shape != target.shape:
            raise ValueError(f"{path}: {key} has shape {arrays[key].shape}, the architecture needs {target.shape}")
        target[...] = arrays[key]
    return model
