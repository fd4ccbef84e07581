"""The ``elmo`` pipeline component: runs the biLM over Docs and attaches contextual vectors.

It sets ``doc._.elmo`` (every layer, or with ``doc_layers = "mix"`` only the mixed vectors
unless a listener needs the layers), ``doc.tensor`` (the layers mixed by ``mix``) and the
vector/similarity hooks (see ``doc_hooks``), and feeds ``spacy_elmo.ElmoListener.v1`` layers
in downstream components during training.
"""

import os
import shutil
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import srsly
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.tok2vec import Tok2Vec, Tok2VecListener
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer, set_dropout_rate
from thinc.types import Floats3d

from .bilm import load_bilm, save_bilm
from .bilm.efml import EfmlBiLM, load_efml, save_efml
from .doc_hooks import check_doc_layers, check_mix, mix_width, set_vectors
from .errors import ElmoError, ElmoWeightsError
from .listener import ElmoListener, replace_listener_cfg
from .thinc_model import ElmoSettings, check_settings_source, ensure_bilm, get_settings, set_bilm, set_settings

CFG_FILE = "cfg"
OPTIONS_FILE = "options.json"
WEIGHTS_FILE = "weights.hdf5"
# An ELMoForManyLangs model is saved in its own format, in this subdirectory.
EFML_DIR = "efml"


def _limit_torch_threads_in_child() -> None:
    # nlp.pipe(n_process=N) forks: N processes each using every core would oversubscribe the
    # machine, and an intra-op pool inherited across fork can deadlock. One thread per worker.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_limit_torch_threads_in_child)

DEFAULT_CONFIG = {
    "weights": None,
    "mix": "average",
    "state": "reset",
    "frozen": True,
    "max_batch_tokens": 4096,
    "window_size": 200,
    "window_overlap": 50,
    "cache_tokens": 0,
    "precision": "fp32",
    "doc_layers": "all",
    "options": None,
    "model": {"@architectures": "spacy_elmo.ElmoModel.v1"},
}


@Language.factory("elmo", assigns=["doc.tensor", "doc._.elmo"], default_config=DEFAULT_CONFIG)
def make_elmo(
    nlp: Language,
    name: str,
    model: Model,
    weights: str | None,
    mix: str | list[float],
    state: str,
    frozen: bool,
    max_batch_tokens: int,
    window_size: int,
    window_overlap: int,
    cache_tokens: int,
    precision: str,
    doc_layers: str = "all",
    options: str | None = None,
) -> "ElmoComponent":
    """ELMo contextual token vectors; see docs/component.md for every setting."""
    settings = ElmoSettings(
        weights=None if weights is None else str(weights),
        state=state,
        frozen=frozen,
        max_batch_tokens=max_batch_tokens,
        window_size=window_size,
        window_overlap=window_overlap,
        cache_tokens=cache_tokens,
        precision=precision,
        options=None if options is None else str(options),
    )
    check_settings_source(settings)
    return ElmoComponent(nlp.vocab, model, name, settings=settings, mix=mix, nlp=nlp, doc_layers=doc_layers)


