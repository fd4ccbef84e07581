"""Reducing ELMo's layers ``(L, n, D)`` to one vector per token: the one NumPy/CuPy implementation.

Used by the component (``doc.tensor``, the ``mix`` setting), by the listener's learned scalar
mix (``layers/scalar_mix.py``) and by the ``embed`` command. The PyTorch module for a mix
inside a torch model is ``bilm/scalar_mix.py``. Imports NumPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ElmoError

MIX_NAMES = ("average", "top", "concat")
Mix = str | Sequence[float]


def check_mix(mix: Any, n_layers: int | None = None) -> str | list[float]:
    """Validate the ``mix`` setting: a name in ``MIX_NAMES`` or a list of one weight per layer."""
    if isinstance(mix, str):
        if mix not in MIX_NAMES:
            raise ElmoError(f"elmo setting 'mix' must be one of {MIX_NAMES} or a list of layer weights, found {mix!r}")
        return mix
    if isinstance(mix, Sequence) and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in mix):
        weights = [float(w) for w in mix]
        if not weights or not all(np.isfinite(weights)):
            raise ElmoError(f"elmo setting 'mix' must be a non-empty list of finite numbers, found {list(mix)!r}")
        if n_layers is not None and len(weights) != n_layers:
            raise ElmoError(f"elmo setting 'mix' has {len(weights)} weights but the biLM has {n_layers} layers")
        return weights
    raise ElmoError(f"elmo setting 'mix' must be one of {MIX_NAMES} or a list of layer weights, found {mix!r}")


def mix_width(mix: Mix, n_layers: int, layer_width: int) -> int:
    """Width of the mixed vectors: ``D``, or ``L * D`` for ``"concat"``."""
    return n_layers * layer_width if mix == "concat" else layer_width


def weighted_sum(weights: Any, layers: Any, xp: Any = np) -> Any:
    """``sum_k weights[k] * layers[k]``: ``(L,)`` and ``(L, n, D)`` to ``(n, D)``; ``xp`` is NumPy or CuPy."""
    return xp.tensordot(weights, layers, axes=(0, 0))


def mix_layers(layers: np.ndarray, mix: Mix) -> np.ndarray:
    """``(L, n, D)`` float32 to ``(n, D)`` (``(n, L * D)`` for ``"concat"``), in float32 NumPy.

    ``average`` and a list of weights are ``weighted_sum``; ``top`` is the last layer.
    """
    layers = np.asarray(layers, dtype=np.float32)
    n_layers = layers.shape[0]
    if mix == "top":
        return np.ascontiguousarray(layers[-1])
    if mix == "concat":
        return np.ascontiguousarray(np.concatenate(list(layers), axis=-1)) if n_layers else layers
    if mix == "average":
        weights = np.full(n_layers, 1.0 / n_layers, dtype=np.float32)
    else:
        weights = np.asarray(check_mix(mix, n_layers), dtype=np.float32)
    return np.ascontiguousarray(weighted_sum(weights, layers), dtype=np.float32)
