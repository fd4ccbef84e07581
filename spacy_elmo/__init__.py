"""spacy_elmo: ELMo contextual embeddings for spaCy v3."""

from .bilm import ElmoBiLM, ElmoOptions, ScalarMix, load_bilm, save_bilm

# The spaCy layer: importing registers the "elmo" factory, the architectures and doc._.elmo
# (entry points make spaCy import it on its own).
from .component import ElmoComponent, make_elmo
from .doc_hooks import restore_vectors
from .errors import ElmoError, ElmoOptionsError, ElmoWeightsError

__version__ = "0.1.0"

__all__ = [
    "ElmoBiLM",
    "ElmoComponent",
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
