"""The biLM as a Thinc layer: a list of Docs in, every ELMo layer of every Doc out.

``elmo_bilm_model`` maps ``docs`` to one ``Floats3d (n_layers + 1, n_tokens, 2P)`` per Doc. Its
settings (``BiLMSettings``: which weights, how to cut Docs into units, state mode, precision,
batch budget, layer cache, word cache) are the arguments of ``spacy-elmo.ElmoModel.v2``; they live in
``model.attrs["settings"]``, are checked once when set, and are not serialized (the config
holds them). ``frozen`` is the owner's: the ``elmo`` component or ``spacy-elmo.Elmo.v2``.

The PyTorch module lives in a ``PyTorchShim`` (``ElmoShim``). It is loaded from the ``weights``
setting on first use (``ensure_bilm``), unless deserialization has put one there first; either
way it goes through ``install_bilm``, which applies the settings. Serialized, a biLM is its files
(``options.json`` + ``weights.hdf5`` in the reference layout, or ``efml/`` for an
ELMoForManyLangs model), the same files the component writes to disk.

Units (see ``units``) are sorted by length and packed into batches of at most
``max_batch_tokens`` padded tokens. With ``cache_tokens`` set, a frozen biLM in ``reset``
mode keeps the outputs of recent units (``LayerCache``, held by the model, never saved) and
runs only the units it has not seen.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import srsly
import torch
from spacy.tokens import Doc
from thinc.api import Model, Optimizer, PyTorchShim, get_torch_default_device, torch2xp, xp2torch
from thinc.types import Floats3d

from ..bilm import ElmoBiLM, ElmoOptions, save_bilm
from ..bilm.cpu_matmul import PRECISIONS, check_precision
from ..bilm.efml import EfmlBiLM, efml_from_spec, save_efml
from ..bilm.model import check_state_mode
from ..bilm.token_encoder import check_cache_size
from ..errors import ElmoError, ElmoWeightsError
from ..loading import load_model_files
from ..weights_source import check_weights_setting, model_in_directory, resolve_model
from .layer_cache import LayerCache
from .units import Unit, UnitSplitter, pack_batches

MODEL_NAME = "elmo_bilm"
OPTIONS_FILE = "options.json"
WEIGHTS_FILE = "weights.hdf5"
# An ELMoForManyLangs model is saved in its own format, as a model directory of that name.
EFML_DIR = "efml"


@dataclass(frozen=True)
class BiLMSettings:
    """How an ``elmo_bilm_model`` finds and runs its biLM; checked on construction.

    The defaults are the arguments' defaults of ``spacy-elmo.ElmoModel.v2`` (``architectures``);
    ``frozen`` is set by the model's owner.
    """

    weights: str | None
    options: str | None
    get_units: UnitSplitter
    state: str
    precision: str
    max_batch_tokens: int
    cache_tokens: int
    word_cache_size: int
    frozen: bool = True

    def __post_init__(self) -> None:
        for name in ("weights", "options"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))
        try:
            check_state_mode(self.state)
        except ValueError:
            raise ElmoError(f"elmo setting 'state' must be 'reset' or 'stateful', found {self.state!r}") from None
        try:
            check_precision(self.precision)
        except ValueError:
            raise ElmoError(f"elmo setting 'precision' must be one of {PRECISIONS}, found {self.precision!r}") from None
        for name in ("max_batch_tokens", "cache_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ElmoError(f"elmo setting '{name}' must be an integer, found {value!r}")
        try:
            check_cache_size(self.word_cache_size)
        except (TypeError, ValueError):
            raise ElmoError(
                f"elmo setting 'word_cache_size' must be 0 (off) or more entries, found {self.word_cache_size!r}"
            ) from None
        if not isinstance(self.frozen, bool):
            raise ElmoError(f"elmo setting 'frozen' must be true or false, found {self.frozen!r}")
        if not callable(self.get_units):
            raise ElmoError(f"elmo setting 'get_units' must be a unit splitter, found {self.get_units!r}")
        if self.cache_tokens < 0:
            raise ElmoError(f"elmo setting 'cache_tokens' must be 0 (off) or more, found {self.cache_tokens}")
        longest = getattr(self.get_units, "max_length", None)
        if isinstance(longest, int) and self.max_batch_tokens < longest:
            raise ElmoError(
                f"elmo setting 'max_batch_tokens' ({self.max_batch_tokens}) must be at least "
                f"window_size ({longest}), so that every unit fits in a batch"
            )
        if self.max_batch_tokens < 1:
            raise ElmoError(f"elmo setting 'max_batch_tokens' must be at least 1, found {self.max_batch_tokens}")


class _Runtime:
    """What a model holds while it runs and never saves or copies: which biLM it installed, its layer cache."""

    def __init__(self) -> None:
        self.installed: weakref.ref[ElmoBiLM] | None = None
        self.cache: LayerCache | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _Runtime:
        return _Runtime()  # a copied model installs its own copy of the biLM on first use


class ElmoShim(PyTorchShim):
    """Thinc's PyTorch shim, but an optimizer step keeps each parameter's memory layout.

    Thinc's own ``finish_update`` replaces every parameter's data with the optimizer's
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


