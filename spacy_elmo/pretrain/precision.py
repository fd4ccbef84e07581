"""Training precision: float32, or bfloat16 matrix products with float32 weights, state and loss.

``bfloat16`` runs the forward pass under ``torch.autocast`` (the char CNN, highway and projection products
in bfloat16; the fused LSTM's products in bfloat16 with its gates, cell state and outputs in float32, see
``fused_lstm``); the softmax and loss stay in float32 (``BiLMLanguageModel.forward``). Parameters, gradients
and the optimiser state stay float32, so checkpoints and the export are the same either way. On CPUs with
AMX or AVX512-BF16 the products are several times faster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")


@contextlib.contextmanager
def training_precision(precision: str, device_type: str = "cpu") -> Iterator[None]:
    """The context to run the training forward pass in; ``precision`` is one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, found {precision!r}")
    if precision == "float32":
        yield
        return
    with torch.autocast(device_type, dtype=torch.bfloat16):
        yield
