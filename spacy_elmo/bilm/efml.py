"""ELMoForManyLangs (HIT-SCIR) models in ``ElmoBiLM``: their dictionaries, token ids and files.

An ELMoForManyLangs model directory holds ``config.json`` (whose ``config_path`` names the
network config), ``char.dic`` / ``word.dic`` (``token<TAB>id`` per line) and the PyTorch
state dicts ``token_embedder.pkl`` and ``encoder.pkl``. The encoder is AllenNLP's ELMo
biLSTM, which ``ElmoLstm`` computes; only the front end differs from bilm-tf: a token is
its word id (if the model has a word embedding) and its characters' dictionary ids, and
the word embedding is concatenated with the character CNN's highway output before the
projection. The input conventions follow their code exactly (``create_one_batch`` and
``read_list``):

- a token longer than ``max_characters_per_token - 2`` characters is cut to that many
  (for the word lookup too); unknown words and characters take the ``<oov>`` id;
- the characters sit between the ids their code looks up as ``<eow>`` (first) and
  ``<bow>`` (last): it swaps the two names; the rest of the ``max_characters_per_token``
  positions hold ``<pad>`` (a learned row) and the CNN runs over all of them;
- ``<bos>`` and ``<eos>`` (also a token spelled so) are one character: the dictionary's
  ``<bos>`` / ``<eos>`` entry;
- the CNN takes the max over positions before the activation; word embedding rows are used
  as saved (already unit-normalized).

Id rows: ``[word id + 1]`` (with a word embedding) then ``max_characters_per_token``
character ids + 1 (with a character CNN), so that an all-zero row is a padding token.
"""

from __future__ import annotations

import io
import json
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ElmoOptionsError, ElmoWeightsError
from .config_reader import ConfigReader
from .cpu_matmul import initialize_in_logical_order, transposed_parameter
from .model import ElmoBiLM, StateMode
from .options import SUPPORTED_ACTIVATIONS, ElmoOptions
from .token_encoder import DEFAULT_CHUNK_TOKENS, Highway, affine
from .weights import atomic_write

CONFIG_FILE = "config.json"
CHAR_DICTIONARY = "char.dic"
WORD_DICTIONARY = "word.dic"
TOKEN_EMBEDDER_FILE = "token_embedder.pkl"
ENCODER_FILE = "encoder.pkl"
# The network config that save_efml writes beside config.json.
SAVED_NETWORK_CONFIG = "network.json"

BOS, EOS, BOW, EOW, OOV, PAD = "<bos>", "<eos>", "<bow>", "<eow>", "<oov>", "<pad>"
# A dictionary line with a single field is this character (their reader strips the line first).
IDEOGRAPHIC_SPACE = "\u3000"
# Tokens whose id rows a vocabulary keeps (cleared when full).
TOKEN_CACHE_SIZE = 200_000


def _released_config(word_dim: int) -> dict[str, Any]:
    return {
        "encoder": {"name": "elmo", "projection_dim": 512, "cell_clip": 3, "proj_clip": 3, "dim": 4096, "n_layers": 2},
        "token_embedder": {
            "name": "cnn",
            "activation": "relu",
            "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
            "n_highway": 2,
            "word_dim": word_dim,
            "char_dim": 50,
            "max_characters_per_token": 50,
        },
        "classifier": {"name": "sampled_softmax", "n_samples": 8192},
        "dropout": 0.1,
    }


# The network configs their package ships (``configs/``); released models' config.json names one
# of them by a path that the model zip usually lacks, so they are taken by file name.
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "cnn_50_100_512_4096_sample.json": _released_config(100),
    "cnn_0_100_512_4096_sample.json": _released_config(0),
}


