"""The registered constructors: what a config's ``@architectures`` and ``@misc`` names build.

- ``spacy-elmo.ElmoModel.v2``: the biLM over Docs, with every setting of the model as an argument.
- ``spacy-elmo.ElmoListener.v2``: token vectors from an upstream ``elmo`` component (its own scalar mix).
- ``spacy-elmo.Elmo.v2``: the same head on a biLM of its own (``nlp.replace_listeners`` writes it).
- ``spacy-elmo.doc_units.v1`` (``misc``): the unit splitter, sentences or overlapping windows.

The first release's names stay registered and build the same models: ``spacy_elmo.ElmoModel.v1``
(no arguments: its settings are the ``elmo`` component's), ``spacy_elmo.ElmoListener.v1`` and
``spacy_elmo.Elmo.v1`` (every setting flat).
"""

from __future__ import annotations

from typing import Any

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, Linear, Model, chain, with_array
from thinc.layers.chain import init as chain_init
from thinc.types import Floats2d, Floats3d

from .bilm.token_encoder import DEFAULT_CACHE_WORDS
from .errors import ElmoError
from .layers.bilm_model import BiLMSettings, check_source, configure, elmo_bilm_model
from .layers.listener import ElmoListener
from .layers.scalar_mix import LAYER_NAME as SCALAR_MIX_NAME
from .layers.scalar_mix import elmo_scalar_mix
from .layers.units import DocUnits, UnitSplitter

ELMO_MODEL_V2 = "spacy-elmo.ElmoModel.v2"
ELMO_INLINE_V2 = "spacy-elmo.Elmo.v2"
DOC_UNITS_V1 = "spacy-elmo.doc_units.v1"


@registry.misc(DOC_UNITS_V1)
def configure_doc_units(window_size: int = 200, window_overlap: int = 50) -> DocUnits:
    """Sentences when the Doc has sentence boundaries, else the whole Doc; units longer than
    ``window_size`` tokens become windows sharing ``window_overlap`` tokens."""
    return DocUnits(window_size, window_overlap)


@registry.architectures(ELMO_MODEL_V2)
def build_elmo_model_v2(
    weights: str | None = None,
    options: str | None = None,
    get_units: UnitSplitter | None = None,
    state: str = "reset",
    precision: str = "fp32",
    max_batch_tokens: int = 4096,
    cache_tokens: int = 0,
    word_cache_size: int = DEFAULT_CACHE_WORDS,
) -> Model[list[Doc], list[Floats3d]]:
    """The biLM over Docs. Output per Doc: ``(n_layers + 1, n_tokens, 2P)``.

    ``weights``: a catalog or bundled model name, a directory, a weight file, an archive or a URL (null:
    the bundled default). ``options``: the options file's path or URL when ``weights`` is a weight file.
    ``get_units``: the unit splitter (null: ``spacy-elmo.doc_units.v1`` with its defaults).
    ``state``: ``reset`` or ``stateful``. ``precision``: ``fp32`` (exact), ``bf16`` or ``int8``.
    ``max_batch_tokens``: padded tokens per biLM batch. ``cache_tokens``: tokens of unit outputs a
    frozen ``reset`` biLM keeps (0: off). ``word_cache_size``: distinct tokens whose context-free
    encoding the biLM keeps at inference (0: off; ``ElmoBiLM.word_cache_size``).
    """
    settings = BiLMSettings(
        weights=weights,
        options=options,
        get_units=configure_doc_units() if get_units is None else get_units,
        state=state,
        precision=precision,
        max_batch_tokens=max_batch_tokens,
        cache_tokens=cache_tokens,
        word_cache_size=word_cache_size,
    )
    return elmo_bilm_model(settings)


@registry.architectures("spacy_elmo.ElmoModel.v1")
def build_elmo_model() -> Model[list[Doc], list[Floats3d]]:
    """The first release's biLM model: no arguments; the ``elmo`` component's settings configure it."""
    return build_elmo_model_v2()


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


def _with_head(source: Model, width: int | None, declare_width: bool) -> Model[list[Doc], list[Floats2d]]:
    model = chain(source, build_elmo_head(width))
    if width is not None:
        model.set_dim("nO", width)
    elif declare_width:
        model.init = _init_declaring_width
    return model