class ElmoComponent(TrainablePipe):
    """Runs ELMo over Docs; listeners in later components share its forward pass."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "elmo",
        *,
        settings: ElmoSettings,
        mix: str | Sequence[float] = "average",
        nlp: Language | None = None,
        doc_layers: str = "all",
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.mix = check_mix(mix)
        self.doc_layers = check_doc_layers(doc_layers)
        self.listener_map: dict[str, list[Model]] = {}
        self.cfg: dict[str, Any] = {"mix": self.mix, "doc_layers": self.doc_layers, **settings.to_dict()}
        set_settings(model, settings)
        model.attrs["replace_listener_cfg"] = partial(replace_listener_cfg, settings.to_dict())
        self._nlp = weakref.ref(nlp) if nlp is not None else None
        self._checked_pipeline = False

    # ---- listeners (the ListenedToComponent protocol spaCy's Language uses) ----
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
        """Register the ``ElmoListener`` nodes in a later component's model (``upstream`` is this name or ``*``)."""
        model = getattr(component, "model", None)
        if not isinstance(model, Model):
            return
        for node in model.walk():
            if isinstance(node, ElmoListener) and node.upstream_name in ("*", self.name):
                self.add_listener(node, component.name)
            elif isinstance(node, Tok2VecListener):
                self._warn_tok2vec_listener(component.name, node.upstream_name)

    def _warn_tok2vec_listener(self, component_name: str, upstream: str) -> None:
        nlp = self._nlp() if self._nlp is not None else None
        names = nlp.pipe_names if nlp is not None else []
        if self.name in names and component_name in names:
            tok2vecs = [n for n in names if isinstance(nlp.get_pipe(n), Tok2Vec) and upstream in ("*", n)]
            after_elmo = [n for n in tok2vecs if names.index(n) > names.index(self.name)]
            if tok2vecs and len(after_elmo) == len(tok2vecs):
                return  # a tok2vec after elmo sets doc.tensor again before the listener reads it
        warnings.warn(
            f"[spacy_elmo] component '{component_name}' has a spaCy tok2vec listener (upstream '{upstream}') and runs "
            f"after '{self.name}', which sets doc.tensor to ELMo vectors. At prediction time spaCy's listener reads "
            "doc.tensor and would get ELMo vectors instead of its tok2vec's output. Put the elmo component after "
            "the tok2vec's listeners, or use spacy_elmo.ElmoListener.v1 in that component.",
            UserWarning,
            stacklevel=2,
        )

    def _check_pipeline(self) -> None:
        if self._checked_pipeline:
            return
        self._checked_pipeline = True
        nlp = self._nlp() if self._nlp is not None else None
        if nlp is None or self.name not in nlp.pipe_names:
            return
        for name in nlp.pipe_names[nlp.pipe_names.index(self.name) + 1 :]:
            model = getattr(nlp.get_pipe(name), "model", None)
            if isinstance(model, Model):
                for node in model.walk():
                    if isinstance(node, Tok2VecListener):
                        self._warn_tok2vec_listener(name, node.upstream_name)

    # ---- prediction ----
    @property
    def settings(self) -> ElmoSettings:
        return get_settings(self.model)

    @property
    def width(self) -> int:
        """Width of ``doc.tensor``: ``2P``, or ``(n_layers + 1) * 2P`` with ``mix = "concat"``."""
        bilm = ensure_bilm(self.model)
        return mix_width(self.mix, bilm.n_output_layers, bilm.output_dim)

    def _ensure_ready(self) -> None:
        bilm = ensure_bilm(self.model)
        check_mix(self.mix, bilm.n_output_layers)
        self._check_pipeline()

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
            set_vectors(doc, doc_layers, self.mix, keep_layers=keep_layers)

    # ---- training ----
    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Language | None = None) -> None:
        """Load the biLM (from ``weights``) and check the pipeline; the biLM's weights stay as loaded."""
        validate_get_examples(get_examples, "ElmoComponent.initialize")
        if nlp is not None:
            self._nlp = weakref.ref(nlp)
        self._checked_pipeline = False
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
            if not self.settings.frozen:
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
    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        ensure_bilm(self.model)
        return srsly.msgpack_dumps({"cfg": self.cfg, "model": self.model.to_bytes()})

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> "ElmoComponent":
        msg = srsly.msgpack_loads(bytes_data)
        settings = self.settings
        self.model.from_bytes(msg["model"])
        set_settings(self.model, settings)
        check_mix(self.mix, ensure_bilm(self.model).n_output_layers)
        return self

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Write ``cfg``, ``options.json`` and ``weights.hdf5`` (the reference layout) into ``path``;
        an ELMoForManyLangs model instead as its own model directory ``path/efml``."""
        path = Path(path)
        bilm = ensure_bilm(self.model)
        path.mkdir(parents=True, exist_ok=True)
        if isinstance(bilm, EfmlBiLM):
            save_efml(bilm, path / EFML_DIR)
            stale = [path / OPTIONS_FILE, path / WEIGHTS_FILE]
        else:
            save_bilm(bilm, path, WEIGHTS_FILE)
            stale = [path / EFML_DIR]
        # A model of the other format saved here before would be read instead of this one.
        for old in stale:
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        srsly.write_json(path / CFG_FILE, self.cfg)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> "ElmoComponent":
        """Load the saved biLM; the ``weights`` setting is not consulted (the originals may be gone)."""
        path = Path(path)
        options_file, weight_file = path / OPTIONS_FILE, path / WEIGHTS_FILE
        if (path / EFML_DIR).is_dir():
            bilm = load_efml(path / EFML_DIR, state=self.settings.state)  # type: ignore[arg-type]
        elif not options_file.is_file() or not weight_file.is_file():
            raise ElmoWeightsError(
                f"elmo component '{self.name}': the saved pipeline directory {path} lacks {OPTIONS_FILE} or "
                f"{WEIGHTS_FILE} (or an ELMoForManyLangs model in {EFML_DIR}/); it was not written by this "
                "component's to_disk"
            )
        else:
            bilm = load_bilm(options_file, weight_file, state=self.settings.state)  # type: ignore[arg-type]
        try:
            check_mix(self.mix, bilm.n_output_layers)
        except ElmoError as err:
            raise ElmoError(f"elmo component '{self.name}' loaded from {path}: {err}") from None
        set_bilm(self.model, bilm)
        return self
