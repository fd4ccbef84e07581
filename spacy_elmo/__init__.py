"""spacy_elmo: ELMo contextual embeddings for spaCy v3."""

from .bilm import ElmoBiLM, ElmoOptions, ScalarMix, load_bilm, save_bilm
from .errors import ElmoError, ElmoOptionsError, ElmoWeightsError

__version__ = "0.1.0"

__all__ = [
    "ElmoBiLM",
    "ElmoError",
    "ElmoOptions",
    "ElmoOptionsError",
    "ElmoWeightsError",
    "ScalarMix",
    "load_bilm",
    "save_bilm",
]
