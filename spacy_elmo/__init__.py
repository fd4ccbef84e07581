"""spacy_elmo: ELMo contextual embeddings for spaCy v3.

``import spacy_elmo`` loads the biLM (torch, numpy, h5py) only; the spaCy layer is imported
on first use of one of its names here, and spaCy imports it on its own through the package's
entry points (the "elmo" factory, the architectures and ``doc._.elmo``).
"""

from __future__ import annotations

import importlib
from typing import Any

from .bilm import ElmoBiLM, ElmoOptions, ScalarMix, save_bilm
from .catalog import CATALOG
from .errors import ElmoDownloadError, ElmoError, ElmoOptionsError, ElmoWeightsError
from .loading import load_bilm

__version__ = "0.4.0"

# name -> module of the spaCy layer that defines it
_SPACY_LAYER = {"ElmoComponent": ".component", "make_elmo": ".component", "restore_vectors": ".doc_hooks"}


def __getattr__(name: str) -> Any:
    if name in _SPACY_LAYER:
        return getattr(importlib.import_module(_SPACY_LAYER[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CATALOG",
    "ElmoBiLM",
    "ElmoComponent",
    "ElmoDownloadError",
    "ElmoError",
    "ElmoOptions",
    "ElmoOptionsError",
    "ElmoWeightsError",
    "ScalarMix",
    "load_bilm",
    "make_elmo",
    "restore_vectors",
    "save_bilm",
]
