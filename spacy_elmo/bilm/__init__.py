"""A PyTorch ELMo biLM that reads and writes the bilm-tf / AllenNLP format and ELMoForManyLangs models.

This subpackage knows nothing of spaCy.
"""

from .chars import batch_to_char_ids, word_to_char_ids
from .efml import EfmlBiLM, load_efml, save_efml
from .model import BiLMOutput, ElmoBiLM
from .options import ElmoOptions, read_options
from .scalar_mix import ScalarMix
from .weights import load_bilm, save_bilm, write_options, write_weights

__all__ = [
    "BiLMOutput",
    "EfmlBiLM",
    "ElmoBiLM",
    "ElmoOptions",
    "ScalarMix",
    "batch_to_char_ids",
    "load_bilm",
    "load_efml",
    "read_options",
    "save_bilm",
    "save_efml",
    "word_to_char_ids",
    "write_options",
    "write_weights",
]
