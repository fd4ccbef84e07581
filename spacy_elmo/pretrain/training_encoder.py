"""Training-time token encoding: ``TokenEncoder``'s function over a batch's distinct tokens, with gradients.

The same values and gradients as ``bilm.token_encoder.TokenEncoder`` (up to float rounding), computed with
fewer, larger operations:

- the batch's distinct tokens are found by comparing rows as bytes (NumPy), not by ``torch.unique(dim=0)``;
- all the char CNN's filters run as one matrix product per group of tokens of similar length: each filter's
  kernel is zero-padded on the right to the widest width, so one product over windows of the widest width
  computes every filter (a window's value for a filter of width ``w`` depends on its first ``w`` positions
  only), instead of one small convolution per filter and 64-token chunk;
- the max over positions keeps its argmax (its backward is a scatter, not a comparison of every position);
- the highway layers and the projection run once over all distinct tokens.

Which windows a filter pools over is ``CharacterCNN.forward``'s rule: for a token padded to ``used`` positions
(its length rounded up to ``CHAR_POSITION_GROUP``) a filter of width ``w`` pools the windows starting at
``0 .. min(50 - w, used)``. Windows of the widest width that reach past position 50 are zero-padded; the
positions a filter would not pool there are masked out of its max.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..bilm.chars import MAX_WORD_LENGTH
from ..bilm.token_encoder import CHAR_POSITION_GROUP, CharacterCNN, TokenEncoder, token_lengths

# Rows (tokens x window positions) per char CNN product: bounds its (rows, n_filters) output
# (2048 filters: 256 MB).
MAX_WINDOW_ROWS = 32_768


def distinct_rows(char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of CPU ``char_ids (N, W)`` and, per row, the index of its distinct row ``(N,)``."""
    rows = np.ascontiguousarray(char_ids.numpy())
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    return torch.from_numpy(rows[first]), torch.from_numpy(inverse.reshape(-1).astype(np.int64))


def _windowed_kernel(cnn: CharacterCNN) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Every filter as one product: the kernel ``(n_filters, E * widest)`` (rows in ``unfold``'s order,
    channel-major), the bias ``(n_filters,)`` and each filter's width."""
    widest = max(conv.kernel_size[0] for conv in cnn.convolutions)
    kernels, widths = [], []
    for conv in cnn.convolutions:
        width = conv.kernel_size[0]
        kernels.append(F.pad(conv.weight, (0, widest - width)))  # (n_out, E, widest)
        widths += [width] * conv.out_channels
    kernel = torch.cat(kernels)
    bias = torch.cat([conv.bias for conv in cnn.convolutions])
    return kernel.reshape(kernel.shape[0], -1), bias, widths


def character_cnn(cnn: CharacterCNN, char_ids: torch.Tensor) -> torch.Tensor:
    """``cnn(char_ids)``: ``(n, 50)`` char ids, best sorted by length (fewer groups), to ``(n, n_filters)``."""
    kernel, bias, widths = _windowed_kernel(cnn)
    widest = max(widths)
    filter_widths = torch.tensor(widths, device=char_ids.device)
    chars = cnn.embedding(char_ids)  # (n, 50, E)
    used = (token_lengths(char_ids) + CHAR_POSITION_GROUP - 1) // CHAR_POSITION_GROUP * CHAR_POSITION_GROUP
    last_start = used.clamp(max=MAX_WORD_LENGTH - 1).tolist()  # the last window any filter pools
    pooled: list[torch.Tensor] = []
    start = 0
    while start < len(last_start):
        # The tokens that share this token's last window, at most MAX_WINDOW_ROWS windows in all
        last = last_start[start]
        n_windows = last + 1
        stop = start + 1
        limit = start + max(1, MAX_WINDOW_ROWS // n_windows)
        while stop < min(len(last_start), limit) and last_start[stop] == last:
            stop += 1
        group = chars[start:stop, : min(MAX_WORD_LENGTH, last + widest)]
        if group.shape[1] < last + widest:  # windows that reach past position 50
            group = F.pad(group, (0, 0, 0, last + widest - group.shape[1]))
        windows = group.unfold(1, widest, 1).reshape(-1, kernel.shape[1])  # (tokens * n_windows, E * widest)
        values = torch.addmm(bias, windows, kernel.t()).view(stop - start, n_windows, -1)
        if last > MAX_WORD_LENGTH - widest:
            # Filter of width w: windows starting after 50 - w are not its to pool.
            starts = torch.arange(n_windows, device=values.device)
            outside = starts[:, None] > MAX_WORD_LENGTH - filter_widths[None, :]
            values = values.masked_fill(outside, float("-inf"))
        pooled.append(values.max(dim=1).values)
        start = stop
    return cnn.activation(torch.cat(pooled))


def encode_tokens(encoder: TokenEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    """``encoder(char_ids)`` with gradients: ``(n, 50)`` char ids to ``(n, P)``."""
    x = character_cnn(encoder.cnn, char_ids)
    for highway in encoder.highways:
        x = highway(x)
    if encoder.projection_weight is not None:
        x = torch.addmm(encoder.projection_bias, x, encoder.projection_weight)
    return x