def elmo_bilm_model(settings: BiLMSettings) -> Model[list[Doc], list[Floats3d]]:
    """The biLM over Docs. Output per Doc: ``(n_layers + 1, n_tokens, 2P)``; dims ``nL`` and ``nO`` (``2P``)."""
    shim = ElmoShim(None, serialize_model=_serialize_bilm, deserialize_model=_deserialize_bilm)
    return Model(
        MODEL_NAME,
        elmo_forward,
        init=elmo_init,
        shims=[shim],
        dims={"nL": None, "nO": None},
        attrs={"settings": settings, "runtime": _Runtime()},
    )


def building_from_config() -> bool:
    """Whether spaCy is building a pipeline from a config (``spacy.load``, ``spacy train``, ``from_config``).

    Then the weights may have been saved with the pipeline and the original files be gone, so
    ``check_source`` skips the checks of local paths (loading them at ``initialize`` still needs them).
    """
    from spacy.language import Language

    code = Language.from_config.__func__.__code__  # type: ignore[attr-defined]
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def check_source(settings: BiLMSettings) -> None:
    """Refuse a bad ``weights``/``options`` value when the model's owner is built (nothing is downloaded or read)."""
    check_weights_setting(settings.weights, settings.options, check_paths=not building_from_config())


def get_settings(model: Model) -> BiLMSettings:
    return model.attrs["settings"]


def configure(model: Model, **changes: Any) -> BiLMSettings:
    """Change settings (checked); an installed biLM takes them at once and the layer cache is emptied."""
    settings = dataclasses.replace(get_settings(model), **changes)
    model.attrs["settings"] = settings
    bilm = get_bilm(model)
    if bilm is not None:
        install_bilm(model, bilm)
    return settings


def get_bilm(model: Model) -> ElmoBiLM | None:
    return model.shims[0]._model


def install_bilm(model: Model, bilm: ElmoBiLM) -> ElmoBiLM:
    """Put ``bilm`` into the model with the model's settings (state, precision, frozen) on Thinc's device.

    The one way a biLM gets into a model: loading from ``weights``, ``from_disk``, ``from_bytes``
    and a copied or deserialized shim all end here. Empties the layer cache.
    """
    settings = get_settings(model)
    bilm.state = settings.state
    bilm.precision = settings.precision
    bilm.word_cache_size = settings.word_cache_size
    for parameter in bilm.parameters():
        parameter.requires_grad_(not settings.frozen)
    bilm = bilm.to(get_torch_default_device())
    model.shims[0]._model = bilm
    runtime: _Runtime = model.attrs["runtime"]
    runtime.installed = weakref.ref(bilm)
    runtime.cache = None
    model.set_dim("nL", bilm.n_output_layers, force=True)
    model.set_dim("nO", bilm.output_dim, force=True)
    return bilm


def ensure_bilm(model: Model) -> ElmoBiLM:
    """The model's biLM, loaded from the ``weights`` setting on first use, installed with the settings."""
    bilm = get_bilm(model)
    if bilm is None:
        settings = get_settings(model)
        files = resolve_model(settings.weights, settings.options)
        bilm = load_model_files(files, state=settings.state)  # type: ignore[arg-type]
        return install_bilm(model, bilm)
    installed = model.attrs["runtime"].installed
    if installed is None or installed() is not bilm:
        bilm = install_bilm(model, bilm)
    return bilm


