"""Contextual ``vector``, ``has_vector``, ``vector_norm`` and ``similarity`` on Token, Span and Doc.

The ``elmo`` component stores every biLM layer of a Doc in the ``doc._.elmo`` extension
(``doc_layers = "all"``), or only the mixed vectors (``doc_layers = "mix"``), as a plain dict,
so ``doc.to_bytes``, ``DocBin(store_user_data=True)`` and ``nlp.pipe(n_process>1)`` keep it,
and sets ``doc.tensor`` to the mixed vectors. The user hooks that make ``token.vector`` and
friends use them are plain functions on the Doc and are *not* serialized: call
``restore_vectors(doc)`` after any of those round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from spacy.tokens import Doc, Span, Token

from .errors import ElmoError

DOC_EXTENSION = "elmo"
MIX_NAMES = ("average", "top", "concat")
# What doc._.elmo keeps: every layer, or only the mixed vectors (the array doc.tensor holds).
DOC_LAYERS = ("all", "mix")
Mix = str | Sequence[float]

if not Doc.has_extension(DOC_EXTENSION):
    Doc.set_extension(DOC_EXTENSION, default=None)


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


def check_doc_layers(doc_layers: Any) -> str:
    """Validate the ``doc_layers`` setting: ``"all"`` or ``"mix"``."""
    if doc_layers not in DOC_LAYERS:
        raise ElmoError(f"elmo setting 'doc_layers' must be one of {DOC_LAYERS}, found {doc_layers!r}")
    return str(doc_layers)


def stored_layers(doc: Doc) -> np.ndarray | None:
    """The ``(L, n_tokens, 2P)`` layers ``doc._.elmo`` holds, or None (no ELMo data, or only the mix)."""
    data = doc._.get(DOC_EXTENSION) if Doc.has_extension(DOC_EXTENSION) else None
    if data is None or "layers" not in data:
        return None
    return data["layers"]


def mix_width(mix: Mix, n_layers: int, layer_width: int) -> int:
    return n_layers * layer_width if mix == "concat" else layer_width


def mix_layers(layers: np.ndarray, mix: Mix) -> np.ndarray:
    """``(L, n, D)`` float32 to ``(n, D)`` (``(n, L * D)`` for ``"concat"``), in float32 numpy."""
    layers = np.asarray(layers, dtype=np.float32)
    n_layers = layers.shape[0]
    if mix == "average":
        weights = np.full(n_layers, 1.0 / n_layers, dtype=np.float32)
    elif mix == "top":
        return np.ascontiguousarray(layers[-1])
    elif mix == "concat":
        return np.ascontiguousarray(np.concatenate(list(layers), axis=-1)) if n_layers else layers
    else:
        weights = np.asarray(check_mix(mix, n_layers), dtype=np.float32)
    return np.ascontiguousarray(np.tensordot(weights, layers, axes=(0, 0)), dtype=np.float32)


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


def set_vectors(doc: Doc, layers: np.ndarray, mix: Mix, keep_layers: bool = True) -> None:
    """Store the layers in ``doc._.elmo``, the mixed vectors in ``doc.tensor``, and install the hooks.

    ``layers``: ``(L, n_tokens, 2P)`` float32. ``keep_layers=False``: ``doc._.elmo`` holds the mixed
    ``(n_tokens, width)`` vectors instead of the layers; they are the array ``doc.tensor`` and the
    hooks hold, so they take no memory of their own.
    """
    layers = np.ascontiguousarray(layers, dtype=np.float32)
    if layers.ndim != 3 or layers.shape[1] != len(doc):
        raise ElmoError(f"ELMo layers of shape {layers.shape} do not fit a Doc of {len(doc)} tokens")
    vectors = mix_layers(layers, mix)
    saved_mix = mix if isinstance(mix, str) else list(mix)
    if keep_layers:
        doc._.set(DOC_EXTENSION, {"layers": layers, "mix": saved_mix})
    else:
        doc._.set(DOC_EXTENSION, {"vectors": vectors, "mix": saved_mix})
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

    Recomputes ``doc.tensor`` from ``doc._.elmo`` (exactly what the component set; with
    ``doc_layers = "mix"``, the stored mixed vectors themselves) and installs the hooks again.
    Returns the same Doc. ``DocBin`` keeps ``doc._.elmo`` only with ``store_user_data=True``.
    """
    data = doc._.get(DOC_EXTENSION)
    if data is None:
        raise ElmoError(
            "restore_vectors: the Doc has no ELMo data (doc._.elmo is unset). Run the elmo component on it, and "
            "keep user data when serializing (DocBin(store_user_data=True))"
        )
    if "layers" in data:
        layers = np.asarray(data["layers"], dtype=np.float32)
        if layers.ndim != 3 or layers.shape[1] != len(doc):
            raise ElmoError(
                f"restore_vectors: doc._.elmo holds layers of shape {layers.shape} for a Doc of {len(doc)} tokens"
            )
        vectors = mix_layers(layers, data["mix"])
    else:
        vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(doc):
            raise ElmoError(
                f"restore_vectors: doc._.elmo holds vectors of shape {vectors.shape} for a Doc of {len(doc)} tokens"
            )
    doc.tensor = vectors
    _install_hooks(doc, vectors)
    return doc
