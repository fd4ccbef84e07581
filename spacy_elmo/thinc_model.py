"""Old import path of the biLM model layer (spacy_elmo 0.1); see ``spacy_elmo.layers.bilm_model``."""

from .architectures import build_elmo_model
from .layers.bilm_model import ensure_bilm, get_bilm, get_layer_cache, layer_shape
from .layers.units import Unit, doc_units, pack_batches, window_units

__all__ = [
    "Unit",
    "build_elmo_model",
    "doc_units",
    "ensure_bilm",
    "get_bilm",
    "get_layer_cache",
    "layer_shape",
    "pack_batches",
    "window_units",
]
