"""Contextual ``vector``, ``has_vector``, ``vector_norm`` and ``similarity`` on Token, Span and Doc.

The ``elmo`` component stores every biLM layer of a Doc in the ``doc._.elmo`` extension
(a plain dict, so ``doc.to_bytes``, ``DocBin(store_user_data=True)`` and
``nlp.pipe(n_process>1)`` keep it) and sets ``doc.tensor`` to the mixed vectors. The user
hooks that make ``token.vector`` and friends use them are plain functions on the Doc and
are *not* serialized: call ``restore_vectors(doc)`` after any of those round trips.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from spacy.tokens import Doc, Span, Token

from .errors import ElmoError
from .mixing import Mix, mix_layers

DOC_EXTENSION = "elmo"

if not Doc.has_extension(DOC_EXTENSION):
    Doc.set_extension(DOC_EXTENSION, default=None)


class ContextualVectors:
    """The hooks of one Doc, reading its mixed ``(n_tokens, width)`` vectors."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def token_vector(self, token: Token) -> np.ndarray:
        return self.vectors[token.i]

    def span_vector(self, span: Span) -> np.ndarray:
        if len(span) == 0:
            return np.zeros(self.vectors.shape[1], dtype=np.float32)
        return self.vectors[span.start : span.end].mean(axis=0)

    def doc_vector(self, doc: Doc) -> np.ndarray:
        if len(doc) == 0:
            return np.zeros(self.vectors.shape[1], dtype=np.float32)
        return self.vectors.mean(axis=0)

    def token_has_vector(self, token: Token) -> bool:
        return self.vectors.shape[1] > 0

    def span_has_vector(self, span: Span | Doc) -> bool:
        return len(span) > 0 and self.vectors.shape[1] > 0

    @staticmethod
    def vector_norm(obj: Token | Span | Doc) -> float:
        return float(np.linalg.norm(obj.vector))

    @staticmethod
    def similarity(obj: Token | Span | Doc, other: Any) -> float:
        """Cosine of the two contextual vectors (0.0 when either is all zeros)."""
        mine = np.asarray(obj.vector, dtype=np.float32)
        theirs = np.asarray(other.vector, dtype=np.float32)
        if mine.shape != theirs.shape:
            raise ElmoError(
                f"cannot compare vectors of width {mine.shape} and {theirs.shape}: the other object has no ELMo "
                "vectors of the same mix (run the same pipeline on it, or call spacy_elmo.restore_vectors)"
            )
        norms = float(np.linalg.norm(mine)) * float(np.linalg.norm(theirs))
        if norms == 0.0:
            return 0.0
        return float(np.dot(mine, theirs) / norms)


def store_layers(doc: Doc, layers: np.ndarray, mix: Mix) -> np.ndarray:
    """Store the layers ``(L, n_tokens, 2P)`` and the ``mix`` in ``doc._.elmo``; returns them as float32."""
    layers = np.ascontiguousarray(layers, dtype=np.float32)
    if layers.ndim != 3 or layers.shape[1] != len(doc):
        raise ElmoError(f"ELMo layers of shape {layers.shape} do not fit a Doc of {len(doc)} tokens")
    doc._.set(DOC_EXTENSION, {"layers": layers, "mix": mix if isinstance(mix, str) else list(mix)})
    return layers


def set_vectors(doc: Doc, layers: np.ndarray, mix: Mix) -> None:
    """Store the layers in ``doc._.elmo``, the mixed vectors in ``doc.tensor``, and install the hooks.

    ``layers``: ``(L, n_tokens, 2P)`` float32.
    """
    layers = store_layers(doc, layers, mix)
    vectors = mix_layers(layers, mix)
    doc.tensor = vectors
    _install_hooks(doc, vectors)


def _install_hooks(doc: Doc, vectors: np.ndarray) -> None:
    hooks = ContextualVectors(vectors)
    doc.user_hooks.update(
        vector=hooks.doc_vector,
        has_vector=hooks.span_has_vector,
        vector_norm=hooks.vector_norm,
        similarity=hooks.similarity,
    )
    doc.user_span_hooks.update(
        vector=hooks.span_vector,
        has_vector=hooks.span_has_vector,
        vector_norm=hooks.vector_norm,
        similarity=hooks.similarity,
    )
    doc.user_token_hooks.update(
        vector=hooks.token_vector,
        has_vector=hooks.token_has_vector,
        vector_norm=hooks.vector_norm,
        similarity=hooks.similarity,
    )


def restore_vectors(doc: Doc) -> Doc:
    """Re-attach the contextual vectors after ``doc.to_bytes``/``from_bytes``, ``DocBin`` or ``n_process>1``.

    Recomputes ``doc.tensor`` from ``doc._.elmo`` (exactly what the component set) and installs
    the hooks again. Returns the same Doc. ``DocBin`` keeps ``doc._.elmo`` only with
    ``store_user_data=True``.
    """
    data = doc._.get(DOC_EXTENSION)
    if data is None:
        raise ElmoError(
            "restore_vectors: the Doc has no ELMo data (doc._.elmo is unset). Run the elmo component on it, and "
            "keep user data when serializing (DocBin(store_user_data=True))"
        )
    layers = np.asarray(data["layers"], dtype=np.float32)
    if layers.ndim != 3 or layers.shape[1] != len(doc):
        raise ElmoError(
            f"restore_vectors: doc._.elmo holds layers of shape {layers.shape} for a Doc of {len(doc)} tokens"
        )
    mix = data["mix"]
    vectors = mix_layers(layers, mix)
    doc.tensor = vectors
    _install_hooks(doc, vectors)
    return doc
