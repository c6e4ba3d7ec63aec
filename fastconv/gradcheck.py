"""Numerical gradient checking for any layer or model."""
from __future__ import annotations

import copy

import numpy as np

from .layers.base import Layer


def _rng_states(layer):
    """Layers with randomness (dropout) keep their generator in ``.rng``."""
    found = [layer] if hasattr(layer, "rng") else []
    for _, child in layer.children():
        found += _rng_states(child)
    return found


def _rel_error(analytic, numeric, floor):
    """||a - n|| / (||a|| + ||n||), with the denominator floored: a gradient
    that is truly zero (a conv bias under BatchNorm) has only rounding noise
    numerically, and noise / noise is not an error."""
    denom = max(np.linalg.norm(analytic) + np.linalg.norm(numeric), floor)
    return float(np.linalg.norm(analytic - numeric) / denom)


def gradcheck(layer: Layer, x, eps=1e-6, max_checks=64, seed=0) -> float:
    """Max relative error of the input and parameter gradients of ``layer``
    against central differences, in float64.

    The loss is sum(layer(x) * R) for a fixed random R.  Works on a float64
    deep copy (the caller's layer is untouched); dropout masks are replayed
    identically in every forward.  Up to ``max_checks`` entries per array are
    checked (all of them for small arrays).  Relative error per array is
    ||analytic - numeric|| / max(||analytic|| + ||numeric||, floor), the floor
    being 1e7 times the rounding noise of the differences; the max is returned.
    """
    layer = copy.deepcopy(layer).astype(np.float64)
    x = np.array(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    random_layers = _rng_states(layer)
    states = [l.rng.bit_generator.state for l in random_layers]

    def forward():
        for l, s in zip(random_layers, states):
            l.rng.bit_generator.state = s
        return layer.forward(x)

    out = forward()
    weight = rng.standard_normal(out.shape)
    d_x = layer.backward(weight)
    # Central differences carry rounding noise of about
    # machine_eps * |loss terms| / eps; 1e7 times that is the floor under
    # which a gradient norm counts as zero (relative errors of 1e-7 there).
    floor = 1e7 * np.finfo(np.float64).eps * float(np.abs(out * weight).sum()) / eps
    arrays = [("input", x, d_x)] + [(n, v, g.copy()) for n, v, g in layer.parameters()]
    worst = 0.0
    for _, value, analytic in arrays:
        flat = value.reshape(-1)
        picks = np.arange(flat.size) if flat.size <= max_checks else rng.choice(flat.size, max_checks, replace=False)
        numeric = np.empty(len(picks))
        for k, i in enumerate(picks):
            old = flat[i]
            flat[i] = old + eps
            plus = np.sum(forward() * weight)
            flat[i] = old - eps
            minus = np.sum(forward() * weight)
            flat[i] = old
            numeric[k] = (plus - minus) / (2 * eps)
        worst = max(worst, _rel_error(analytic.reshape(-1)[picks], numeric, floor))
    return worst