def layer_shape(model: Model) -> tuple[int, int]:
    """``(n_layers + 1, 2P)`` of the output, loading the biLM if needed."""
    bilm = ensure_bilm(model)
    return bilm.n_output_layers, bilm.output_dim


def elmo_init(model: Model, X: list[Doc] | None = None, Y: Any = None) -> Model:  # noqa: N803
    ensure_bilm(model)
    return model


# ---- the biLM's files: the one format on disk and in bytes ----
def read_bilm_dir(directory: str | Path) -> ElmoBiLM:
    """Load the biLM a saved directory holds (``options.json`` + one ``.hdf5``, or ``efml/``), on the CPU."""
    directory = Path(directory)
    if (directory / EFML_DIR).is_dir():
        directory = directory / EFML_DIR
    return load_model_files(model_in_directory(directory))


def write_bilm_dir(bilm: ElmoBiLM, directory: str | Path) -> None:
    """Write the biLM into ``directory``: ``options.json`` and ``weights.hdf5`` (reference layout,
    atomically), or an ELMoForManyLangs model in its own format as ``efml/``."""
    directory = Path(directory)
    if isinstance(bilm, EfmlBiLM):
        save_efml(bilm, directory / EFML_DIR)
        stale = [directory / OPTIONS_FILE, directory / WEIGHTS_FILE]
    else:
        save_bilm(bilm, directory, WEIGHTS_FILE)
        stale = [directory / EFML_DIR]
    # A model of the other format saved here before would be read instead of this one.
    for old in stale:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)


def bilm_to_files(bilm: ElmoBiLM) -> dict[str, bytes]:
    """The files ``write_bilm_dir`` writes, by their path relative to the directory (``/``-separated)."""
    with tempfile.TemporaryDirectory(prefix="spacy_elmo.") as tmp:
        write_bilm_dir(bilm, tmp)
        root = Path(tmp)
        return {
            path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()
        }


def bilm_from_files(files: dict[str, bytes]) -> ElmoBiLM:
    """The biLM of ``bilm_to_files``'s output."""
    with tempfile.TemporaryDirectory(prefix="spacy_elmo.") as tmp:
        for name, data in files.items():
            parts = PurePosixPath(name).parts
            if (
                not parts
                or name.startswith("/")
                or any(part in ("", ".", "..") or part.startswith(".") for part in parts)
            ):
                raise ElmoWeightsError(f"serialized ELMo model: bad file name {name!r}")
            target = Path(tmp, *parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return read_bilm_dir(tmp)


def _serialize_bilm(bilm: ElmoBiLM | None) -> bytes:
    if bilm is None:
        raise ElmoError("the ELMo model has no weights yet: nothing to serialize (run it or initialize it first)")
    return srsly.msgpack_dumps({"files": bilm_to_files(bilm)})


def _deserialize_bilm(_: Any, data: bytes, device: torch.device) -> ElmoBiLM:
    """A biLM from ``_serialize_bilm``'s bytes (or the first release's state dict); installed on first use."""
    msg = srsly.msgpack_loads(data)
    if "files" in msg:
        return bilm_from_files(msg["files"]).to(device)
    # spacy_elmo 0.1: the options (or an ELMoForManyLangs spec) and a state dict of float32 arrays.
    bilm: ElmoBiLM
    if msg.get("format") == "efml":
        bilm = efml_from_spec(msg["efml"], state=msg["state_mode"], source="serialized ELMo model")
    else:
        options = ElmoOptions.from_dict(msg["options"]["options"], source="serialized ELMo model")
        options = dataclasses.replace(options, use_projection=msg["options"]["use_projection"])
        bilm = ElmoBiLM(options, state=msg["state_mode"])
    bilm.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in msg["state_dict"].items()})
    return bilm.to(device).eval()


