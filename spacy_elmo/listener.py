"""Old import path of the listener and the inline architectures (spacy_elmo 0.1); see
``spacy_elmo.layers.listener`` and ``spacy_elmo.architectures``."""

from .architectures import build_elmo_head, build_elmo_listener, build_inline_elmo
from .layers.listener import ElmoListener
from .layers.scalar_mix import elmo_scalar_mix

__all__ = ["ElmoListener", "build_elmo_head", "build_elmo_listener", "build_inline_elmo", "elmo_scalar_mix"]
