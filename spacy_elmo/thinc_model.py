"""The biLM as a Thinc ``Model``: a list of Docs in, every ELMo layer of every Doc out.

``spacy_elmo.ElmoModel.v1`` maps ``docs`` to one ``Floats3d (n_layers + 1, n_tokens, 2P)``
per Doc. The PyTorch module lives in a ``PyTorchShim`` that serializes the options with
the weights, so a saved model needs none of the original files. The module is loaded
lazily from the ``weights`` setting (see ``weights_source``) on first use, unless
``from_bytes`` has filled it first; that is what lets ``spacy.load`` work after the
original files are gone.

Long inputs are cut into *units* of at most ``window_size`` tokens: sentences when the
Doc has sentence boundaries, otherwise overlapping windows (each token takes its vectors
from the window where it has the most context). Units are sorted by length and packed
into batches of at most ``max_batch_tokens`` padded tokens. With ``cache_tokens`` set, a frozen
biLM in ``reset`` mode keeps the outputs of recent units (see ``layer_cache``) and runs only
the units it has not seen.
"""

from __future__ import annotations

import dataclasses
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import srsly
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, Optimizer, PyTorchShim, get_torch_default_device, torch2xp, xp2torch
from thinc.types import Floats3d

from .bilm import ElmoBiLM, ElmoOptions
from .bilm.cpu_matmul import PRECISIONS, check_precision
from .bilm.efml import EfmlBiLM, efml_from_spec, efml_spec
from .bilm.model import check_state_mode
from .errors import ElmoError
from .layer_cache import LayerCache
from .loading import load_model_files
from .weights_source import check_weights_setting, resolve_model

MODEL_NAME = "elmo_bilm"


