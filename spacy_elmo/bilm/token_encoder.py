"""The context-insensitive token encoder: character CNN, highway layers, projection.

Weights are kept in bilm-tf's layout (``x @ W`` with ``W`` of shape
``(in, out)``) so that reading and writing the reference files is exact.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from . import cpu_matmul
from .chars import MAX_WORD_LENGTH, N_CHARACTER_IDS, PAD_CHAR
from .options import ElmoOptions

# Tokens encoded per CNN call; bounds the (chunk, n_out, 50) activations
# (Original model: at most 12 MB for the widest filter).
DEFAULT_CHUNK_TOKENS = 64
# CNN chunks whose highway layers and projection run together: their matrix products
# are faster with more rows, and their activations are small ((n, n_filters)).
HIGHWAY_CHUNKS = 8
# Word vectors kept by the inference cache (Original model: 2 KB each).
DEFAULT_CACHE_WORDS = 20_000
# Shapes are rounded up to multiples of these (exactly: padding positions and rows that are
# dropped): oneDNN keeps a compiled kernel of about 0.1-0.5 MB per shape it has seen, so
# shapes that follow the input's every length would make memory grow with the text.
CHAR_POSITION_GROUP = 8
TOKEN_ROW_GROUP = 32
# Up to SMALL_TOKEN_ROWS tokens, rows are rounded to multiples of SMALL_TOKEN_ROW_GROUP only:
# a sentence at batch 1 would otherwise run its highway layers on up to 3 times its rows
# (the Small model's one highway layer is 2048 x 4096).
SMALL_TOKEN_ROW_GROUP = 8
SMALL_TOKEN_ROWS = 64


def affine(bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``bias + x @ weight``: ``(n, in) -> (n, out)``; through ``cpu_matmul`` when no gradient is needed."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad):
        return torch.addmm(bias, x, weight)
    return cpu_matmul.addmm(bias, x, weight)


class CharacterCNN(nn.Module):
    """Character embedding plus max-pooled convolutions of several widths.

    Input: char ids ``(n_tokens, 50)``. Output: ``(n_tokens, n_filters)``.
    Row 0 of the embedding is the all-zero row for padding tokens.
    """

    def __init__(self, options: ElmoOptions, initialize: bool = True) -> None:
        super().__init__()
        self.embedding = nn.Embedding(N_CHARACTER_IDS, options.char_embedding_dim, padding_idx=0)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(options.char_embedding_dim, n_out, width) for width, n_out in options.filters
        )
        self.activation = torch.relu if options.activation == "relu" else torch.tanh
        if initialize:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """bilm-tf's initialisation: embedding U(-1, 1), relu filters U(-0.05, 0.05)."""
        with torch.no_grad():
            nn.init.uniform_(self.embedding.weight, -1.0, 1.0)
            self.embedding.weight[0].zero_()
            for conv in self.convolutions:
                if self.activation is torch.relu:
                    nn.init.uniform_(conv.weight, -0.05, 0.05)
                else:
                    width, dim = conv.kernel_size[0], conv.in_channels
                    nn.init.normal_(conv.weight, 0.0, (1.0 / (width * dim)) ** 0.5)
                nn.init.zeros_(conv.bias)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        # (n, 50, e) -> (n, e, 50) for Conv1d
        chars = self.embedding(char_ids).transpose(1, 2)
        # Every window of width w that lies wholly in the trailing padding holds the same
        # input, so one of them stands for all: a filter of width w needs only the first
        # (longest token + w) positions, and the max over them is the max over all 50.
        # (With gradients: the tied padding windows shared the gradient, which now goes to
        # the one that stands for them; the sums into the weights are the same.)
        used = round_up(padded_length(char_ids), CHAR_POSITION_GROUP)
        pooled = [
            conv(chars[:, :, : min(MAX_WORD_LENGTH, used + conv.kernel_size[0])]).amax(dim=2)
            for conv in self.convolutions
        ]
        return self.activation(torch.cat(pooled, dim=1))


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def token_rows(n: int) -> int:
    """Rows the highway layers and projection of the inference path run on for ``n`` tokens."""
    return round_up(n, SMALL_TOKEN_ROW_GROUP if n <= SMALL_TOKEN_ROWS else TOKEN_ROW_GROUP)


