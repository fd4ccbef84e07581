"""A PyTorch ELMo biLM that reads and writes the bilm-tf / AllenNLP format.

This subpackage knows nothing of spaCy.
"""

from .chars import batch_to_char_ids, word_to_char_ids
from .model import BiLMOutput, ElmoBiLM
from .options import ElmoOptions, read_options
from .scalar_mix import ScalarMix
from .weights import load_bilm, save_bilm, write_options, write_weights

__all__ = [
    "BiLMOutput",
    "ElmoBiLM",
    "ElmoOptions",
    "ScalarMix",
    "batch_to_char_ids",
    "load_bilm",
    "read_options",
    "save_bilm",
    "word_to_char_ids",
    "write_options",
    "write_weights",
]
