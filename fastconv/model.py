"""CNN (alias Sequential): the container of the from-scratch guides, plus
summary(), predict(), save() and load_model()."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._npz import read_npz, write_npz
from .backends import get_backend
from .fusion import FUSION_TABLE, FusionRule, fused_backward, plan  # noqa: F401 - FUSION_TABLE, FusionRule: public here too
from .layers.base import Layer, build_layer, grad_name, layer_spec

FORMAT = "fastconv.model"
FORMAT_VERSION = 1
_META_KEY = "__fastconv_model__"


class CNN(Layer):
    """A stack of layers: forward in order, backward in reverse,
    update_params(lr) takes a plain SGD step on every parameter.

    ``layers`` may hold fastconv layers and any object of one's own with
    ``forward(x)`` and ``backward(d_out)`` (its ``weights``/``bias`` with
    ``d_weights``/``d_bias`` count as parameters).  With ``fuse=True`` (the
    default) runs of fastconv layers listed in FUSION_TABLE execute as fused
    stages; the results and gradients are the same.  After such a forward,
    ``model.backward`` is the way back: a fused layer's own ``backward``
    refuses with a message (build with ``fuse=False`` to call each layer's
    backward by hand, as the guides' container does)."""

    def __init__(self, layers, fuse: bool = True):
        super().__init__()
        self.layers = list(layers)
        self.fuse = bool(fuse)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer) and not (
                    callable(getattr(layer, "forward", None)) and callable(getattr(layer, "backward", None))):
                raise TypeError(f"layer {i} is {type(layer).__name__}: expected a fastconv Layer or an "
                                f"object with forward(x) and backward(d_out) methods")

    def children(self):
        return [(f"layers.{i}", layer) for i, layer in enumerate(self.layers) if isinstance(layer, Layer)]

    def parameters(self, prefix: str = ""):
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Layer):
                yield from layer.parameters(f"{prefix}layers.{i}.")
            else:  # a user's own layer: the guides' weights/bias with d_weights/d_bias
                for name in ("weights", "bias"):
                    value, grad = getattr(layer, name, None), getattr(layer, grad_name(name), None)
                    if isinstance(value, np.ndarray) and isinstance(grad, np.ndarray):
                        yield f"{prefix}layers.{i}.{name}", value, grad

    def train(self, mode: bool = True):
        super().train(mode)
        for layer in self.layers:
            if not isinstance(layer, Layer) and callable(getattr(layer, "train", None)):
                layer.train(mode)
        return self

    def _schedule(self):
        """The stages forward runs (see FUSION_TABLE), rebuilt only when the
        layer list, ``fuse`` or the backend (fusion depends on it) changes."""
        key = (self.fuse, get_backend(), *map(id, self.layers))
        if getattr(self, "_order_key", None) != key:
            if self.fuse:
                self._order, self._rewritten = plan(self.layers)
            else:
                self._order, self._rewritten = list(self.layers), set()
            self._order_key = key
        return self._order

    def forward(self, x):
        stages = self._schedule()
        for stage in stages:
            x = stage.forward(x)
        # layers that ran inside a fused or reordered stage now hold caches
        # their own backward must not use: mark them (cleared by their forward)
        for layer in self.layers:
            if id(layer) in self._rewritten:
                layer._fused_into = "CNN.forward"
        return x

    def backward(self, d_out, input_grad=True, *, after_stage=None):
        """Backpropagate ``d_out``; returns d_x, or None with input_grad=False.

        Without the input gradient (a training loop never needs the gradient
        of the images), backward stops at the first stage with parameters,
        which computes only its parameter gradients when it can
        (``backward_params_only``): parameter-free layers before it
        (Normalize, Dropout, ...) need no backward at all.
        ``after_stage(stage)`` is called as each stage's gradients are ready
        (data-parallel training starts their allreduce then)."""
        order = self._schedule()
        stop = 0
        if not input_grad:
            stop = next((k for k, s in enumerate(order) if _has_params(s)), len(order))
        with fused_backward(self.layers, self._rewritten):
            for k in range(len(order) - 1, stop - 1, -1):
                stage = order[k]
                if k == stop and not input_grad:
                    if hasattr(stage, "backward_params_only"):
                        stage.backward_params_only(d_out)
                    else:
                        stage.backward(d_out)
                    d_out = None
                else:
                    d_out = stage.backward(d_out)
                if after_stage is not None:
                    after_stage(stage)
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
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a fastconv Layer: save() stores "
                                f"fastconv layers only (save your own layer's arrays yourself)")
        return {"layers": [layer_spec(layer) for layer in self.layers]}

    def save(self, path, extra: dict | None = None):
        """Write the model to ``path`` (.npz): parameters, buffers and the
        architecture as JSON.  No pickle; written to a temporary file and
        renamed, so a crash never leaves a half-written model."""
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "class": type(self).__name__,
                "architecture": self.get_config(), "extra": extra or {}}
        write_npz(path, {_META_KEY: np.array(json.dumps(meta)), **model_arrays(self)})



