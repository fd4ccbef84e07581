"""The listener: a node in a downstream component's model that receives the ``elmo`` component's layers.

During training the component's ``update`` hands every listener the layers of the batch and a
callback that takes their gradient (``receive``); the listener's backprop calls it once and
drops what it stored (``backprop_and_clear``, as spacy-transformers' listener). At prediction
time it reads ``doc._.elmo``, set by the component; Docs without it are run through the
upstream component if the listener is linked to one.

Output: one ``Floats3d (n_layers + 1, n_tokens, 2P)`` per Doc.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats3d

from ..doc_hooks import DOC_EXTENSION
from ..errors import ElmoError


class ElmoListener(Model):
    """Receives the upstream ``elmo`` component's per-Doc layers during training."""

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
        """Store a batch's layers and the callback that takes their gradient (the upstream's ``update``)."""
        self._batch_id = batch_id
        self._outputs = outputs
        self._backprop = backprop

    def backprop_and_clear(self, d_outputs: list[Floats3d]) -> list[Doc]:
        """Pass the gradient upstream once, then forget the batch (so its layers can be freed)."""
        backprop = self._backprop
        self._batch_id = None
        self._outputs = None
        self._backprop = None
        if backprop is not None:
            backprop(d_outputs)
        return []

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
        data = doc._.get(DOC_EXTENSION) if Doc.has_extension(DOC_EXTENSION) else None
        found.append(model.ops.asarray3f(data["layers"]) if data is not None else None)
    missing = [i for i, layers in enumerate(found) if layers is None]
    if missing:
        upstream = model.upstream
        if upstream is None:
            raise ElmoError(
                f"Doc has no ELMo layers (doc._.{DOC_EXTENSION} is unset) and this listener is not linked to an elmo "
                f"component named '{model.upstream_name}': add the 'elmo' component before this one, or use the "
                "inline architecture spacy-elmo.Elmo.v2"
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
        assert model._outputs is not None
        return model._outputs, model.backprop_and_clear
    # Prediction, or training while the upstream is frozen by spaCy (annotating_components).
    return _stored_layers(model, docs), lambda d_outputs: []
