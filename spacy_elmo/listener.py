"""Layers that turn ELMo's per-Doc layers into token vectors for a downstream component.

- ``spacy_elmo.ElmoListener.v1``: listens to an upstream ``elmo`` component (shares its
  biLM and its forward pass), then applies this listener's own learned scalar mix and an
  optional projection.
- ``spacy_elmo.Elmo.v1``: the same head on a biLM of its own, for use without the
  component (``nlp.replace_listeners`` produces it; also usable as ``spacy.Tok2Vec.v2``'s
  ``embed``).

Both output one ``Floats2d (n_tokens, width)`` per Doc, ``width`` being the projection
width or ``2P`` without projection.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, Linear, Model, chain, with_array
from thinc.types import Floats2d, Floats3d

from .doc_hooks import DOC_EXTENSION, stored_layers
from .errors import ElmoError
from .thinc_model import ElmoSettings, check_settings_source, create_elmo_model


class ElmoListener(Model):
    """Receives the upstream ``elmo`` component's per-Doc layers during training.

    At prediction time it reads them from ``doc._.elmo`` (set by the component); Docs
    without them are run through the upstream component if this listener is linked.
    """

    name = "elmo_listener"

    def __init__(self, upstream_name: str) -> None:
        Model.__init__(self, name=self.name, forward=listener_forward, dims={})
        self.upstream_name = upstream_name
        self._batch_id: int | None = None
        self._outputs: list[Floats3d] | None = None
        self._backprop: Callable[[list[Floats3d]], Any] | None = None
        self._upstream: weakref.ref[Any] | None = None

    @classmethod
    def get_batch_id(cls, inputs: list[Doc]) -> int:
        """An identifier of a batch of Docs (the sum of their token ids, as spaCy's listener)."""
        return sum(sum(token.orth for token in doc) for doc in inputs)

    def link(self, component: Any) -> None:
        self._upstream = weakref.ref(component)

    @property
    def upstream(self) -> Any:
        return self._upstream() if self._upstream is not None else None

    def receive(self, batch_id: int, outputs: list[Floats3d], backprop: Callable[[list[Floats3d]], Any]) -> None:
        self._batch_id = batch_id
        self._outputs = outputs
        self._backprop = backprop

    def verify_inputs(self, inputs: list[Doc]) -> bool:
        if self._batch_id is None and self._outputs is None:
            raise ElmoError(
                f"ELMo listener (upstream '{self.upstream_name}') got no data: the upstream elmo component must run "
                "its update before this component in the same nlp.update call"
            )
        batch_id = self.get_batch_id(inputs)
        if batch_id != self._batch_id:
            raise ElmoError(
                f"ELMo listener (upstream '{self.upstream_name}') got a different batch than its upstream component "
                f"({batch_id} != {self._batch_id})"
            )
        return True


def _stored_layers(model: ElmoListener, docs: list[Doc]) -> list[Floats3d]:
    """Per-Doc layers from ``doc._.elmo``, computing the missing ones with the upstream component."""
    found: list[Floats3d | None] = []
    for doc in docs:
        layers = stored_layers(doc)
        found.append(model.ops.asarray3f(layers) if layers is not None else None)
    missing = [i for i, layers in enumerate(found) if layers is None]
    if missing:
        upstream = model.upstream
        if upstream is None:
            raise ElmoError(
                f"Doc has no ELMo layers (doc._.{DOC_EXTENSION} is unset, or holds only the mix of an elmo component "
                "with doc_layers = 'mix') and this listener is not linked to an elmo "
                f"component named '{model.upstream_name}': add the 'elmo' component before this one, or use the "
                "inline architecture spacy_elmo.Elmo.v1"
            )
        computed = upstream.predict([docs[i] for i in missing])
        for i, layers in zip(missing, computed, strict=True):
            found[i] = model.ops.asarray3f(layers)
    return [layers for layers in found if layers is not None]


def listener_forward(
    model: ElmoListener, docs: list[Doc], is_train: bool
) -> tuple[list[Floats3d], Callable[[list[Floats3d]], list[Doc]]]:
    if is_train and model._batch_id is not None:
        model.verify_inputs(docs)
        outputs, backprop_upstream = model._outputs, model._backprop
        assert outputs is not None and backprop_upstream is not None

        def backprop(d_outputs: list[Floats3d]) -> list[Doc]:
            backprop_upstream(d_outputs)
            return []

        return outputs, backprop
    # Prediction, or training while the upstream is frozen by spaCy (annotating_components).
    return _stored_layers(model, docs), lambda d_outputs: []


def elmo_scalar_mix() -> Model[list[Floats3d], list[Floats2d]]:
    """ELMo's learned mix: ``gamma * sum_k softmax(w)_k * layer_k``, per Doc ``(L, n, D) -> (n, D)``."""
    return Model(
        "elmo_scalar_mix",
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
        mixed.append(xp.tensordot(weights, layers, axes=(0, 0)))
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


def build_elmo_head(width: int | None) -> Model[list[Floats3d], list[Floats2d]]:
    """Learned scalar mix, dropout (spaCy's training dropout), then an optional linear projection."""
    layers: list[Model] = [elmo_scalar_mix(), Dropout(0.0)]
    if width is not None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ElmoError(f"ELMo listener setting 'width' must be a positive integer or null, found {width!r}")
        layers.append(with_array(Linear(nO=width)))
    head = chain(*layers)
    if width is not None:
        head.set_dim("nO", width)
    return head


@registry.architectures("spacy_elmo.ElmoListener.v1")
def build_elmo_listener(upstream: str = "*", width: int | None = None) -> Model[list[Doc], list[Floats2d]]:
    """Token vectors from an upstream ``elmo`` component: its layers, mixed by this listener's own weights.

    ``upstream``: the elmo component's name (``"*"``: any). ``width``: project to this width (null: ``2P``).
    """
    model = chain(ElmoListener(upstream), build_elmo_head(width))
    if width is not None:
        model.set_dim("nO", width)
    return model


@registry.architectures("spacy_elmo.Elmo.v1")
def build_inline_elmo(
    weights: str | None = None,
    width: int | None = None,
    state: str = "reset",
    frozen: bool = True,
    max_batch_tokens: int = 4096,
    window_size: int = 200,
    window_overlap: int = 50,
    cache_tokens: int = 0,
    precision: str = "fp32",
    options: str | None = None,
) -> Model[list[Doc], list[Floats2d]]:
    """A biLM of its own plus the listener head: what ``ElmoListener.v1`` computes, without the component.

    ``precision`` (default ``fp32``, exact) is the biLM's CPU inference mode, as the component's setting.
    """
    settings = ElmoSettings(
        weights=weights,
        state=state,
        frozen=frozen,
        max_batch_tokens=max_batch_tokens,
        window_size=window_size,
        window_overlap=window_overlap,
        cache_tokens=cache_tokens,
        precision=precision,
        options=options,
    )
    check_settings_source(settings)
    bilm = create_elmo_model(settings)
    model = chain(bilm, build_elmo_head(width))
    if width is not None:
        model.set_dim("nO", width)
    return model


def replace_listener_cfg(
    settings: dict[str, Any], tok2vec_model_cfg: dict[str, Any], listener_cfg: dict[str, Any]
) -> dict[str, Any]:
    """The ``spacy_elmo.Elmo.v1`` config that ``nlp.replace_listeners`` puts in place of a listener."""
    config = {"@architectures": "spacy_elmo.Elmo.v1", **settings}
    config["width"] = listener_cfg.get("width")
    return config