def _has_params(stage) -> bool:
    layers = getattr(stage, "layers", (stage,)) if not isinstance(stage, CNN) else (stage,)
    for layer in layers:
        if isinstance(layer, Layer):
            if any(True for _ in layer.parameters()):
                return True
        elif any(isinstance(getattr(layer, n, None), np.ndarray) for n in ("weights", "bias")):
            return True
    return False


Sequential = CNN


def model_arrays(model) -> dict[str, np.ndarray]:
    """Every parameter and buffer, keyed as saved: 'param:<name>', 'buffer:<name>'."""
    arrays = {"param:" + n: v for n, v, _ in model.parameters()}
    arrays.update({"buffer:" + n: v for n, v in model.buffers()})
    return arrays


def read_model_file(path):
    """(metadata dict, {name: array}) of a saved model; ValueError naming the
    file and the problem for anything that is not one."""
    path = Path(path)
    arrays = read_npz(path, "fastconv model")
    if _META_KEY not in arrays:
        raise ValueError(f"{path} is not a fastconv model: it has no {_META_KEY} entry")
    meta = parse_json_entry(arrays.pop(_META_KEY), path, "model metadata")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastconv model (format {meta.get('format')!r:.80})")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path}: the model format version is {version!r:.80}; expected an integer")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer fastconv (format version {version})")
    if not isinstance(meta.get("architecture"), dict):
        raise ValueError(f"{path}: the model metadata has no architecture object")
    return meta, arrays


def parse_json_entry(array, path, what: str) -> dict:
    """The JSON object stored as a 0-d string array (model metadata, checkpoint state)."""
    if array.shape != () or array.dtype.kind != "U":
        raise ValueError(f"{path}: the {what} is not a JSON string (dtype {array.dtype}, shape {array.shape})")
    try:
        value = json.loads(str(array))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the {what} must be a JSON object, got {type(value).__name__}")
    return value


def load_model(path) -> CNN:
    """Rebuild a model written by CNN.save (loads with allow_pickle=False)."""
    meta, arrays = read_model_file(path)
    return build_model(meta["architecture"], arrays, path)


def build_model(architecture: dict, arrays: dict, path) -> CNN:
    """A CNN from its saved architecture, filled with ``arrays`` (keys as in
    model_arrays); ValueError naming ``path`` if they do not fit."""
    try:
        specs = architecture["layers"]
        if not isinstance(specs, list):
            raise ValueError(f"'layers' must be a list, got {type(specs).__name__}")
        model = CNN([build_layer(spec) for spec in specs])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: cannot rebuild the architecture: {exc}") from None
    targets = model_arrays(model)
    missing = sorted(set(targets) - set(arrays))
    if missing:
        raise ValueError(f"{path}: missing arrays {missing[:5]}")
    for key, target in targets.items():
        if not isinstance(arrays[key], np.ndarray) or arrays[key].dtype.kind not in "iuf":
            raise ValueError(f"{path}: {key} is not a numeric array")
        if arrays[key].shape != target.shape:
            raise ValueError(f"{path}: {key} has shape {arrays[key].shape}, the architecture needs {target.shape}")
        target[...] = arrays[key]
    return model