def token_lengths(char_ids: torch.Tensor) -> torch.Tensor:
    """``(n, 50)`` char ids to ``(n,)``: positions up to the last one that is not padding."""
    positions = torch.arange(1, char_ids.shape[1] + 1, device=char_ids.device)
    return ((char_ids != PAD_CHAR + 1) * positions).amax(dim=1)


def padded_length(char_ids: torch.Tensor) -> int:
    """The longest token's length in ``(n, 50)`` char ids (0 for none)."""
    return int(token_lengths(char_ids).max().item()) if char_ids.shape[0] else 0


class Highway(nn.Module):
    """bilm-tf highway layer: ``g = sigmoid(x Wc + bc); x = g * relu(x Wt + bt) + (1 - g) * x``.

    Shapes: ``(n, dim) -> (n, dim)``. The "carry" gate multiplies the transform.
    """

    def __init__(self, dim: int, initialize: bool = True) -> None:
        super().__init__()
        # (in, out) weights stored transposed, as oneDNN multiplies them fastest (see cpu_matmul)
        self.carry_weight = cpu_matmul.transposed_parameter(dim, dim)
        self.carry_bias = nn.Parameter(torch.empty(dim))
        self.transform_weight = cpu_matmul.transposed_parameter(dim, dim)
        self.transform_bias = nn.Parameter(torch.empty(dim))
        if initialize:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        dim = self.carry_weight.shape[0]
        std = (1.0 / dim) ** 0.5
        with torch.no_grad():
            cpu_matmul.initialize_in_logical_order(self.carry_weight, lambda w: nn.init.normal_(w, 0.0, std))
            cpu_matmul.initialize_in_logical_order(self.transform_weight, lambda w: nn.init.normal_(w, 0.0, std))
            self.carry_bias.fill_(-2.0)
            self.transform_bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(affine(self.carry_bias, x, self.carry_weight))
        transformed = torch.relu(affine(self.transform_bias, x, self.transform_weight))
        if gate.requires_grad or transformed.requires_grad:
            return gate * transformed + (1.0 - gate) * x
        # The same operations in place (same values): no (n, dim) temporaries.
        return transformed.mul_(gate).add_(gate.neg_().add_(1.0).mul_(x))


class TokenEncoder(nn.Module):
    """Char ids ``(n_tokens, 50)`` to context-insensitive embeddings ``(n_tokens, P)``.

    Runs in chunks of ``chunk_tokens`` so memory stays bounded for any input size.
    """

    def __init__(self, options: ElmoOptions, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, initialize: bool = True) -> None:
        super().__init__()
        self.cnn = CharacterCNN(options, initialize)
        self.highways = nn.ModuleList(Highway(options.n_filters, initialize) for _ in range(options.n_highway))
        self.projection_weight: nn.Parameter | None = None
        self.projection_bias: nn.Parameter | None = None
        if options.use_projection:
            self.projection_weight = cpu_matmul.transposed_parameter(options.n_filters, options.projection_dim)
            self.projection_bias = nn.Parameter(torch.zeros(options.projection_dim))
            if initialize:
                std = (1.0 / options.n_filters) ** 0.5
                cpu_matmul.initialize_in_logical_order(self.projection_weight, lambda w: nn.init.normal_(w, 0.0, std))
        self.output_dim = options.projection_dim
        self.chunk_tokens = chunk_tokens

    def _encode_chunk(self, char_ids: torch.Tensor) -> torch.Tensor:
        """``(n, 50)`` with ``n <= chunk_tokens * HIGHWAY_CHUNKS`` to ``(n, P)``."""
        pieces = [self.cnn(chunk) for chunk in char_ids.split(self.chunk_tokens)]
        n = char_ids.shape[0]
        rows = n if pieces[0].requires_grad else token_rows(n)
        if rows > n:  # zero rows, computed and dropped: fewer distinct product shapes
            pieces.append(pieces[0].new_zeros(rows - n, pieces[0].shape[1]))
        x = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        for highway in self.highways:
            x = highway(x)
        if self.projection_weight is not None:
            x = affine(self.projection_bias, x, self.projection_weight)
        return x[:n]

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        if char_ids.dim() != 2 or char_ids.shape[1] != MAX_WORD_LENGTH:
            raise ValueError(f"expected char ids of shape (n_tokens, {MAX_WORD_LENGTH}), got {tuple(char_ids.shape)}")
        if torch.is_grad_enabled() or char_ids.shape[0] <= self.chunk_tokens:
            order = None
        else:
            # Chunks of tokens of similar length, so the CNN skips more padding (see CharacterCNN).
            order = torch.argsort(token_lengths(char_ids), stable=True)
            char_ids = char_ids[order]
        group = self.chunk_tokens * HIGHWAY_CHUNKS
        if char_ids.shape[0] <= group:
            encoded = self._encode_chunk(char_ids)
        else:
            encoded = torch.cat([self._encode_chunk(chunk) for chunk in char_ids.split(group)])
        if order is None:
            return encoded
        return torch.empty_like(encoded).index_copy_(0, order, encoded)


