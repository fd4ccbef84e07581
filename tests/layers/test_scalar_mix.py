"""The listener's learned scalar mix as a Thinc layer (``layers/scalar_mix.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from thinc.api import Model

from spacy_elmo.layers.scalar_mix import elmo_scalar_mix

from ..elmo_helpers import LAYER_WIDTH


def test_listener_trained_on_other_weights_is_a_clear_error() -> None:
    mix = elmo_scalar_mix()
    mix.initialize(X=[np.zeros((3, 2, 64), dtype="f")])
    with pytest.raises(ValueError, match=r"built for 3 layers 64 wide.*'weights' setting"):
        mix.predict([np.zeros((3, 2, LAYER_WIDTH), dtype="f")])


def test_scalar_mix_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    mix: Model = elmo_scalar_mix()
    inputs = [rng.normal(size=(3, n, 4)).astype("float64") for n in (2, 5)]
    mix.initialize(X=inputs)
    mix.set_param("W", np.array([0.3, -0.2, 0.1]))
    mix.set_param("gamma", np.array([1.7]))
    d_out = [rng.normal(size=(n, 4)) for n in (2, 5)]

    def loss() -> float:
        outputs = mix.predict(inputs)
        return float(sum((o * d).sum() for o, d in zip(outputs, d_out, strict=True)))

    _, backprop = mix.begin_update(inputs)
    d_inputs = backprop(d_out)
    eps = 1e-6
    for name in ("W", "gamma"):
        param = mix.get_param(name).copy()
        numeric = np.zeros_like(param)
        for i in range(param.size):
            for sign in (1, -1):
                shifted = param.copy()
                shifted[i] += sign * eps
                mix.set_param(name, shifted)
                numeric[i] += sign * loss() / (2 * eps)
        mix.set_param(name, param)
        np.testing.assert_allclose(mix.get_grad(name), numeric, rtol=1e-5, atol=1e-7)
    original = inputs[1][2, 3, 1]
    inputs[1][2, 3, 1] = original + eps
    plus = loss()
    inputs[1][2, 3, 1] = original - eps
    minus = loss()
    inputs[1][2, 3, 1] = original
    assert d_inputs[1][2, 3, 1] == pytest.approx((plus - minus) / (2 * eps), rel=1e-5)