@dataclass(frozen=True)
class ElmoSettings:
    """How an ``ElmoModel`` finds and runs its biLM (all are component settings)."""

    weights: str | None = None
    state: str = "reset"
    frozen: bool = True
    max_batch_tokens: int = 4096
    window_size: int = 200
    window_overlap: int = 50
    cache_tokens: int = 0
    precision: str = "fp32"
    options: str | None = None

    def __post_init__(self) -> None:
        try:
            check_state_mode(self.state)
        except ValueError:
            raise ElmoError(f"elmo setting 'state' must be 'reset' or 'stateful', found {self.state!r}") from None
        try:
            check_precision(self.precision)
        except ValueError:
            raise ElmoError(f"elmo setting 'precision' must be one of {PRECISIONS}, found {self.precision!r}") from None
        for name in ("max_batch_tokens", "window_size", "window_overlap", "cache_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ElmoError(f"elmo setting '{name}' must be an integer, found {value!r}")
        if not isinstance(self.frozen, bool):
            raise ElmoError(f"elmo setting 'frozen' must be true or false, found {self.frozen!r}")
        if self.cache_tokens < 0:
            raise ElmoError(f"elmo setting 'cache_tokens' must be 0 (off) or more, found {self.cache_tokens}")
        if self.window_size < 1:
            raise ElmoError(f"elmo setting 'window_size' must be at least 1, found {self.window_size}")
        if not 0 <= self.window_overlap <= self.window_size // 2:
            raise ElmoError(
                f"elmo setting 'window_overlap' must be between 0 and window_size // 2 = {self.window_size // 2}, "
                f"found {self.window_overlap}"
            )
        if self.max_batch_tokens < self.window_size:
            raise ElmoError(
                f"elmo setting 'max_batch_tokens' ({self.max_batch_tokens}) must be at least "
                f"window_size ({self.window_size}), so that every unit fits in a batch"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Unit(NamedTuple):
    """A span of one Doc run through the biLM as one sentence.

    Tokens ``[start, end)`` are run; the vectors of ``[core_start, core_end)`` are kept.
    """

    doc_index: int
    start: int
    end: int
    core_start: int
    core_end: int


def window_units(doc_index: int, start: int, end: int, size: int, overlap: int) -> Iterator[Unit]:
    """Overlapping windows over ``[start, end)`` whose cores tile it exactly.

    Consecutive windows share ``overlap`` tokens; the first half of the shared part is
    kept from the earlier window and the rest from the later one.
    """
    if end - start <= size:
        yield Unit(doc_index, start, end, start, end)
        return
    stride = size - overlap
    half = overlap // 2
    window_start = start
    core_start = start
    while True:
        window_end = min(window_start + size, end)
        if window_end == end:
            yield Unit(doc_index, window_start, end, core_start, end)
            return
        core_end = window_start + stride + half
        yield Unit(doc_index, window_start, window_end, core_start, core_end)
        window_start += stride
        core_start = core_end


def doc_units(doc_index: int, doc: Doc, size: int, overlap: int) -> Iterator[Unit]:
    """Sentences when the Doc has sentence boundaries (windowed if too long), else windows."""
    if len(doc) == 0:
        return
    if doc.has_annotation("SENT_START"):
        for sent in doc.sents:
            yield from window_units(doc_index, sent.start, sent.end, size, overlap)
    else:
        yield from window_units(doc_index, 0, len(doc), size, overlap)


def pack_batches(units: Sequence[Unit], max_batch_tokens: int, keep_order: bool) -> list[list[Unit]]:
    """Group units into batches of at most ``max_batch_tokens`` padded tokens.

    Sorted longest first unless ``keep_order`` (stateful mode, where rows carry state).
    """
    ordered = list(units) if keep_order else sorted(units, key=lambda u: u.start - u.end)
    batches: list[list[Unit]] = []
    current: list[Unit] = []
    longest = 0
    for unit in ordered:
        length = unit.end - unit.start
        if current and (len(current) + 1) * max(longest, length) > max_batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(unit)
        longest = max(longest, length)
    if current:
        batches.append(current)
    return batches


def _serialize_bilm(bilm: ElmoBiLM | None) -> bytes:
    if bilm is None:
        raise ElmoError("the ELMo model has no weights yet: nothing to serialize (run it or initialize it first)")
    state = {name: tensor.detach().cpu().numpy() for name, tensor in bilm.state_dict().items()}
    if isinstance(bilm, EfmlBiLM):
        # An ELMoForManyLangs model: its config and dictionaries instead of bilm-tf options.
        return srsly.msgpack_dumps(
            {"format": "efml", "efml": efml_spec(bilm), "state_mode": bilm.state, "state_dict": state}
        )
    options = {"options": bilm.options.to_dict(), "use_projection": bilm.options.use_projection}
    return srsly.msgpack_dumps({"options": options, "state_mode": bilm.state, "state_dict": state})


def _deserialize_bilm(_: Any, data: bytes, device: torch.device) -> ElmoBiLM:
    msg = srsly.msgpack_loads(data)
    bilm: ElmoBiLM
    if msg.get("format") == "efml":
        bilm = efml_from_spec(msg["efml"], state=msg["state_mode"], source="serialized ELMo model")
    else:
        options = ElmoOptions.from_dict(msg["options"]["options"], source="serialized ELMo model")
        options = dataclasses.replace(options, use_projection=msg["options"]["use_projection"])
        bilm = ElmoBiLM(options, state=msg["state_mode"])
    bilm.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in msg["state_dict"].items()})
    return bilm.to(device).eval()


def get_settings(model: Model) -> ElmoSettings:
    return ElmoSettings(**model.attrs["elmo_settings"])


def set_settings(model: Model, settings: ElmoSettings) -> None:
    """Configure the model (before its biLM is loaded, or ``state``/``frozen`` after)."""
    model.attrs["elmo_settings"] = settings.to_dict()
    clear_layer_cache(model)
    bilm = get_bilm(model)
    if bilm is not None:
        bilm.state = settings.state
        _apply_frozen(bilm, settings.frozen)


def get_bilm(model: Model) -> ElmoBiLM | None:
    return model.shims[0]._model


def _apply_frozen(bilm: ElmoBiLM, frozen: bool) -> None:
    for parameter in bilm.parameters():
        parameter.requires_grad_(not frozen)


def ensure_bilm(model: Model) -> ElmoBiLM:
    """The model's biLM, loading it from the ``weights`` setting on first use."""
    bilm = get_bilm(model)
    if bilm is None:
        settings = get_settings(model)
        files = resolve_model(settings.weights, settings.options)
        bilm = load_model_files(files, state=settings.state)  # type: ignore[arg-type]
        bilm.precision = settings.precision
        _apply_frozen(bilm, settings.frozen)
        shim = model.shims[0]
        shim._model = bilm.to(get_torch_default_device())
    return bilm