# ---- the layer cache ----
def get_layer_cache(model: Model) -> LayerCache | None:
    """The model's cache of unit outputs, if ``cache_tokens`` is set and it applies (frozen, ``reset``)."""
    settings = get_settings(model)
    runtime: _Runtime = model.attrs["runtime"]
    if runtime.installed is None or settings.cache_tokens == 0 or not settings.frozen or settings.state != "reset":
        return None
    if runtime.cache is None or runtime.cache.max_tokens != settings.cache_tokens:
        runtime.cache = LayerCache(settings.cache_tokens)
    return runtime.cache


def clear_layer_cache(model: Model) -> None:
    model.attrs["runtime"].cache = None


# ---- the forward pass ----
def _unit_words(docs: Sequence[Doc], unit: Unit) -> tuple[str, ...]:
    return tuple(token.text for token in docs[unit.doc_index][unit.start : unit.end])


class _DocLayers:
    """Collects the units' core slices into per-Doc ``(L, n_tokens, 2P)`` tensors, in token order.

    Without gradients each slice is copied into its Doc's output as soon as its batch has run, so
    the padded batch outputs are freed batch by batch: a long Doc peaks at one copy of its layers
    plus one batch. With gradients the slices are kept and joined by ``torch.cat`` (autograd).
    """

    def __init__(self, docs: Sequence[Doc], n_layers: int, width: int, like: torch.Tensor, copy_in: bool) -> None:
        self.docs = docs
        self.cores: list[list[tuple[int, int]]] = [[] for _ in docs]
        self.pieces: list[list[tuple[int, torch.Tensor]]] = [[] for _ in docs]
        self.outputs = [like.new_empty(n_layers, len(doc), width) if copy_in else None for doc in docs]
        self.empty = like.new_zeros(n_layers, 0, width)

    def add(self, unit: Unit, layers: torch.Tensor) -> None:
        """``layers``: ``(L, unit length, 2P)``, the unit's run tokens."""
        n_tokens = len(self.docs[unit.doc_index])
        if not 0 <= unit.core_start <= unit.core_end <= min(unit.end, n_tokens) or unit.core_start < unit.start:
            raise ElmoError(
                f"the elmo unit splitter gave a core [{unit.core_start}, {unit.core_end}) outside its unit "
                f"[{unit.start}, {unit.end}) or its Doc of {n_tokens} tokens"
            )
        offset = unit.core_start - unit.start
        core = layers[:, offset : offset + unit.core_end - unit.core_start]
        self.cores[unit.doc_index].append((unit.core_start, unit.core_end))
        output = self.outputs[unit.doc_index]
        if output is not None:
            output[:, unit.core_start : unit.core_end] = core
        else:
            self.pieces[unit.doc_index].append((unit.core_start, core))

    def finish(self) -> list[torch.Tensor]:
        results = []
        for index, doc in enumerate(self.docs):
            covered = 0
            for core_start, core_end in sorted(c for c in self.cores[index] if c[0] < c[1]):
                if core_start != covered:
                    break
                covered = core_end
            if covered != len(doc) or sum(end - start for start, end in self.cores[index]) != len(doc):
                raise ElmoError(
                    f"the elmo unit splitter's cores cover tokens [0, {covered}) of a Doc of {len(doc)} "
                    "before a gap or an overlap: they must tile the Doc exactly"
                )
            output = self.outputs[index]
            if output is None:
                pieces = [piece for _, piece in sorted(self.pieces[index], key=lambda item: item[0])]
                output = torch.cat(pieces, dim=1) if pieces else self.empty
            results.append(output)
        return results


def _run_units(
    bilm: ElmoBiLM, docs: Sequence[Doc], settings: BiLMSettings, cache: LayerCache | None, sink: _DocLayers
) -> None:
    """Runs every unit (cached units are not run again) and hands its layers ``(L, unit length, 2P)`` to ``sink``."""
    units = [unit for i, doc in enumerate(docs) for unit in settings.get_units(i, doc)]
    to_run: list[Unit] = []
    for unit in units:
        cached = cache.get(_unit_words(docs, unit)) if cache is not None else None
        if cached is None:
            to_run.append(unit)
        else:
            sink.add(unit, cached)
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
            sink.add(unit, unit_layers)
        del layers


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
        sink = _DocLayers(docs, bilm.n_output_layers, bilm.output_dim, like, copy_in=not track_grad)
        _run_units(bilm, docs, settings, cache, sink)
        doc_layers = sink.finish()
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