def _init_declaring_width(model: Model, X: Any = None, Y: Any = None) -> Model:  # noqa: N803
    """Thinc's ``chain`` init, then ``nO`` = the width of the mix (``2P``) when there is no projection."""
    chain_init(model, X, Y)
    mix = next(node for node in model.walk() if node.name == SCALAR_MIX_NAME)
    if mix.has_dim("nO"):
        model.set_dim("nO", mix.get_dim("nO"), force=True)
    return model


@registry.architectures("spacy-elmo.ElmoListener.v2")
def build_elmo_listener_v2(upstream: str = "*", width: int | None = None) -> Model[list[Doc], list[Floats2d]]:
    """Token vectors from an upstream ``elmo`` component: its layers, mixed by this listener's own weights.

    ``upstream``: the elmo component's name (``"*"``: any). ``width``: project to this width (null: ``2P``).
    ``nO`` is ``width``, or ``2P`` once initialized.
    """
    return _with_head(ElmoListener(upstream), width, declare_width=True)


@registry.architectures("spacy_elmo.ElmoListener.v1")
def build_elmo_listener(upstream: str = "*", width: int | None = None) -> Model[list[Doc], list[Floats2d]]:
    """The first release's listener: as v2, with ``nO`` set only when ``width`` is."""
    return _with_head(ElmoListener(upstream), width, declare_width=False)


@registry.architectures(ELMO_INLINE_V2)
def build_inline_elmo_v2(
    model: Model[list[Doc], list[Floats3d]], width: int | None = None, frozen: bool = True
) -> Model[list[Doc], list[Floats2d]]:
    """A biLM of its own (``model``: a ``spacy-elmo.ElmoModel.v2`` block) plus the listener's head.

    What ``ElmoListener.v2`` computes, without the component; also usable as ``spacy.Tok2Vec.v2``'s
    ``embed``. ``frozen``: no gradient into the biLM.
    """
    check_source(configure(model, frozen=frozen))
    return _with_head(model, width, declare_width=True)


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
    """The first release's inline biLM + head, every setting flat (as v2 with an ``ElmoModel.v2`` block)."""
    bilm = build_elmo_model_v2(
        weights=weights,
        options=options,
        get_units=configure_doc_units(window_size, window_overlap),
        state=state,
        precision=precision,
        max_batch_tokens=max_batch_tokens,
        cache_tokens=cache_tokens,
    )
    check_source(configure(bilm, frozen=frozen))
    return _with_head(bilm, width, declare_width=False)


def model_config(settings: BiLMSettings, model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``spacy-elmo.ElmoModel.v2`` block that builds a model with these settings.

    ``model_cfg`` (the model's own block) is kept when it is a v2 block already; a first-release
    ``spacy_elmo.ElmoModel.v1`` block (no arguments) is written out from the settings in effect.
    """
    if model_cfg.get("@architectures") == ELMO_MODEL_V2:
        return dict(model_cfg)
    units = settings.get_units
    if not isinstance(units, DocUnits):
        raise ElmoError(f"cannot write the config of a first-release elmo model with the unit splitter {units!r}")
    return {
        "@architectures": ELMO_MODEL_V2,
        "weights": settings.weights,
        "options": settings.options,
        "get_units": {"@misc": DOC_UNITS_V1, "window_size": units.window_size, "window_overlap": units.window_overlap},
        "state": settings.state,
        "precision": settings.precision,
        "max_batch_tokens": settings.max_batch_tokens,
        "cache_tokens": settings.cache_tokens,
        "word_cache_size": settings.word_cache_size,
    }


def replace_listener_cfg(
    settings: BiLMSettings, tok2vec_model_cfg: dict[str, Any], listener_cfg: dict[str, Any]
) -> dict[str, Any]:
    """The ``spacy-elmo.Elmo.v2`` config that ``nlp.replace_listeners`` puts in place of a listener."""
    return {
        "@architectures": ELMO_INLINE_V2,
        "model": model_config(settings, tok2vec_model_cfg),
        "width": listener_cfg.get("width"),
        "frozen": settings.frozen,
    }
