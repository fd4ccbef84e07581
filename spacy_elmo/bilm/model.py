"""The ELMo biLM: token encoder plus bidirectional LSTM stack, over sentences."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from ..errors import ElmoPerformanceWarning
from .chars import BOS_IDS, EOS_IDS, batch_to_char_ids
from .cpu_matmul import blas_owns_threads, check_precision, matmul_precision, precision_problem
from .lstm import ElmoLstm
from .memory import release_free_memory
from .options import ElmoOptions
from .token_encoder import DEFAULT_CACHE_WORDS, TokenEncoder, WordVectorCache

StateMode = Literal["reset", "stateful"]
STATE_MODES: tuple[str, ...] = ("reset", "stateful")


class BiLMOutput(NamedTuple):
    """``layers``: ``(n_layers + 1, B, N, 2P)``, zero past each sentence's end;
    ``mask``: ``(B, N)`` bool, true at real tokens."""

    layers: torch.Tensor
    mask: torch.Tensor


def check_state_mode(state: str) -> StateMode:
    if state not in STATE_MODES:
        raise ValueError(f"state must be one of {STATE_MODES}, found {state!r}")
    return state  # type: ignore[return-value]


def check_sentences(sentences: object) -> list[Sequence[str]]:
    """Reject input that is not a list of token lists, naming the bad item."""
    if isinstance(sentences, str) or not isinstance(sentences, Sequence):
        raise TypeError(f"sentences must be a list of token lists, found {type(sentences).__name__}")
    for i, sentence in enumerate(sentences):
        if isinstance(sentence, str) or not isinstance(sentence, Sequence):
            raise TypeError(f"sentence {i} must be a list of token strings, found {type(sentence).__name__}")
        for j, token in enumerate(sentence):
            if not isinstance(token, str):
                raise TypeError(f"sentence {i}, token {j} must be a string, found {type(token).__name__}")
    return list(sentences)


class ElmoBiLM(nn.Module):
    """ELMo's bidirectional language model (without softmax), as in bilm-tf.

    ``state="reset"``: every sentence starts from a zero LSTM state, so its
    vectors do not depend on the rest of the batch or on earlier calls.
    ``state="stateful"``: the reference behaviour; batch row ``r`` starts from
    the final state row ``r`` reached in the previous call (see ``reset_states``).

    In inference (eval mode, no gradient into the token encoder) the token encoder's
    output for each distinct token is kept in an LRU cache of ``word_cache_size``
    entries (0: no cache), keyed by the token's input id row (bilm-tf: its character
    ids): only tokens not seen recently go through the token encoder (CNN, highway
    layers, projection). It empties itself when the weights change.
    """

    def __init__(
        self,
        options: ElmoOptions,
        state: StateMode = "reset",
        initialize: bool = True,
        word_cache_size: int = DEFAULT_CACHE_WORDS,
        *,
        token_encoder: nn.Module | None = None,
        boundary_ids: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``initialize=False`` leaves the parameters unset, for a caller that assigns them all.

        Another input format (``efml``) passes its own ``token_encoder`` (token id rows
        ``(n, W)`` to ``(n, P)``) and the id rows ``(W,)`` of its ``<S>`` and ``</S>``, and
        overrides ``batch_ids``; the default is bilm-tf's character ids and ``TokenEncoder``.
        """
        super().__init__()
        self.options = options
        self.state = check_state_mode(state)
        self.token_encoder = TokenEncoder(options, initialize=initialize) if token_encoder is None else token_encoder
        self.lstm = ElmoLstm(options, initialize=initialize)
        self.word_cache = WordVectorCache(word_cache_size)
        bos_ids, eos_ids = (BOS_IDS, EOS_IDS) if boundary_ids is None else boundary_ids
        self.register_buffer("bos_ids", torch.from_numpy(np.array(bos_ids, dtype=np.int64)), persistent=False)
        self.register_buffer("eos_ids", torch.from_numpy(np.array(eos_ids, dtype=np.int64)), persistent=False)
        self.precision = "fp32"

    @property
    def precision(self) -> str:
        """Matrix products of CPU inference: ``fp32`` (exact, default), ``bf16`` or ``int8``
        (faster, approximate; see ``cpu_matmul.matmul_precision``). Training is always fp32."""
        return self._precision

    @precision.setter
    def precision(self, name: str) -> None:
        self._precision = check_precision(name)
        problem = precision_problem(name)
        if problem is not None:
            warnings.warn(problem, ElmoPerformanceWarning, stacklevel=2)
        self.word_cache.clear()  # its vectors were made at the old precision

    @property
    def word_cache_size(self) -> int:
        """Entries of the token encoder's inference cache (0: none); setting it trims the cache."""
        return self.word_cache.max_words

    @word_cache_size.setter
    def word_cache_size(self, entries: int) -> None:
        self.word_cache.resize(entries)

    @property
    def output_dim(self) -> int:
        """``2P``: the width of every output layer."""
        return self.options.output_dim

    @property
    def n_output_layers(self) -> int:
        return self.options.n_output_layers

    @property
    def device(self) -> torch.device:
        return self.bos_ids.device

    def reset_states(self) -> None:
        """Zero the carried LSTM state of stateful mode."""
        self.lstm.reset_states()

    def clear_caches(self) -> None:
        """Empty the inference cache of word vectors (it also empties itself when weights change)."""
        self.word_cache.clear()

    def batch_ids(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """The input of ``forward`` for tokenized sentences: ``(B, N, W)`` token id rows,
        all zeros past a sentence's end (bilm-tf: ``W = 50`` character ids)."""
        return batch_to_char_ids(sentences)

    def embed_tokens(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Context-insensitive embeddings: ``(n, W)`` id rows (bilm-tf: 50 char ids) to ``(n, P)``."""
        return self.token_encoder(char_ids)

    def forward(self, char_ids: torch.Tensor) -> BiLMOutput:
        """Run the biLM over a batch of sentences.

        Args:
            char_ids: ``(B, N, W)`` from ``batch_ids`` (``W = 50`` character ids for
                bilm-tf), without ``<S>`` and ``</S>``; all-zero rows are padding tokens.

        Returns:
            ``BiLMOutput`` with ``layers (n_layers + 1, B, N, 2P)``: layer 0 is
            the token embedding duplicated to ``2P``, then one layer per LSTM.
        """
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        inference_on_cpu = not needs_grad and self.device.type == "cpu"
        precision = self.precision if inference_on_cpu else "fp32"
        with blas_owns_threads(active=inference_on_cpu), matmul_precision(precision):
            output = self._forward(char_ids, inference_on_cpu)
        if inference_on_cpu:
            release_free_memory()
        return output

    def _forward(self, char_ids: torch.Tensor, inference_on_cpu: bool = False, packed: bool = False) -> BiLMOutput:
        """``forward``; with ``packed`` (no autograd) ``layers`` is ``(n_layers + 1, n_real, 2P)``:
        only the real tokens, row after row (``mask``'s order), in a buffer of exactly that size."""
        batch, n_max, _ = char_ids.shape
        char_ids = char_ids.to(self.device)
        mask = (char_ids > 0).any(-1)
        lengths = mask.sum(1)
        # Each distinct token is encoded once; <S> and </S> go first.
        tokens = torch.cat([self.bos_ids[None], self.eos_ids[None], char_ids[mask]])
        unique, inverse = torch.unique(tokens, dim=0, return_inverse=True)
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.token_encoder.parameters())
        if needs_grad or self.training:
            encoded = self.token_encoder(unique)
        else:
            encoded = self.word_cache.encode(self.token_encoder, unique)
        embedded = encoded[inverse]
        del encoded, unique, inverse
        dim = embedded.shape[1]
        if inference_on_cpu:
            release_free_memory()  # the encoder's temporaries, before the LSTM makes its own

        rows = torch.arange(batch, device=self.device)
        x = embedded.new_zeros(batch, n_max + 2, dim)
        x[:, 0] = embedded[0]
        x[rows, lengths + 1] = embedded[1]
        x[:, 1 : n_max + 1][mask] = embedded[2:]
        stateful = self.state == "stateful"
        fast = not torch.is_grad_enabled() or not any(p.requires_grad for p in self.parameters())

        if packed and fast:
            # Exactly the real tokens: no padded (B, N) buffer of all layers.
            layers = x.new_empty(1 + self.options.n_layers, int(lengths.sum()), 2 * dim)
            layers[0, :, :dim] = embedded[2:]
            layers[0, :, dim:] = embedded[2:]
            del embedded

            def write_packed(k: int, forward: torch.Tensor, backward: torch.Tensor) -> None:
                layers[k + 1, :, :dim] = forward[:, 1 : n_max + 1][mask]
                layers[k + 1, :, dim:] = backward[:, 1 : n_max + 1][mask]

            self.lstm(x, lengths + 2, stateful=stateful, emit=write_packed)
            return BiLMOutput(layers, mask)
        del embedded
        if fast:
            # The layers are written into one buffer over all model positions, so that no
            # stacked or masked copy of all layers is made. Output position t is model
            # position t + 1 (no <S>): the result is a view.
            buffer = x.new_empty(1 + self.options.n_layers, batch, n_max + 2, 2 * dim)

            def write_padded(k: int, forward: torch.Tensor, backward: torch.Tensor) -> None:
                buffer[k + 1, :, :, :dim] = forward
                buffer[k + 1, :, :, dim:] = backward

            self.lstm(x, lengths + 2, stateful=stateful, emit=write_padded)
        else:
            lstm_layers = self.lstm(x, lengths + 2, stateful=stateful)
            buffer = torch.stack([x.new_zeros(batch, n_max + 2, 2 * dim), *lstm_layers])
            del lstm_layers
        layers = buffer[:, :, 1 : n_max + 1]
        layers[0, :, :, :dim] = x[:, 1 : n_max + 1]
        layers[0, :, :, dim:] = x[:, 1 : n_max + 1]
        # Past each sentence's end everything is zero but </S> at position `length`.
        short = (lengths < n_max).nonzero().squeeze(1)
        layers[:, short, lengths[short]] = 0.0
        return BiLMOutput(layers, mask)

    def embed_sentences(self, sentences: Sequence[Sequence[str]], batch_size: int = 64) -> list[np.ndarray]:
        """All layers for each sentence: float32 arrays ``(n_layers + 1, n_tokens, 2P)``.

        Reset mode sorts sentences by length into batches (results come back in
        input order). Stateful mode runs consecutive batches in input order, so
        sentence ``i * batch_size + r`` is always in row ``r``.
        """
        sentences = check_sentences(sentences)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, found {batch_size}")
        if self.state == "stateful":
            order = list(range(len(sentences)))
        else:
            order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        results: list[np.ndarray] = [np.empty(0)] * len(sentences)
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                layers = self._embed_packed(self.batch_ids([sentences[i] for i in indices]))
                offset = 0
                for i in indices:
                    results[i] = np.ascontiguousarray(layers[:, offset : offset + len(sentences[i])])
                    offset += len(sentences[i])
                del layers
        return results

    def _embed_packed(self, char_ids: torch.Tensor) -> np.ndarray:
        """``(n_layers + 1, n_real, 2P)`` float32 for a batch: the real tokens row after row."""
        inference_on_cpu = self.device.type == "cpu"
        precision = self.precision if inference_on_cpu else "fp32"
        with blas_owns_threads(active=inference_on_cpu), matmul_precision(precision):
            layers = self._forward(char_ids, inference_on_cpu, packed=True).layers
        if inference_on_cpu:
            release_free_memory()
        return layers.float().cpu().numpy()
