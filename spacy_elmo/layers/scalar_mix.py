"""ELMo's learned scalar mix as a Thinc layer: ``gamma * sum_k softmax(w)_k * layer_k`` per Doc.

``(L, n, D) -> (n, D)``; the reduction itself is ``mixing.weighted_sum``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thinc.api import Model
from thinc.types import Floats2d, Floats3d

from ..errors import ElmoError
from ..mixing import weighted_sum

LAYER_NAME = "elmo_scalar_mix"


def elmo_scalar_mix() -> Model[list[Floats3d], list[Floats2d]]:
    """A learned mix of the layers: dims ``nL`` (layers), ``nI`` = ``nO`` (width); params ``W (nL,)``, ``gamma``."""
    return Model(
        LAYER_NAME,
        scalar_mix_forward,
        init=scalar_mix_init,
        dims={"nL": None, "nI": None, "nO": None},
        params={"W": None, "gamma": None},
    )


def scalar_mix_init(model: Model, X: list[Floats3d] | None = None, Y: Any = None) -> Model:  # noqa: N803
    if X is not None and len(X) > 0:
        if not model.has_dim("nL"):
            model.set_dim("nL", X[0].shape[0])
        if not model.has_dim("nI"):
            model.set_dim("nI", X[0].shape[2])
    if not model.has_dim("nL") or not model.has_dim("nI"):
        raise ElmoError("the ELMo scalar mix needs sample data to learn its number of layers and width")
    model.set_dim("nO", model.get_dim("nI"))
    if not model.has_param("W"):
        model.set_param("W", model.ops.alloc1f(model.get_dim("nL")))
        model.set_param("gamma", model.ops.asarray1f([1.0]))
    return model


def _check_shape(model: Model, layers: Floats3d) -> None:
    n_layers, width = model.get_dim("nL"), model.get_dim("nI")
    if layers.ndim != 3 or layers.shape[0] != n_layers or layers.shape[2] != width:
        raise ElmoError(
            f"this ELMo scalar mix was built for {n_layers} layers {width} wide, but the elmo model gives "
            f"{tuple(layers.shape)} (layers, tokens, width): the elmo 'weights' setting names a different biLM "
            "from the one this pipeline was trained with"
        )


def scalar_mix_forward(
    model: Model, inputs: list[Floats3d], is_train: bool
) -> tuple[list[Floats2d], Callable[[list[Floats2d]], list[Floats3d]]]:
    xp = model.ops.xp
    W = model.get_param("W")
    gamma = model.get_param("gamma")[0]
    shifted = xp.exp(W - W.max())
    weights = shifted / shifted.sum()
    mixed = []
    for layers in inputs:
        _check_shape(model, layers)
        mixed.append(weighted_sum(weights, layers, xp))
    outputs = [gamma * m for m in mixed]

    def backprop(d_outputs: list[Floats2d]) -> list[Floats3d]:
        d_weights = xp.zeros_like(weights)
        d_gamma = 0.0
        d_inputs = []
        for layers, mix, d_out in zip(inputs, mixed, d_outputs, strict=True):
            d_gamma += float((d_out * mix).sum())
            d_mix = gamma * d_out
            d_weights += xp.tensordot(layers, d_mix, axes=([1, 2], [0, 1]))
            d_inputs.append(weights[:, None, None] * d_mix[None])
        model.inc_grad("W", weights * (d_weights - (weights * d_weights).sum()))
        model.inc_grad("gamma", model.ops.asarray1f([d_gamma]))
        return d_inputs

    return outputs, backprop
