"""Training-time token encoding: ``TokenEncoder``'s function over a batch's distinct tokens, with gradients.

The same values and gradients as ``bilm.token_encoder.TokenEncoder`` (up to float rounding), computed with
fewer, larger operations. One exception: where two different windows give a filter exactly the same max,
``TokenEncoder``'s ``amax`` splits the gradient between them and the max pool here gives it to one (another
subgradient of the same function). Identical windows (the padding) get the same sums either way.

- the batch's distinct tokens are found by comparing rows as bytes (NumPy), not by ``torch.unique(dim=0)``;
- all the char CNN's filters run as one matrix product per group of tokens of one length: each filter's
  kernel is zero-padded on the right to the widest width, so one product over windows of the widest width
  computes every filter (a window's value for a filter of width ``w`` depends on its first ``w`` positions
  only), instead of one small convolution per filter and 64-token chunk;
- the max over positions is a channels-last max pool (its backward a scatter to one window per filter);
- only the character positions some window reads are embedded, in one lookup;
- the highway layers and the projection run once over all distinct tokens.

Which windows a filter pools over: ``CharacterCNN.forward`` pools a filter of width ``w`` over the windows
starting at ``0 .. min(50 - w, used)`` for a token padded to ``used`` positions (its length rounded up); every
window that lies wholly in the trailing padding holds the same input, so here the first such window stands
for the rest: the windows starting at ``0 .. min(50 - w, length)``, the same max. Tokens of one length share
a product. Windows of the widest width that reach past position 50 are zero-padded; the positions a filter
would not pool there are masked out of its max.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..bilm.chars import MAX_WORD_LENGTH
from ..bilm.token_encoder import CharacterCNN, TokenEncoder, token_lengths

# Rows (tokens x window positions) per char CNN product: bounds its (rows, n_filters) output
# (2048 filters: 256 MB).
MAX_WINDOW_ROWS = 32_768
# Under autocast, the highway layers' rows are padded to a multiple of this (zero rows, dropped).
AUTOCAST_ROW_GROUP = 128


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


def _length_groups(last_start: list[int]) -> list[tuple[int, int, int]]:
    """``(start, stop, last)``: runs of tokens that share their last window start, at most
    ``MAX_WINDOW_ROWS`` windows each."""
    groups = []
    start = 0
    while start < len(last_start):
        last = last_start[start]
        stop = start + 1
        limit = min(len(last_start), start + max(1, MAX_WINDOW_ROWS // (last + 1)))
        while stop < limit and last_start[stop] == last:
            stop += 1
        groups.append((start, stop, last))
        start = stop
    return groups


def _max_over_windows(values: torch.Tensor) -> torch.Tensor:
    """``(n, windows, n_filters)`` to its max over the windows ``(n, n_filters)``.

    As a channels-last 2-D max pool, whose CPU kernel (and its backward, a scatter to one window per filter)
    runs along the contiguous filters. ``max(dim=1)`` reduces along a strided dimension: with it the char CNN's
    forward pass over a ``mini`` batch's distinct tokens took 14.9 ms, with this 7.8 ms.
    """
    n, windows, n_filters = values.shape
    as_image = values.view(n, windows, 1, n_filters).permute(0, 3, 1, 2)  # (n, F, windows, 1), channels last
    return F.max_pool2d(as_image, (windows, 1)).reshape(n, n_filters)


def character_cnn(cnn: CharacterCNN, char_ids: torch.Tensor) -> torch.Tensor:
    """``cnn(char_ids)``: ``(n, 50)`` char ids, best sorted by length (fewer groups), to ``(n, n_filters)``."""
    kernel, bias, widths = _windowed_kernel(cnn)
    widest = max(widths)
    filter_widths = torch.tensor(widths, device=char_ids.device)
    # The last window any filter pools: the first that lies wholly in the padding (it stands for all of them).
    groups = _length_groups(token_lengths(char_ids).clamp(max=MAX_WORD_LENGTH - 1).tolist())
    # Only the positions some window reads are embedded, all groups in one lookup.
    read = [min(MAX_WORD_LENGTH, last + widest) for _, _, last in groups]
    ids = torch.cat([char_ids[start:stop, :n].reshape(-1) for (start, stop, _), n in zip(groups, read, strict=True)])
    embedded = cnn.embedding(ids).split([(stop - start) * n for (start, stop, _), n in zip(groups, read, strict=True)])
    pooled: list[torch.Tensor] = []
    for (start, stop, last), chars, n_read in zip(groups, embedded, read, strict=True):
        n_windows = last + 1
        group = chars.view(stop - start, n_read, -1)
        if n_read < last + widest:  # windows that reach past position 50
            group = F.pad(group, (0, 0, 0, last + widest - n_read))
        windows = group.unfold(1, widest, 1).reshape(-1, kernel.shape[1])  # (tokens * n_windows, E * widest)
        values = torch.addmm(bias, windows, kernel.t()).view(stop - start, n_windows, -1)
        if last > MAX_WORD_LENGTH - widest:
            # Filter of width w: windows starting after 50 - w are not its to pool.
            starts = torch.arange(n_windows, device=values.device)
            outside = starts[:, None] > MAX_WORD_LENGTH - filter_widths[None, :]
            values = values.masked_fill(outside, float("-inf"))
        pooled.append(_max_over_windows(values))
    return cnn.activation(torch.cat(pooled))


def encode_tokens(encoder: TokenEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    """``encoder(char_ids)`` with gradients: ``(n, 50)`` char ids to ``(n, P)``.

    Under CPU autocast (``--precision bfloat16``) the char CNN stays in float32 (its products have a new shape
    at every step, and oneDNN would compile a bfloat16 kernel for each); the highway layers and the
    projection run in bfloat16 on rows padded to a multiple of ``AUTOCAST_ROW_GROUP`` (a bounded set of shapes).
    """
    with torch.autocast("cpu", enabled=False):
        x = character_cnn(encoder.cnn, char_ids)
    n = x.shape[0]
    if torch.is_autocast_enabled("cpu") and n % AUTOCAST_ROW_GROUP:
        x = F.pad(x, (0, 0, 0, AUTOCAST_ROW_GROUP - n % AUTOCAST_ROW_GROUP))
    for highway in encoder.highways:
        x = highway(x)
    if encoder.projection_weight is not None:
        x = torch.addmm(encoder.projection_bias, x, encoder.projection_weight)
    return x[:n]