@dataclass(frozen=True)
class EfmlConfig:
    """An ELMoForManyLangs network config (``token_embedder`` name ``cnn``, ``encoder`` name ``elmo``).

    ``char_dim == 0``: no character CNN; ``word_dim == 0``: no word embedding (characters only).
    ``extra`` keeps the other keys (``classifier``, ``dropout``, ...) for writing it back.
    """

    char_dim: int
    word_dim: int
    filters: tuple[tuple[int, int], ...]
    n_highway: int
    activation: str
    max_characters_per_token: int
    projection_dim: int
    lstm_dim: int
    n_layers: int
    cell_clip: float | None
    proj_clip: float | None
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def n_filters(self) -> int:
        return sum(n for _, n in self.filters)

    @property
    def token_dim(self) -> int:
        """Width of ``[word embedding; character features]``, the projection's input."""
        return self.word_dim + self.n_filters

    @classmethod
    def from_dict(cls, data: Any, source: str = "network config") -> EfmlConfig:
        reader = ConfigReader(data, source)
        fail, section, integer = reader.fail, reader.section, reader.integer

        encoder, embedder = section("encoder"), section("token_embedder")
        if str(encoder.get("name", "")).lower() != "elmo":
            raise fail(f"'encoder.name' must be 'elmo' (the ELMo biLM), found {encoder.get('name')!r}")
        if str(embedder.get("name", "")).lower() != "cnn":
            raise fail(
                f"'token_embedder.name' must be 'cnn' (their 'lstm' token embedder is not supported), "
                f"found {embedder.get('name')!r}"
            )
        char_dim = integer(embedder, "char_dim", "token_embedder", 0)
        word_dim = integer(embedder, "word_dim", "token_embedder", 0)
        if char_dim == 0 and word_dim == 0:
            raise fail("'token_embedder.char_dim' and 'word_dim' are both 0: the model has no input")
        max_chars = integer(embedder, "max_characters_per_token", "token_embedder", 3)
        filters: tuple[tuple[int, int], ...] = ()
        n_highway = 0
        activation = str(embedder.get("activation", "relu"))
        if char_dim > 0:
            filters = reader.filters(embedder.get("filters"), "token_embedder.filters", max_chars)
            n_highway = integer(embedder, "n_highway", "token_embedder", 0)
            if activation not in SUPPORTED_ACTIVATIONS:
                raise fail(f"'token_embedder.activation' must be one of {SUPPORTED_ACTIVATIONS}, found {activation!r}")
        known = {"encoder", "token_embedder"}
        return cls(
            char_dim=char_dim,
            word_dim=word_dim,
            filters=filters,
            n_highway=n_highway,
            activation=activation,
            max_characters_per_token=max_chars,
            projection_dim=integer(encoder, "projection_dim", "encoder", 1),
            lstm_dim=integer(encoder, "dim", "encoder", 1),
            n_layers=integer(encoder, "n_layers", "encoder", 1),
            cell_clip=reader.clip(encoder, "cell_clip", "encoder"),
            proj_clip=reader.clip(encoder, "proj_clip", "encoder"),
            extra=tuple((k, v) for k, v in data.items() if k not in known),
        )

    def to_dict(self) -> dict[str, Any]:
        """The network config layout their code reads."""
        data: dict[str, Any] = {
            "encoder": {
                "name": "elmo",
                "projection_dim": self.projection_dim,
                "cell_clip": self.cell_clip if self.cell_clip is not None else 0,
                "proj_clip": self.proj_clip if self.proj_clip is not None else 0,
                "dim": self.lstm_dim,
                "n_layers": self.n_layers,
            },
            "token_embedder": {
                "name": "cnn",
                "activation": self.activation,
                "filters": [list(f) for f in self.filters],
                "n_highway": self.n_highway,
                "word_dim": self.word_dim,
                "char_dim": self.char_dim,
                "max_characters_per_token": self.max_characters_per_token,
            },
        }
        data.update(self.extra)
        return data

    def to_options(self) -> ElmoOptions:
        """The biLM sizes: AllenNLP's ELMo biLSTM has skip connections from layer 2 on."""
        return ElmoOptions(
            char_embedding_dim=self.char_dim,
            filters=self.filters,
            n_highway=self.n_highway,
            activation=self.activation,
            lstm_dim=self.lstm_dim,
            projection_dim=self.projection_dim,
            n_layers=self.n_layers,
            cell_clip=self.cell_clip,
            proj_clip=self.proj_clip,
            use_skip_connections=True,
            max_characters_per_token=self.max_characters_per_token,
            use_projection=True,
        )


# ---- dictionaries and token ids ----


def parse_dictionary(text: str, source: str) -> dict[str, int]:
    """``token<TAB>id`` lines, read as their code reads them.

    Each line is stripped of surrounding whitespace first, so a line with one field is the
    ideographic space U+3000 (the only whitespace token). Lines split as ``str.splitlines``
    splits them (their ``codecs`` reader does). Blank lines are skipped; a later line for
    the same token wins.
    """
    entries: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.strip().split("\t")
        if fields == [""]:
            continue
        if len(fields) == 1:
            fields.insert(0, IDEOGRAPHIC_SPACE)
        if len(fields) != 2:
            raise ElmoWeightsError(
                f"{source}, line {number}: expected 'token<TAB>id', found {len(fields)} tab-separated fields"
            )
        token, raw_id = fields
        try:
            value = int(raw_id)
        except ValueError:
            raise ElmoWeightsError(f"{source}, line {number}: id {raw_id!r} of {token!r} is not an integer") from None
        if value < 0:
            raise ElmoWeightsError(f"{source}, line {number}: id {value} of {token!r} is negative")
        entries[token] = value
    return entries