def set_bilm(model: Model, bilm: ElmoBiLM) -> None:
    """Install an already loaded biLM (``from_disk``); settings ``state``/``frozen`` apply."""
    settings = get_settings(model)
    bilm.state = settings.state
    bilm.precision = settings.precision
    _apply_frozen(bilm, settings.frozen)
    clear_layer_cache(model)
    model.shims[0]._model = bilm.to(get_torch_default_device())


def layer_shape(model: Model) -> tuple[int, int]:
    """``(n_layers + 1, 2P)`` of the output, loading the biLM if needed."""
    bilm = ensure_bilm(model)
    return bilm.n_output_layers, bilm.output_dim


def building_from_config() -> bool:
    """Whether spaCy is building a pipeline from a config (``spacy.load``, ``spacy train``, ``from_config``).

    Then the weights may have been saved with the pipeline and the original files be gone, so
    ``check_weights_setting`` skips the checks of local paths (``initialize`` still needs them).
    """
    from spacy.language import Language

    code = Language.from_config.__func__.__code__  # type: ignore[attr-defined]
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def check_settings_source(settings: ElmoSettings) -> None:
    """Refuse a bad ``weights``/``options`` value when the component is created (no download)."""
    check_weights_setting(settings.weights, settings.options, check_paths=not building_from_config())


@registry.architectures("spacy_elmo.ElmoModel.v1")
def build_elmo_model() -> Model[list[Doc], list[Floats3d]]:
    """The biLM over Docs. Output per Doc: ``(n_layers + 1, n_tokens, 2P)``.

    Its settings come from its owner: the ``elmo`` component's settings, or the
    arguments of ``spacy_elmo.Elmo.v1``.
    """
    return create_elmo_model(ElmoSettings())


class ElmoShim(PyTorchShim):
    """thinc's PyTorch shim, but an optimizer step keeps each parameter's memory layout.

    thinc's own ``finish_update`` replaces every parameter's data with the optimizer's
    (C-contiguous) array. The biLM stores its ``(in, out)`` weights transposed, the layout
    its fast path multiplies (``cpu_matmul.transposed_parameter``); that would drop it and
    leave the gradients' layout unlike the parameters' (a torch warning at every step).
    The data is still replaced, not written in place: a graph built before the step may
    still hold the old values.
    """

    def finish_update(self, optimizer: Optimizer) -> None:
        for name, parameter in self._model.named_parameters():
            if parameter.grad is None:
                continue
            if not self._grad_scaler.found_inf:  # skip the step if a gradient overflowed
                updated, _ = optimizer((self.id, name), torch2xp(parameter.data), torch2xp(parameter.grad))
                data = torch.empty_strided(
                    parameter.shape, parameter.stride(), dtype=parameter.dtype, device=parameter.device
                )
                parameter.data = data.copy_(xp2torch(updated, device=parameter.device))
            parameter.grad.zero_()
        self._grad_scaler.update()


def create_elmo_model(settings: ElmoSettings) -> Model[list[Doc], list[Floats3d]]:
    shim = ElmoShim(None, serialize_model=_serialize_bilm, deserialize_model=_deserialize_bilm)
    return Model(
        MODEL_NAME,
        elmo_forward,
        init=elmo_init,
        shims=[shim],
        attrs={"elmo_settings": settings.to_dict()},
    )


def elmo_init(model: Model, X: list[Doc] | None = None, Y: Any = None) -> Model:  # noqa: N803
    ensure_bilm(model)
    return model


class _BiLMCache:
    """A model's ``LayerCache`` and the biLM it holds outputs of."""

    def __init__(self, bilm: ElmoBiLM, max_tokens: int) -> None:
        self.bilm = weakref.ref(bilm)
        self.layers = LayerCache(max_tokens)


# Keyed by the model's PyTorchShim (thinc Models cannot be weakly referenced); dies with it.
_caches: weakref.WeakKeyDictionary[PyTorchShim, _BiLMCache] = weakref.WeakKeyDictionary()


