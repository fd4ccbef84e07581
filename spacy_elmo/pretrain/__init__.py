"""Pretraining and fine-tuning ELMo biLMs on raw text (single process or DDP), exporting the reference format."""

from .data import PretrainDataError, Vocabulary
from .lm import BiLMLanguageModel
from .presets import PRESETS, PresetError, get_preset
from .train import PretrainConfig, PretrainError, export_checkpoint, pretrain

__all__ = [
    "PRESETS",
    "BiLMLanguageModel",
    "PresetError",
    "PretrainConfig",
    "PretrainDataError",
    "PretrainError",
    "Vocabulary",
    "export_checkpoint",
    "get_preset",
    "pretrain",
]
