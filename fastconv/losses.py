"""Losses."""
from __future__ import annotations

import numpy as np


class SoftmaxCrossEntropy:
    """Softmax and cross-entropy fused (log-sum-exp, stable).

    ``forward(logits, labels)`` -> mean loss over the batch; labels are class
    indices (N,) or one-hot/probabilities (N, K).  ``backward()`` ->
    d_loss/d_logits = (softmax - target) / N.  ``label_smoothing`` mixes the
    target with the uniform distribution."""

    def __init__(self, label_smoothing=0.0):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self._cache = None

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def _target(self, labels, n, k, dtype):
        labels = np.asarray(labels)
        if labels.ndim == 1:
            if labels.shape[0] != n:
                raise ValueError(f"{labels.shape[0]} labels for {n} logits rows")
            if labels.dtype.kind not in "iu":
                raise TypeError(f"class-index labels must be integers, got dtype {labels.dtype}")
            if labels.min(initial=0) < 0 or labels.max(initial=0) >= k:
                raise ValueError(f"labels must lie in [0, {k}), got range [{labels.min()}, {labels.max()}]")
            target = np.zeros((n, k), dtype=dtype)
            target[np.arange(n), labels] = 1
        elif labels.shape == (n, k):
            target = labels.astype(dtype, copy=False)
        else:
            raise ValueError(f"labels of shape {labels.shape} do not match logits ({n}, {k}); "
                             f"give class indices (N,) or one-hot (N, K)")
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / k
        return target

    def forward(self, logits, labels):
        logits = np.asarray(logits)
        if logits.ndim != 2:
            raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
        n, k = logits.shape
        dtype = logits.dtype if logits.dtype.kind == "f" else np.float64
        target = self._target(labels, n, k, dtype)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self._cache = (np.exp(log_probs), target)
        return float(-(target * log_probs).sum() / n)

    def backward(self):
        if self._cache is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward called before forward")
        probs, target = self._cache
        return (probs - target) / probs.shape[0]