def get_layer_cache(model: Model) -> LayerCache | None:
    """The model's cache of unit outputs, if ``cache_tokens`` is set and it applies (frozen, ``reset``)."""
    settings = get_settings(model)
    bilm = get_bilm(model)
    if bilm is None or settings.cache_tokens == 0 or not settings.frozen or settings.state != "reset":
        return None
    shim = model.shims[0]
    entry = _caches.get(shim)
    if entry is None or entry.bilm() is not bilm or entry.layers.max_tokens != settings.cache_tokens:
        entry = _caches[shim] = _BiLMCache(bilm, settings.cache_tokens)
    return entry.layers


def clear_layer_cache(model: Model) -> None:
    _caches.pop(model.shims[0], None)


def _unit_words(docs: Sequence[Doc], unit: Unit) -> tuple[str, ...]:
    return tuple(token.text for token in docs[unit.doc_index][unit.start : unit.end])


def _run_units(
    bilm: ElmoBiLM, docs: Sequence[Doc], settings: ElmoSettings, cache: LayerCache | None
) -> list[tuple[Unit, torch.Tensor]]:
    """Every unit with its layers ``(L, unit length, 2P)``; cached units are not run again."""
    units = [
        unit for i, doc in enumerate(docs) for unit in doc_units(i, doc, settings.window_size, settings.window_overlap)
    ]
    results: list[tuple[Unit, torch.Tensor]] = []
    to_run: list[Unit] = []
    for unit in units:
        cached = cache.get(_unit_words(docs, unit)) if cache is not None else None
        if cached is None:
            to_run.append(unit)
        else:
            results.append((unit, cached))
    keep_order = settings.state == "stateful"
    for batch in pack_batches(to_run, settings.max_batch_tokens, keep_order):
        words = [_unit_words(docs, unit) for unit in batch]
        layers = bilm(bilm.batch_ids(words)).layers
        for row, unit in enumerate(batch):
            unit_layers = layers[:, row, : unit.end - unit.start]
            if cache is not None:
                # A copy, so that the cache does not keep the whole padded batch alive.
                unit_layers = unit_layers.clone()
                cache.put(words[row], unit_layers)
            results.append((unit, unit_layers))
    return results


def _assemble(
    docs: Sequence[Doc], ran: list[tuple[Unit, torch.Tensor]], n_layers: int, width: int, like: torch.Tensor
) -> list[torch.Tensor]:
    """Per-Doc ``(L, n_tokens, 2P)`` tensors made of the units' core slices, in token order."""
    pieces: list[list[tuple[int, torch.Tensor]]] = [[] for _ in docs]
    for unit, layers in ran:
        offset = unit.core_start - unit.start
        length = unit.core_end - unit.core_start
        pieces[unit.doc_index].append((unit.core_start, layers[:, offset : offset + length]))
    outputs = []
    for doc_pieces in pieces:
        if not doc_pieces:
            outputs.append(like.new_zeros(n_layers, 0, width))
            continue
        doc_pieces.sort(key=lambda piece: piece[0])
        outputs.append(torch.cat([piece for _, piece in doc_pieces], dim=1))
    return outputs


def elmo_forward(
    model: Model, docs: list[Doc], is_train: bool
) -> tuple[list[Floats3d], Callable[[list[Floats3d]], list[Doc]]]:
    """Per Doc ``(n_layers + 1, n_tokens, 2P)``; a graph is built only when training and not frozen."""
    bilm = ensure_bilm(model)
    settings = get_settings(model)
    track_grad = is_train and not settings.frozen
    like = bilm.bos_ids.new_zeros(0, dtype=torch.float32)
    cache = None if track_grad else get_layer_cache(model)
    with torch.set_grad_enabled(track_grad):
        ran = _run_units(bilm, docs, settings, cache)
        doc_layers = _assemble(docs, ran, bilm.n_output_layers, bilm.output_dim, like)
    outputs = [model.ops.asarray3f(torch2xp(t.detach())) for t in doc_layers]

    def backprop(d_outputs: list[Floats3d]) -> list[Doc]:
        if track_grad:
            pairs = [
                (t, xp2torch(d, device=t.device)) for t, d in zip(doc_layers, d_outputs, strict=True) if t.requires_grad
            ]
            if pairs:
                torch.autograd.backward([t for t, _ in pairs], [d for _, d in pairs])
        return []

    return outputs, backprop