def _weights_key(module: nn.Module) -> tuple[object, ...]:
    """Changes whenever a parameter is replaced or updated in place (its version counter)."""
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in module.parameters())


def check_cache_size(entries: object) -> int:
    """``entries`` if it is a whole number >= 0, else ``ValueError``/``TypeError`` naming it."""
    if isinstance(entries, bool) or not isinstance(entries, int):
        raise TypeError(f"word_cache_size must be a whole number of entries, found {entries!r}")
    if entries < 0:
        raise ValueError(f"word_cache_size must be >= 0 (0: no cache), found {entries}")
    return entries


class WordVectorCache:
    """An LRU cache of context-insensitive token vectors, for inference.

    Keys are the encoder's input row of a token (its 50 character ids), so any
    encoder that maps such rows to vectors can use it. The cache empties itself when
    the encoder's weights change (``load_state_dict``, an optimizer step, data
    replaced, ``.to()``), so it never serves stale vectors. Use it only where no
    gradient is needed.
    """

    def __init__(self, max_words: int = DEFAULT_CACHE_WORDS) -> None:
        self.max_words = check_cache_size(max_words)
        self._vectors: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._weights_key: tuple[object, ...] | None = None

    def resize(self, max_words: int) -> None:
        """Keep at most ``max_words`` entries from now on (the least recently used go first)."""
        self.max_words = check_cache_size(max_words)
        while len(self._vectors) > self.max_words:
            self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)

    def clear(self) -> None:
        self._vectors.clear()
        self._weights_key = None

    def encode(self, encoder: TokenEncoder, char_ids: torch.Tensor) -> torch.Tensor:
        """``encoder(char_ids)`` for distinct rows ``(n, W)``, encoding only the rows not cached."""
        if self.max_words == 0:
            return encoder(char_ids)
        key = _weights_key(encoder)
        if key != self._weights_key:
            self._vectors.clear()
            self._weights_key = key
        # int32: the rows of other input formats (efml) hold word ids beyond int16.
        words = [row.tobytes() for row in char_ids.to(device="cpu", dtype=torch.int32).numpy()]
        vectors: list[torch.Tensor | None] = []
        missing: list[int] = []
        for k, word in enumerate(words):
            vector = self._vectors.get(word)
            if vector is None:
                missing.append(k)
            else:
                self._vectors.move_to_end(word)
            vectors.append(vector)
        if missing:
            index = torch.tensor(missing, device=char_ids.device)
            for k, vector in zip(missing, encoder(char_ids[index]), strict=True):
                vector = vector.clone()
                vectors[k] = vector
                self._vectors[words[k]] = vector
            while len(self._vectors) > self.max_words:
                self._vectors.popitem(last=False)
        return torch.stack(vectors)  # type: ignore[arg-type]