def read_dictionary(path: str | Path) -> dict[str, int]:
    """A ``char.dic`` / ``word.dic`` file (see ``parse_dictionary``)."""
    path = Path(path)
    if not path.is_file():
        raise ElmoWeightsError(f"dictionary not found: {path} (the model's config calls for it)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ElmoWeightsError(f"{path}: not a UTF-8 dictionary ({err})") from None
    return parse_dictionary(text, str(path))


def format_dictionary(entries: Mapping[str, int], source: str = "dictionary") -> str:
    """The file text that ``parse_dictionary`` reads back as ``entries``."""
    lines = []
    for token, value in entries.items():
        readable = token == IDEOGRAPHIC_SPACE or (
            token != "" and token == token.strip() and "\t" not in token and token.splitlines() == [token]
        )
        if not readable:
            raise ElmoWeightsError(f"{source}: token {token!r} cannot be written as a 'token<TAB>id' line")
        lines.append(f"{token}\t{value}\n")
    return "".join(lines)


class EfmlVocabulary:
    """Tokens to id rows ``(W,)``: ``[word id + 1]`` if ``words``, then ``max_chars`` character ids + 1 if ``chars``."""

    def __init__(
        self,
        words: Mapping[str, int] | None,
        chars: Mapping[str, int] | None,
        max_characters_per_token: int,
        source: str = "model",
    ) -> None:
        if words is None and chars is None:
            raise ElmoWeightsError(f"{source}: a model needs a word or a character dictionary")
        self.words = dict(words) if words is not None else None
        self.chars = dict(chars) if chars is not None else None
        self.max_chars = max_characters_per_token
        if self.words is not None:
            self._require(self.words, (OOV, PAD), f"{source}: {WORD_DICTIONARY}")
            self.word_oov = self.words[OOV]
        if self.chars is not None:
            self._require(self.chars, (OOV, PAD, BOW, EOW, BOS, EOS), f"{source}: {CHAR_DICTIONARY}")
            self.char_oov, self.char_pad = self.chars[OOV], self.chars[PAD]
            # Their create_one_batch reads '<eow>' into the id it puts first and '<bow>' into the last.
            self.char_first, self.char_last = self.chars[EOW], self.chars[BOW]
        self.width = (1 if self.words is not None else 0) + (self.max_chars if self.chars is not None else 0)
        self._rows: dict[str, np.ndarray] = {}
        self.bos_ids = self.token_ids(BOS)
        self.eos_ids = self.token_ids(EOS)

    @staticmethod
    def _require(entries: Mapping[str, int], names: Sequence[str], where: str) -> None:
        missing = [name for name in names if name not in entries]
        if missing:
            raise ElmoWeightsError(f"{where} lacks the special entries {', '.join(missing)}")

    @property
    def n_words(self) -> int:
        return len(self.words) if self.words is not None else 0

    @property
    def n_chars(self) -> int:
        return len(self.chars) if self.chars is not None else 0

    def token_ids(self, token: str) -> np.ndarray:
        """The id row ``(W,)`` of one token, int64, read-only."""
        row = self._rows.get(token)
        if row is not None:
            return row
        text = token[: self.max_chars - 2] if len(token) + 2 > self.max_chars else token
        row = np.empty(self.width, dtype=np.int64)
        start = 0
        if self.words is not None:
            row[0] = self.words.get(text, self.word_oov) + 1
            start = 1
        if self.chars is not None:
            chars = np.full(self.max_chars, self.char_pad, dtype=np.int64)
            chars[0] = self.char_first
            if text in (BOS, EOS):
                chars[1], chars[2] = self.chars[text], self.char_last
            else:
                chars[1 : len(text) + 1] = [self.chars.get(c, self.char_oov) for c in text]
                chars[len(text) + 1] = self.char_last
            row[start:] = chars + 1
        row.setflags(write=False)
        if len(self._rows) >= TOKEN_CACHE_SIZE:
            self._rows.clear()
        self._rows[token] = row
        return row

    def batch_ids(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(B, N, W)`` LongTensor, all zeros past each sentence's end (no ``<bos>``/``<eos>``)."""
        max_len = max((len(s) for s in sentences), default=0)
        ids = np.zeros((len(sentences), max_len, self.width), dtype=np.int64)
        for row, sentence in enumerate(sentences):
            for col, token in enumerate(sentence):
                ids[row, col] = self.token_ids(token)
        return torch.from_numpy(ids)


# ---- the token encoder ----


class EfmlTokenEncoder(nn.Module):
    """Id rows ``(n, W)`` to token embeddings ``(n, P)``: ``proj([word emb; highway(CNN(chars))])``.

    Weights in this package's layout (``x @ W``); ``weights_from_files`` converts theirs.
    """

    def __init__(
        self,
        config: EfmlConfig,
        n_words: int,
        n_chars: int,
        char_pad: int,
        initialize: bool = True,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    ) -> None:
        super().__init__()
        self.max_chars = config.max_characters_per_token
        self.word_embedding = nn.Embedding(n_words, config.word_dim) if config.word_dim else None
        self.char_embedding = nn.Embedding(n_chars, config.char_dim) if config.char_dim else None
        self.convolutions = nn.ModuleList(nn.Conv1d(config.char_dim, n, w) for w, n in config.filters)
        self.highways = nn.ModuleList(Highway(config.n_filters, initialize) for _ in range(config.n_highway))
        self.activation = torch.relu if config.activation == "relu" else torch.tanh
        # stored transposed, as oneDNN multiplies it fastest (see cpu_matmul)
        self.projection_weight = transposed_parameter(config.token_dim, config.projection_dim)
        self.projection_bias = nn.Parameter(torch.zeros(config.projection_dim))
        self.char_pad = char_pad
        self.output_dim = config.projection_dim
        self.chunk_tokens = chunk_tokens
        if initialize:
            std = (1.0 / config.token_dim) ** 0.5
            initialize_in_logical_order(self.projection_weight, lambda w: nn.init.normal_(w, 0.0, std))

    def _characters(self, chars: torch.Tensor) -> torch.Tensor:
        """``(n, max_chars)`` character ids to ``(n, n_filters)``: max over positions, then the activation."""
        assert self.char_embedding is not None
        embedded = self.char_embedding(chars).transpose(1, 2)
        # Windows wholly in the trailing <pad> positions all hold the same input: the max over
        # them is the value of the first one, so a filter of width w needs only the first
        # (last non-pad position + 1 + w) positions (the same results as over all of them).
        positions = torch.arange(1, chars.shape[1] + 1, device=chars.device)
        used = int(((chars != self.char_pad) * positions).amax().item()) if chars.shape[0] else 0
        pooled = [
            conv(embedded[:, :, : min(self.max_chars, used + conv.kernel_size[0])]).amax(dim=2)
            for conv in self.convolutions
        ]
        return self.activation(torch.cat(pooled, dim=1))

    def _encode(self, ids: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.word_embedding is not None:
            parts.append(self.word_embedding(ids[:, 0]))
        if self.char_embedding is not None:
            chars = ids[:, 1:] if self.word_embedding is not None else ids
            x = torch.cat([self._characters(chunk) for chunk in chars.split(self.chunk_tokens)])
            for highway in self.highways:
                x = highway(x)
            parts.append(x)
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return affine(self.projection_bias, x, self.projection_weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(n, W)`` id rows (ids + 1, as ``EfmlVocabulary`` makes them) to ``(n, P)``."""
        ids = ids - 1
        if torch.is_grad_enabled() or ids.shape[0] <= self.chunk_tokens or self.char_embedding is None:
            return self._encode(ids)
        # Chunks of tokens of similar length, so the CNN skips more padding.
        chars = ids[:, -self.max_chars :]
        positions = torch.arange(1, chars.shape[1] + 1, device=ids.device)
        order = torch.argsort(((chars != self.char_pad) * positions).amax(dim=1), stable=True)
        encoded = self._encode(ids[order])
        return torch.empty_like(encoded).index_copy_(0, order, encoded)


class EfmlBiLM(ElmoBiLM):
    """An ELMoForManyLangs model: ``ElmoBiLM`` with their token front end and vocabulary."""

    def __init__(
        self, config: EfmlConfig, vocabulary: EfmlVocabulary, state: StateMode = "reset", initialize: bool = True
    ) -> None:
        if (config.word_dim > 0) != (vocabulary.words is not None) or (config.char_dim > 0) != (
            vocabulary.chars is not None
        ):
            raise ElmoWeightsError(
                f"the config (word_dim {config.word_dim}, char_dim {config.char_dim}) and the dictionaries "
                f"(words: {vocabulary.words is not None}, characters: {vocabulary.chars is not None}) disagree"
            )
        if vocabulary.max_chars != config.max_characters_per_token:
            raise ElmoWeightsError(
                f"the vocabulary's max_characters_per_token {vocabulary.max_chars} differs from the config's "
                f"{config.max_characters_per_token}"
            )
        char_pad = vocabulary.char_pad if vocabulary.chars is not None else 0
        encoder = EfmlTokenEncoder(config, vocabulary.n_words, vocabulary.n_chars, char_pad, initialize)
        super().__init__(
            config.to_options(),
            state,
            initialize,
            token_encoder=encoder,
            boundary_ids=(vocabulary.bos_ids, vocabulary.eos_ids),
        )
        self.config = config
        self.vocabulary = vocabulary
        # AllenNLP's LSTM bias already holds the forget gate's +1 (bilm-tf's files do not).
        for layer in (*self.lstm.forward_layers, *self.lstm.backward_layers):
            layer.forget_offset.zero_()

    def batch_ids(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        return self.vocabulary.batch_ids(sentences)


# ---- their weight files <-> this package's parameters ----


def _swap_gate_blocks(array: torch.Tensor, cell_dim: int) -> torch.Tensor:
    """Torch gate order (i, f, g, o) <-> TF order (i, g, f, o) along the last axis: swaps blocks 1 and 2."""
    C = cell_dim
    return torch.cat([array[..., :C], array[..., 2 * C : 3 * C], array[..., C : 2 * C], array[..., 3 * C :]], dim=-1)


def token_embedder_shapes(config: EfmlConfig, n_words: int, n_chars: int) -> dict[str, tuple[int, ...]]:
    """Every tensor ``token_embedder.pkl`` must hold, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    if config.word_dim:
        shapes["word_emb_layer.embedding.weight"] = (n_words, config.word_dim)
    if config.char_dim:
        shapes["char_emb_layer.embedding.weight"] = (n_chars, config.char_dim)
        for i, (width, n_out) in enumerate(config.filters):
            shapes[f"convolutions.{i}.weight"] = (n_out, config.char_dim, width)
            shapes[f"convolutions.{i}.bias"] = (n_out,)
        nf = config.n_filters
        for k in range(config.n_highway):
            shapes[f"highways._layers.{k}.weight"] = (2 * nf, nf)
            shapes[f"highways._layers.{k}.bias"] = (2 * nf,)
    shapes["projection.weight"] = (config.projection_dim, config.token_dim)
    shapes["projection.bias"] = (config.projection_dim,)
    return shapes


def encoder_shapes(config: EfmlConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor ``encoder.pkl`` must hold, with its shape."""
    P, C = config.projection_dim, config.lstm_dim
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(config.n_layers):
        for direction in ("forward", "backward"):
            prefix = f"{direction}_layer_{layer}"
            shapes[f"{prefix}.input_linearity.weight"] = (4 * C, P)
            shapes[f"{prefix}.state_linearity.weight"] = (4 * C, P)
            shapes[f"{prefix}.state_linearity.bias"] = (4 * C,)
            shapes[f"{prefix}.state_projection.weight"] = (P, C)
    return shapes


def _lstm_pairs(config: EfmlConfig) -> Iterator[tuple[str, str]]:
    for layer in range(config.n_layers):
        for direction in ("forward", "backward"):
            yield f"{direction}_layer_{layer}", f"lstm.{direction}_layers.{layer}"


def weights_from_files(
    config: EfmlConfig, token_embedder: Mapping[str, torch.Tensor], encoder: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Their two state dicts (checked) as ``EfmlBiLM`` parameters; every conversion is exact."""
    out: dict[str, torch.Tensor] = {}
    if config.word_dim:
        out["token_encoder.word_embedding.weight"] = token_embedder["word_emb_layer.embedding.weight"]
    if config.char_dim:
        out["token_encoder.char_embedding.weight"] = token_embedder["char_emb_layer.embedding.weight"]
        for i in range(len(config.filters)):
            for part in ("weight", "bias"):
                out[f"token_encoder.convolutions.{i}.{part}"] = token_embedder[f"convolutions.{i}.{part}"]
        nf = config.n_filters
        for k in range(config.n_highway):
            # AllenNLP: y = g * x + (1 - g) * relu(A x), g = sigmoid(B x); Highway gates the transform.
            weight, bias = token_embedder[f"highways._layers.{k}.weight"], token_embedder[f"highways._layers.{k}.bias"]
            out[f"token_encoder.highways.{k}.transform_weight"] = weight[:nf].t()
            out[f"token_encoder.highways.{k}.transform_bias"] = bias[:nf]
            out[f"token_encoder.highways.{k}.carry_weight"] = -weight[nf:].t()
            out[f"token_encoder.highways.{k}.carry_bias"] = -bias[nf:]
    out["token_encoder.projection_weight"] = token_embedder["projection.weight"].t()
    out["token_encoder.projection_bias"] = token_embedder["projection.bias"]
    C = config.lstm_dim
    for theirs, ours in _lstm_pairs(config):
        out[f"{ours}.input_weight"] = _swap_gate_blocks(encoder[f"{theirs}.input_linearity.weight"].t(), C)
        out[f"{ours}.hidden_weight"] = _swap_gate_blocks(encoder[f"{theirs}.state_linearity.weight"].t(), C)
        out[f"{ours}.bias"] = _swap_gate_blocks(encoder[f"{theirs}.state_linearity.bias"], C)
        out[f"{ours}.projection_weight"] = encoder[f"{theirs}.state_projection.weight"].t()
    return {name: tensor.contiguous() for name, tensor in out.items()}


def weights_to_files(model: EfmlBiLM) -> tuple[OrderedDict[str, torch.Tensor], OrderedDict[str, torch.Tensor]]:
    """The inverse of ``weights_from_files``: ``(token_embedder, encoder)`` state dicts in their layout."""
    config = model.config
    p = {name: t.detach().cpu().float() for name, t in model.named_parameters()}
    token: OrderedDict[str, torch.Tensor] = OrderedDict()
    if config.word_dim:
        token["word_emb_layer.embedding.weight"] = p["token_encoder.word_embedding.weight"]
    if config.char_dim:
        token["char_emb_layer.embedding.weight"] = p["token_encoder.char_embedding.weight"]
        for i in range(len(config.filters)):
            for part in ("weight", "bias"):
                token[f"convolutions.{i}.{part}"] = p[f"token_encoder.convolutions.{i}.{part}"]
        for k in range(config.n_highway):
            prefix = f"token_encoder.highways.{k}"
            token[f"highways._layers.{k}.weight"] = torch.cat(
                [p[f"{prefix}.transform_weight"].t(), -p[f"{prefix}.carry_weight"].t()]
            )
            token[f"highways._layers.{k}.bias"] = torch.cat([p[f"{prefix}.transform_bias"], -p[f"{prefix}.carry_bias"]])
    token["projection.weight"] = p["token_encoder.projection_weight"].t()
    token["projection.bias"] = p["token_encoder.projection_bias"]
    encoder: OrderedDict[str, torch.Tensor] = OrderedDict()
    C = config.lstm_dim
    for theirs, ours in _lstm_pairs(config):
        encoder[f"{theirs}.input_linearity.weight"] = _swap_gate_blocks(p[f"{ours}.input_weight"], C).t()
        encoder[f"{theirs}.state_linearity.weight"] = _swap_gate_blocks(p[f"{ours}.hidden_weight"], C).t()
        encoder[f"{theirs}.state_linearity.bias"] = _swap_gate_blocks(p[f"{ours}.bias"], C)
        encoder[f"{theirs}.state_projection.weight"] = p[f"{ours}.projection_weight"].t()
    for sd in (token, encoder):
        for name in sd:
            sd[name] = sd[name].contiguous().clone()
    return token, encoder


# ---- reading and writing a model directory ----


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A PyTorch state dict of plain tensors, loaded with ``weights_only=True`` (nothing in it runs)."""
    if not path.is_file():
        raise ElmoWeightsError(f"weight file not found: {path}")
    try:
        with warnings.catch_warnings():
            # Pickles of other protocols: torch warns, and its weights-only unpickler decides.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # whatever the restricted unpickler refuses or fails on
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ElmoWeightsError(
            f"{path}: not a plain PyTorch state dict of tensors (refused by torch.load(weights_only=True): "
            f"{first_line})"
        ) from None
    if not isinstance(data, Mapping):
        raise ElmoWeightsError(f"{path}: holds a {type(data).__name__}, expected a state dict (name -> tensor)")
    for name, value in data.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ElmoWeightsError(f"{path}: entry {name!r} is a {type(value).__name__}, expected a tensor")
    return dict(data)


def check_state_dict(path: Path, data: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...]], why: str):
    """Same names as ``shapes``, each of that shape, floating point and finite; else an error naming the tensor."""
    for name, shape in shapes.items():
        tensor = data.get(name)
        if tensor is None:
            raise ElmoWeightsError(f"{path}: missing tensor '{name}' (expected shape {shape} {why})")
        if tuple(tensor.shape) != shape:
            raise ElmoWeightsError(
                f"{path}: tensor '{name}' has shape {tuple(tensor.shape)}, expected {shape} {why}: "
                "config and weights disagree"
            )
        if not tensor.is_floating_point():
            raise ElmoWeightsError(f"{path}: tensor '{name}' has dtype {tensor.dtype}, expected float32")
        if not torch.isfinite(tensor).all():
            raise ElmoWeightsError(f"{path}: tensor '{name}' holds NaN or infinite values")
    unexpected = sorted(set(data) - set(shapes))
    if unexpected:
        raise ElmoWeightsError(f"{path}: unexpected tensor '{unexpected[0]}' ({why} has no place for it)")


def _read_json(path: Path, error: type[Exception]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: not a readable JSON file ({err})") from None


def read_network_config(directory: str | Path, has_word_embedding: bool | None = None) -> tuple[EfmlConfig, str]:
    """The model's network config and where it came from (a file, or a known config's name).

    ``config.json``'s ``config_path`` is read relative to the model directory, as their code
    does; if that file is missing, or the path is absolute, a file of the same name in the
    directory, else their package's config of that name (``KNOWN_CONFIGS``). Without a
    ``config_path``, the known config that matches ``has_word_embedding``.
    """
    directory = Path(directory)
    config_json = directory / CONFIG_FILE
    if not config_json.is_file():
        raise ElmoOptionsError(f"{directory}: not an ELMoForManyLangs model directory (no {CONFIG_FILE})")
    data = _read_json(config_json, ElmoOptionsError)
    if not isinstance(data, dict):
        raise ElmoOptionsError(f"{config_json}: expected a JSON object with 'config_path'")
    reference = data.get("config_path")
    if reference is None or (isinstance(reference, str) and not reference.strip()):
        if has_word_embedding is None:
            raise ElmoOptionsError(f"{config_json}: no 'config_path'")
        name = "cnn_50_100_512_4096_sample.json" if has_word_embedding else "cnn_0_100_512_4096_sample.json"
        return EfmlConfig.from_dict(KNOWN_CONFIGS[name], source=name), f"{name} (known config; no config_path)"
    if not isinstance(reference, str):
        raise ElmoOptionsError(f"{config_json}: 'config_path' must be a string, found {reference!r}")
    # Released config.json files use '/' even where the models were unpacked elsewhere.
    name = reference.replace("\\", "/").rsplit("/", 1)[-1]
    candidates = [] if Path(reference).is_absolute() else [directory / reference]
    candidates.append(directory / name)
    for candidate in candidates:
        if candidate.is_file():
            return EfmlConfig.from_dict(_read_json(candidate, ElmoOptionsError), source=str(candidate)), str(candidate)
    if name in KNOWN_CONFIGS:
        return EfmlConfig.from_dict(KNOWN_CONFIGS[name], source=name), f"{name} (known config)"
    raise ElmoOptionsError(
        f"{config_json}: config_path {reference!r} names no file in {directory}, and '{name}' is not one of "
        f"the known network configs ({', '.join(KNOWN_CONFIGS)})"
    )


def is_efml_directory(directory: str | Path) -> bool:
    """Whether ``directory`` looks like an ELMoForManyLangs model (``config.json`` and ``encoder.pkl``)."""
    directory = Path(directory)
    return (directory / CONFIG_FILE).is_file() and (directory / ENCODER_FILE).is_file()


def load_efml(model_dir: str | Path, *, state: StateMode = "reset", precision: str = "fp32") -> EfmlBiLM:
    """Load an ELMoForManyLangs model directory; returned in eval mode on the CPU.

    Every file is read and checked before the model is built. Errors name the file and the
    tensor, dictionary line or config key at fault.
    """
    directory = Path(model_dir)
    if not directory.is_dir():
        raise ElmoWeightsError(f"ELMoForManyLangs model directory not found: {directory}")
    token_file, encoder_file = directory / TOKEN_EMBEDDER_FILE, directory / ENCODER_FILE
    token_sd = read_state_dict(token_file)
    config, config_source = read_network_config(
        directory, has_word_embedding="word_emb_layer.embedding.weight" in token_sd
    )
    chars = read_dictionary(directory / CHAR_DICTIONARY) if config.char_dim else None
    words = read_dictionary(directory / WORD_DICTIONARY) if config.word_dim else None
    vocabulary = EfmlVocabulary(words, chars, config.max_characters_per_token, source=str(directory))
    _check_ids(directory / WORD_DICTIONARY, words)
    _check_ids(directory / CHAR_DICTIONARY, chars)
    why = f"from {config_source} and the dictionaries"
    check_state_dict(token_file, token_sd, token_embedder_shapes(config, vocabulary.n_words, vocabulary.n_chars), why)
    encoder_sd = read_state_dict(encoder_file)
    check_state_dict(encoder_file, encoder_sd, encoder_shapes(config), f"from {config_source}")
    weights = weights_from_files(config, token_sd, encoder_sd)
    del token_sd, encoder_sd  # the transposed originals: not kept while the model is built (memory)
    model = EfmlBiLM(config, vocabulary, state=state, initialize=False)
    # strict: every parameter is set (the model was built uninitialized).
    model.load_state_dict(weights, strict=True)
    model.precision = precision
    return model.eval()


def _check_ids(path: Path, entries: Mapping[str, int] | None) -> None:
    """Their embedding has one row per entry: every id must index one."""
    if entries is None:
        return
    bad = next(((token, i) for token, i in entries.items() if i >= len(entries)), None)
    if bad is not None:
        raise ElmoWeightsError(
            f"{path}: id {bad[1]} of {bad[0]!r} is out of range for {len(entries)} entries (ids must be 0..n-1)"
        )


def save_efml(model: EfmlBiLM, directory: str | Path) -> Path:
    """Write the model as an ELMoForManyLangs directory (their code reads it), each file atomically.

    Files: ``config.json`` (``config_path`` = ``network.json``), ``network.json``, the
    dictionaries, ``token_embedder.pkl`` and ``encoder.pkl`` (state dicts of plain tensors).
    """
    directory = Path(directory)
    token_sd, encoder_sd = weights_to_files(model)
    texts = {
        CONFIG_FILE: json.dumps({"config_path": SAVED_NETWORK_CONFIG}) + "\n",
        SAVED_NETWORK_CONFIG: json.dumps(model.config.to_dict(), indent=1, ensure_ascii=False) + "\n",
    }
    vocabulary = model.vocabulary
    if vocabulary.chars is not None:
        texts[CHAR_DICTIONARY] = format_dictionary(vocabulary.chars, CHAR_DICTIONARY)
    if vocabulary.words is not None:
        texts[WORD_DICTIONARY] = format_dictionary(vocabulary.words, WORD_DICTIONARY)
    blobs = {TOKEN_EMBEDDER_FILE: _tensor_bytes(token_sd), ENCODER_FILE: _tensor_bytes(encoder_sd)}
    for name, blob in [*((n, t.encode("utf-8")) for n, t in texts.items()), *blobs.items()]:
        atomic_write(directory / name, lambda tmp, data=blob: tmp.write_bytes(data))
    return directory


def _tensor_bytes(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(OrderedDict(state_dict), buffer)
    return buffer.getvalue()


# ---- in-memory form (for serializing a pipeline without files) ----


def efml_spec(model: EfmlBiLM) -> dict[str, Any]:
    """What besides the state dict rebuilds the model: config and dictionaries (JSON/msgpack-able)."""
    vocabulary = model.vocabulary
    return {
        "config": model.config.to_dict(),
        "chars": None if vocabulary.chars is None else [[t, i] for t, i in vocabulary.chars.items()],
        "words": None if vocabulary.words is None else [[t, i] for t, i in vocabulary.words.items()],
    }


def efml_from_spec(spec: Mapping[str, Any], state: StateMode = "reset", source: str = "serialized model") -> EfmlBiLM:
    """An uninitialized ``EfmlBiLM`` of ``efml_spec``'s sizes and dictionaries (load its state dict next)."""
    config = EfmlConfig.from_dict(spec["config"], source=source)
    chars = None if spec.get("chars") is None else {str(t): int(i) for t, i in spec["chars"]}
    words = None if spec.get("words") is None else {str(t): int(i) for t, i in spec["words"]}
    vocabulary = EfmlVocabulary(words, chars, config.max_characters_per_token, source=source)
    return EfmlBiLM(config, vocabulary, state=state, initialize=False)
