"""ELMo's task-specific weighting of the biLM layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ScalarMix(nn.Module):
    """``gamma * sum_k softmax(w)_k * layer_k``, then dropout (training only).

    With ``do_layer_norm``, each layer is first normalised by one scalar mean and
    variance over all of its unmasked elements (AllenNLP's convention, not
    per-token LayerNorm). ``fixed_weights`` sets the pre-softmax ``w`` and
    freezes them.
    """

    def __init__(
        self,
        n_layers: int,
        do_layer_norm: bool = False,
        fixed_weights: Sequence[float] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if fixed_weights is not None and len(fixed_weights) != n_layers:
            raise ValueError(f"fixed_weights needs {n_layers} values, found {len(fixed_weights)}")
        initial = torch.tensor(list(fixed_weights) if fixed_weights is not None else [0.0] * n_layers)
        self.weights = nn.Parameter(initial.float(), requires_grad=fixed_weights is None)
        self.gamma = nn.Parameter(torch.tensor(1.0))
        self.do_layer_norm = do_layer_norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, layers: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mix ``layers (L, B, N, D)`` with ``mask (B, N)`` into ``(B, N, D)``."""
        if layers.shape[0] != self.weights.shape[0]:
            raise ValueError(f"expected {self.weights.shape[0]} layers, found {layers.shape[0]}")
        if self.do_layer_norm:
            if mask is None:
                raise ValueError("do_layer_norm needs the mask")
            keep = mask[None, :, :, None].to(layers.dtype)
            count = keep.sum((1, 2, 3)) * layers.shape[-1]
            mean = (layers * keep).sum((1, 2, 3)) / count
            var = (((layers - mean[:, None, None, None]) * keep) ** 2).sum((1, 2, 3)) / count
            layers = (layers - mean[:, None, None, None]) / torch.sqrt(var[:, None, None, None] + 1e-13)
        normed = torch.softmax(self.weights, dim=0).to(layers.dtype)
        mixed = self.gamma * torch.einsum("l,lbnd->bnd", normed, layers)
        return self.dropout(mixed)
