"""``spacy_elmo.load_bilm``: a biLM from anything the ``weights`` setting accepts.

The one place that turns resolved files (``weights_source.ModelFiles``) into a model, by
``format``: ``bilm-tf`` is read by ``bilm.weights.load_bilm``; a new format registers its
reader in ``LOADERS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .bilm import weights as bilm_weights
from .bilm.efml import load_efml
from .bilm.model import ElmoBiLM, StateMode
from .bilm.token_encoder import DEFAULT_CACHE_WORDS, check_cache_size
from .catalog import FORMAT_BILM_TF, FORMAT_EFML
from .errors import ElmoWeightsError
from .weights_source import ModelFiles, resolve_model

PathOrName = str | os.PathLike[str]


def _load_bilm_tf(files: ModelFiles, state: StateMode, precision: str) -> ElmoBiLM:
    options_file, weight_file = files.weight_files()
    return bilm_weights.load_bilm(options_file, weight_file, state=state, precision=precision)


def _load_efml(files: ModelFiles, state: StateMode, precision: str) -> ElmoBiLM:
    return load_efml(files.directory, state=state, precision=precision)


# format -> reader of a resolved model
LOADERS: dict[str, Callable[[ModelFiles, StateMode, str], ElmoBiLM]] = {
    FORMAT_BILM_TF: _load_bilm_tf,
    FORMAT_EFML: _load_efml,
}


def load_model_files(
    files: ModelFiles,
    *,
    state: StateMode = "reset",
    precision: str = "fp32",
    word_cache_size: int = DEFAULT_CACHE_WORDS,
) -> ElmoBiLM:
    """The biLM of resolved files, by their format; in eval mode on the CPU."""
    check_cache_size(word_cache_size)
    loader = LOADERS.get(files.format)
    if loader is None:
        raise ElmoWeightsError(f"no reader for models in the '{files.format}' format ({files.directory})")
    model = loader(files, state, precision)
    model.word_cache_size = word_cache_size
    return model


def _is_url(value: PathOrName) -> bool:
    return "://" in str(value)


def load_bilm(
    source: PathOrName | None = None,
    weight_file: PathOrName | None = None,
    *,
    options: PathOrName | None = None,
    state: StateMode = "reset",
    precision: str = "fp32",
    options_file: PathOrName | None = None,
    progress: bool = True,
    word_cache_size: int = DEFAULT_CACHE_WORDS,
) -> ElmoBiLM:
    """Load a biLM; returned in eval mode on the CPU.

    - ``load_bilm(options_file, weight_file)``: the two files, as paths or URLs (AllenNLP's habit);
    - ``load_bilm(weights, options=None)``: anything the component's ``weights`` setting accepts:
      a catalog name (``"original"``), a bundled name, a directory, a weight file, an archive or a URL.

    ``options_file=`` is the keyword form of the first argument of the two-file call.
    ``precision``: ``fp32`` (exact), ``bf16`` or ``int8`` (``ElmoBiLM.precision``).
    ``word_cache_size``: entries of the token encoder's inference cache (``ElmoBiLM.word_cache_size``;
    0 turns it off).
    """
    if options_file is not None:
        if weight_file is None:
            raise TypeError("load_bilm(options_file=...) also needs weight_file")
        if source is not None:
            raise TypeError("load_bilm: give the options file once (positionally or as options_file=)")
        source = options_file
    if weight_file is not None:
        if options is not None:
            raise TypeError("load_bilm(options_file, weight_file) takes no options=")
        if not _is_url(source or "") and not _is_url(weight_file):
            assert source is not None
            return bilm_weights.load_bilm(
                source, weight_file, state=state, precision=precision, word_cache_size=word_cache_size
            )
        files = resolve_model(weight_file, source, progress=progress)
    else:
        files = resolve_model(source, options, progress=progress)
    return load_model_files(files, state=state, precision=precision, word_cache_size=word_cache_size)
