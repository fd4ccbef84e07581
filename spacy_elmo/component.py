"""The ``elmo`` pipeline component: runs its model (the biLM over Docs) and attaches contextual vectors.

It sets ``doc._.elmo`` (every layer, or with ``doc_layers = "mix"`` only the mixed vectors unless a
listener needs the layers) and, with ``set_vectors``, ``doc.tensor`` (the layers mixed by ``mix``)
and the vector/similarity hooks (see ``doc_hooks``); during training it feeds the
``spacy-elmo.ElmoListener.v2`` layers of downstream components.

Its settings are its own: ``mix``, ``frozen``, ``set_vectors``, ``doc_layers``. The model's (which
weights, units, state, precision, batching, cache) are the arguments of ``[components.elmo.model]``
(``spacy-elmo.ElmoModel.v2``). The first release's shape, every setting at the component
level with ``spacy_elmo.ElmoModel.v1``, still works and is passed on to the model.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import srsly
import torch
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.tok2vec import Tok2Vec, Tok2VecListener
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer, set_dropout_rate
from thinc.types import Floats3d

from .architectures import ELMO_MODEL_V2, configure_doc_units, replace_listener_cfg
from .bilm import ElmoBiLM
from .doc_hooks import annotate, check_doc_layers
from .errors import ElmoError, ElmoWeightsError
from .layers.bilm_model import (
    EFML_DIR,
    OPTIONS_FILE,
    WEIGHTS_FILE,
    bilm_from_files,
    bilm_to_files,
    check_source,
    configure,
    ensure_bilm,
    get_settings,
    install_bilm,
    read_bilm_dir,
    write_bilm_dir,
)
from .layers.listener import ElmoListener
from .layers.units import DocUnits
from .mixing import check_mix, mix_width

CFG_FILE = "cfg"
# What cfg records about the saved biLM (read back by from_disk/from_bytes and checked against it).
CFG_KEYS = ("n_layers", "width")
# First-release settings accepted at the component level, passed on to the model.
MODEL_SETTINGS = ("weights", "options", "state", "max_batch_tokens", "cache_tokens", "precision")
UNIT_SETTINGS = ("window_size", "window_overlap")


def _limit_torch_threads_in_child() -> None:
    # nlp.pipe(n_process=N) forks: N processes each using every core would oversubscribe the
    # machine, and an intra-op pool inherited across fork can deadlock. One thread per worker.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_limit_torch_threads_in_child)

DEFAULT_CONFIG = {
    "mix": "average",
    "frozen": True,
    "set_vectors": True,
    "doc_layers": "all",
    "model": {"@architectures": ELMO_MODEL_V2, "get_units": {"@misc": "spacy-elmo.doc_units.v1"}},
}


@Language.factory("elmo", assigns=["doc.tensor", "doc._.elmo"], default_config=DEFAULT_CONFIG)
def make_elmo(
    nlp: Language,
    name: str,
    model: Model,
    mix: str | list[float],
    frozen: bool,
    set_vectors: bool,
    doc_layers: str,
    weights: str | None = None,
    options: str | None = None,
    state: str | None = None,
    max_batch_tokens: int | None = None,
    window_size: int | None = None,
    window_overlap: int | None = None,
    cache_tokens: int | None = None,
    precision: str | None = None,
) -> ElmoComponent:
    """ELMo contextual token vectors; see docs/component.md for every setting.

    ``weights`` ... ``options`` are the first release's component-level settings (null: unset).
    Given, they configure the model as its own arguments would, with a DeprecationWarning.
    """
    legacy = {
        "weights": weights,
        "options": options,
        "state": state,
        "max_batch_tokens": max_batch_tokens,
        "window_size": window_size,
        "window_overlap": window_overlap,
        "cache_tokens": cache_tokens,
        "precision": precision,
    }
    legacy = {key: value for key, value in legacy.items() if value is not None}
    if legacy:
        warnings.warn(
            f"elmo component '{name}': the settings {', '.join(legacy)} belong to the model now; move them to "
            f"[components.{name}.model] ({ELMO_MODEL_V2}; window_size and window_overlap go in its get_units "
            "block). See docs/component.md.",
            DeprecationWarning,
            stacklevel=2,
        )
        apply_legacy_settings(model, legacy)
    check_source(get_settings(model))
    return ElmoComponent(nlp.vocab, model, name, mix=mix, frozen=frozen, set_vectors=set_vectors, doc_layers=doc_layers)


def apply_legacy_settings(model: Model, legacy: dict[str, Any]) -> None:
    """Configure ``model`` from first-release component-level settings (``MODEL_SETTINGS``, ``UNIT_SETTINGS``)."""
    changes = {key: legacy[key] for key in MODEL_SETTINGS if key in legacy}
    if any(key in legacy for key in UNIT_SETTINGS):
        units = get_settings(model).get_units
        if not isinstance(units, DocUnits):
            raise ElmoError("elmo settings 'window_size'/'window_overlap' need the default unit splitter")
        changes["get_units"] = configure_doc_units(
            legacy.get("window_size", units.window_size), legacy.get("window_overlap", units.window_overlap)
        )
    configure(model, **changes)


class ElmoComponent(TrainablePipe):
    """Runs ELMo over Docs; listeners in later components share its forward pass."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "elmo",
        *,
        mix: str | Sequence[float],
        frozen: bool,
        set_vectors: bool,
        doc_layers: str,
    ) -> None:
        """The settings' defaults are the factory's (``DEFAULT_CONFIG``)."""
        if not isinstance(set_vectors, bool):
            raise ElmoError(f"elmo setting 'set_vectors' must be true or false, found {set_vectors!r}")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.mix = check_mix(mix)
        self.set_vectors = set_vectors
        self.doc_layers = check_doc_layers(doc_layers)
        self.frozen = frozen
        self.cfg: dict[str, Any] = {}
        self._listener_map: dict[str, list[Model]] = {}
        self._tok2vecs_after: set[str] = set()
        model.attrs["replace_listener_cfg"] = partial(_replace_listener_cfg, model.attrs)

    @property
    def frozen(self) -> bool:
        """The ``frozen`` setting; the model holds it (a frozen model builds no graph and keeps its cache)."""
        return get_settings(self.model).frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        configure(self.model, frozen=value)

    # ---- listeners (the ListenedToComponent protocol spaCy's Language uses) ----
    @property
    def listener_map(self) -> dict[str, list[Model]]:
        return self._listener_map

    @listener_map.setter
    def listener_map(self, value: dict[str, list[Model]]) -> None:
        # spaCy's Language resets the map, then calls find_listeners on every later component in order.
        self._listener_map = value
        self._tok2vecs_after = set()

    @property
    def listeners(self) -> list[Model]:
        return [m for c in self.listening_components for m in self.listener_map[c]]

    @property
    def listening_components(self) -> list[str]:
        return list(self.listener_map.keys())

    def add_listener(self, listener: Model, component_name: str) -> None:
        self.listener_map.setdefault(component_name, [])
        if listener not in self.listener_map[component_name]:
            self.listener_map[component_name].append(listener)
        if isinstance(listener, ElmoListener):
            listener.link(self)

    def remove_listener(self, listener: Model, component_name: str) -> bool:
        if listener in self.listener_map.get(component_name, []):
            self.listener_map[component_name].remove(listener)
            if not self.listener_map[component_name]:
                del self.listener_map[component_name]
            return True
        return False

    def find_listeners(self, component: Any) -> None:
        """Register the ``ElmoListener`` nodes of a later component (``upstream`` is this name or ``*``).

        Also warns about a spaCy tok2vec listener that would read this component's ``doc.tensor``.
        """
        if isinstance(component, Tok2Vec):
            self._tok2vecs_after.add(component.name)
        model = getattr(component, "model", None)
        if not isinstance(model, Model):
            return
        for node in model.walk():
            if isinstance(node, ElmoListener) and node.upstream_name in ("*", self.name):
                self.add_listener(node, component.name)
            elif isinstance(node, Tok2VecListener):
                self._warn_tok2vec_listener(component.name, node.upstream_name)

    def _warn_tok2vec_listener(self, component_name: str, upstream: str) -> None:
        if not self.set_vectors:
            return  # doc.tensor is not touched
        if any(upstream in ("*", name) for name in self._tok2vecs_after):
            return  # a tok2vec after elmo sets doc.tensor again before the listener reads it
        warnings.warn(
            f"[spacy_elmo] component '{component_name}' has a spaCy tok2vec listener (upstream '{upstream}') and runs "
            f"after '{self.name}', which sets doc.tensor to ELMo vectors. At prediction time spaCy's listener reads "
            "doc.tensor and would get ELMo vectors instead of its tok2vec's output. Put the elmo component after "
            "the tok2vec's listeners, use spacy-elmo.ElmoListener.v2 in that component, or set "
            "set_vectors = false.",
            UserWarning,
            stacklevel=3,
        )

    # ---- prediction ----
    @property
    def width(self) -> int:
        """Width of ``doc.tensor``: ``2P``, or ``(n_layers + 1) * 2P`` with ``mix = "concat"``."""
        bilm = ensure_bilm(self.model)
        return mix_width(self.mix, bilm.n_output_layers, bilm.output_dim)

    def _ensure_ready(self) -> ElmoBiLM:
        bilm = ensure_bilm(self.model)
        check_mix(self.mix, bilm.n_output_layers)
        return bilm

    def predict(self, docs: Iterable[Doc]) -> list[np.ndarray]:
        """Every layer of every Doc: float32 ``(n_layers + 1, n_tokens, 2P)`` each."""
        docs = list(docs)
        self._ensure_ready()
        outputs = self.model.predict(docs)
        return [self.model.ops.to_numpy(layers) for layers in outputs]

    @property
    def keeps_layers(self) -> bool:
        """Whether ``doc._.elmo`` gets every layer: ``doc_layers = "all"``, or a listener reads them."""
        return self.doc_layers == "all" or bool(self.listener_map)

    def set_annotations(self, docs: Sequence[Doc], layers: Sequence[np.ndarray]) -> None:
        keep_layers = self.keeps_layers
        for doc, doc_layers in zip(docs, layers, strict=True):
            annotate(doc, doc_layers, self.mix, keep_layers=keep_layers, set_vectors=self.set_vectors)

    # ---- training ----
    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Language | None = None) -> None:
        """Load the biLM (from the model's ``weights``); its weights stay as loaded."""
        validate_get_examples(get_examples, "ElmoComponent.initialize")
        self._ensure_ready()

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optimizer | None = None,
        losses: dict[str, float] | None = None,
    ) -> dict[str, float]:
        """Run the biLM on the batch and hand its layers to every listener.

        Frozen: no graph is built and the biLM is never changed. Otherwise the last
        listener's backprop runs the accumulated gradient of all listeners into the biLM
        and updates it. The loss reported is the sum of squared gradients (as spaCy's tok2vec).
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "ElmoComponent.update")
        docs = [eg.predicted for eg in examples]
        self._ensure_ready()
        set_dropout_rate(self.model, drop)
        outputs, backprop_layers = self.model.begin_update(docs)
        d_outputs = [self.model.ops.alloc3f(*o.shape) for o in outputs]

        def accumulate_gradient(one_d_outputs: list[Floats3d]) -> None:
            for i, d in enumerate(one_d_outputs):
                d_outputs[i] += d
                losses[self.name] += float((d**2).sum())

        def backprop(one_d_outputs: list[Floats3d]) -> list[Doc]:
            accumulate_gradient(one_d_outputs)
            if not self.frozen:
                backprop_layers(d_outputs)
                if sgd is not None:
                    self.finish_update(sgd)
            return []

        batch_id = ElmoListener.get_batch_id(docs)
        for listener in self.listeners[:-1]:
            listener.receive(batch_id, outputs, accumulate_gradient)
        if self.listeners:
            self.listeners[-1].receive(batch_id, outputs, backprop)
        return losses

    # ---- serialization ----
    # One format: the biLM's files (options.json + weights.hdf5 in the reference layout, or efml/ for an
    # ELMoForManyLangs model), as files in the component's directory or as a dict of bytes; cfg records
    # the biLM's shape. Settings come from the config (config.cfg, saved with the pipeline), not from cfg.
    def _describe(self, bilm: ElmoBiLM) -> dict[str, Any]:
        self.cfg = {"n_layers": bilm.n_output_layers, "width": bilm.output_dim}
        return self.cfg

    def _read_cfg(self, saved: Any) -> None:
        if isinstance(saved, dict):  # the first release's cfg held the settings: ignored
            self.cfg = {key: saved[key] for key in CFG_KEYS if key in saved}

    def _install_saved(self, bilm: ElmoBiLM, where: str) -> None:
        expected = (self.cfg.get("n_layers"), self.cfg.get("width"))
        if None not in expected and expected != (bilm.n_output_layers, bilm.output_dim):
            raise ElmoWeightsError(
                f"elmo component '{self.name}' loaded from {where}: cfg says {expected[0]} layers {expected[1]} wide, "
                f"the saved biLM has {bilm.n_output_layers} layers {bilm.output_dim} wide"
            )
        try:
            check_mix(self.mix, bilm.n_output_layers)
        except ElmoError as err:
            raise ElmoError(f"elmo component '{self.name}' loaded from {where}: {err}") from None
        install_bilm(self.model, bilm)
        self._describe(bilm)

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        bilm = self._ensure_ready()
        serializers = {
            "cfg": lambda: self._describe(bilm),
            "model": lambda: bilm_to_files(bilm),
        }
        return util.to_bytes(serializers, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> ElmoComponent:
        def read_model(data: Any) -> None:
            if isinstance(data, bytes):  # the first release: the Thinc model's bytes
                self.model.from_bytes(data)
                bilm = self.model.shims[0]._model
            else:
                bilm = bilm_from_files(data)
            self._install_saved(bilm, "bytes")

        deserializers = {"cfg": self._read_cfg, "model": read_model}
        util.from_bytes(bytes_data, deserializers, exclude)
        return self

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Write ``cfg``, ``options.json`` and ``weights.hdf5`` (the reference layout) into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        bilm = self._ensure_ready()
        serializers = {
            "cfg": lambda p: srsly.write_json(p, self._describe(bilm)),
            "model": lambda _: write_bilm_dir(bilm, path),
        }
        util.to_disk(path, serializers, exclude)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> ElmoComponent:
        """Load the saved biLM; the model's ``weights`` setting is not consulted (the originals may be gone)."""
        path = Path(path)

        def read_cfg(p: Path) -> None:
            if p.is_file():
                self._read_cfg(srsly.read_json(p))

        def read_model(_: Path) -> None:
            bilm_tf = (path / OPTIONS_FILE).is_file() and (path / WEIGHTS_FILE).is_file()
            if not bilm_tf and not (path / EFML_DIR).is_dir():
                raise ElmoWeightsError(
                    f"elmo component '{self.name}': the saved pipeline directory {path} lacks {OPTIONS_FILE} or "
                    f"{WEIGHTS_FILE} (or an ELMoForManyLangs model in {EFML_DIR}/); it was not written by this "
                    "component's to_disk"
                )
            self._install_saved(read_bilm_dir(path), str(path))

        util.from_disk(path, {CFG_FILE: read_cfg, "model": read_model}, exclude)
        return self


def _replace_listener_cfg(
    attrs: dict[str, Any], tok2vec_model_cfg: dict[str, Any], listener_cfg: dict[str, Any]
) -> dict[str, Any]:
    # Bound to the model's attrs, not the model: Thinc models cannot be weakly referenced, and a
    # copy of the model (nlp.replace_listeners copies it) deep-copies its attrs with this in them.
    return replace_listener_cfg(attrs["settings"], tok2vec_model_cfg, listener_cfg)
