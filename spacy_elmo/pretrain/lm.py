"""The biLM training objective: ELMo's encoder and LSTM stacks under an untied softmax over words.

As in bilm-tf: the token encoder (char CNN, highway, projection) is shared by both directions; the forward
and backward LSTM stacks are separate and read separate streams; dropout is applied to every LSTM layer's
input and to the top output; one softmax (``W (V, P)``, ``b (V)``) is shared by both directions; the loss is
``0.5 * (loss_forward + loss_backward)``. Training uses a sampled softmax with a log-uniform sampler (the
vocabulary is sorted by frequency), an adaptive softmax, or the full softmax; evaluation always uses the
exact normalised distribution (full softmax, or the adaptive softmax's exact log-probabilities).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..bilm.lstm import State
from ..bilm.model import ElmoBiLM
from ..bilm.options import ElmoOptions
from ..bilm.token_encoder import token_lengths
from .data import IGNORE_TARGET, LMBatch
from .fused_lstm import bidirectional_layer
from .training_encoder import distinct_rows, encode_tokens

SoftmaxKind = Literal["sampled", "adaptive", "full"]
SOFTMAX_KINDS: tuple[str, ...] = ("sampled", "adaptive", "full")


class LMOutput(NamedTuple):
    loss: torch.Tensor
    """``0.5 * (forward + backward)`` mean loss per target, the training objective."""
    forward_loss: torch.Tensor
    backward_loss: torch.Tensor
    states: list[State]
    """Final ``(h, c)`` per forward layer then per backward layer, detached: the next batch's initial state."""


def log_uniform_probabilities(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``P(k) = log((k + 2) / (k + 1)) / log(V + 1)``: TF's log-uniform (Zipfian) candidate sampler."""
    ids = ids.double()
    return (torch.log1p(1.0 / (ids + 1.0)) / math.log(vocab_size + 1.0)).float()


def sample_log_uniform(n: int, vocab_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` ids drawn with replacement from the log-uniform distribution (inverse CDF)."""
    uniform = torch.rand(n, generator=generator, dtype=torch.float64)
    ids = torch.floor(torch.exp(uniform * math.log(vocab_size + 1.0))).long() - 1
    return ids.clamp_(0, vocab_size - 1)


class BiLMLanguageModel(nn.Module):
    """``bilm`` (an ``ElmoBiLM``, the part that is exported) plus the softmax used only in training."""

    def __init__(
        self,
        options: ElmoOptions,
        vocab_size: int,
        dropout: float = 0.1,
        softmax: SoftmaxKind = "sampled",
        n_negative_samples: int = 8192,
        adaptive_cutoffs: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if softmax not in SOFTMAX_KINDS:
            raise ValueError(f"softmax must be one of {SOFTMAX_KINDS}, found {softmax!r}")
        self.bilm = ElmoBiLM(options)
        self.options = options
        self.vocab_size = vocab_size
        self.dropout = nn.Dropout(dropout)
        self.softmax_kind = softmax
        self.n_negative_samples = min(n_negative_samples, vocab_size)
        dim = options.projection_dim
        self.sampler: torch.Generator | None = None
        # Both directions' LSTMs through ``fused_lstm`` (same function, faster); False: layer by layer.
        self.fused_lstm = True
        # Distinct tokens through ``training_encoder`` (same function, faster); False: the encoder's own forward.
        self.fused_encoder = True
        # The sampled softmax's weight gradient as a sparse tensor of the rows it used (targets and negatives)
        # rather than a dense (V, P) one: Adagrad leaves a row with a zero gradient unchanged, so the update is
        # the same, without a pass over every row. Gradient clipping must then be ``train.clip_gradients``.
        self.sparse_softmax_gradient = False
        if softmax == "adaptive":
            cutoffs = adaptive_cutoffs or default_cutoffs(vocab_size)
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(dim, vocab_size, list(cutoffs), div_value=4.0)
        else:
            self.softmax_weight = nn.Parameter(torch.randn(vocab_size, dim) / math.sqrt(dim))
            self.softmax_bias = nn.Parameter(torch.zeros(vocab_size))

    # ------------------------------------------------------------------ encoder and LSTMs

    def encode(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(..., P)`` of char ids ``(..., 50)`` (on any device; the result is on the model's).

        Each distinct token is encoded once, shortest first (``training_encoder``: tokens of similar length
        share the char CNN's products and skip more of the padding), with the same result as a plain call.
        Without gradients (evaluation) the encoder's own inference path runs.
        """
        flat = char_ids.reshape(-1, char_ids.shape[-1])
        unique, inverse = distinct_rows(flat.cpu())
        order = torch.argsort(token_lengths(unique), stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.shape[0])
        tokens = unique[order].to(self.softmax_device)
        if self.fused_encoder and torch.is_grad_enabled():
            encoded = encode_tokens(self.bilm.token_encoder, tokens)
        else:
            encoded = self.bilm.token_encoder(tokens)
        embedded = encoded[rank[inverse].to(encoded.device)]
        return embedded.view(*char_ids.shape[:-1], -1)

    def run_direction(
        self, layers: nn.ModuleList, x: torch.Tensor, initial: list[State]
    ) -> tuple[torch.Tensor, list[State]]:
        """One direction's stack over full windows ``x (B, T, P)``; returns the top output ``(B, T, P)``.

        Dropout on each layer's input; with skip connections layer ``l >= 1`` adds its (dropped-out) input,
        as bilm-tf's ``DropoutWrapper(ResidualWrapper(cell))``.
        """
        batch, steps, _ = x.shape
        lengths = [steps] * batch
        finals: list[State] = []
        for index, layer in enumerate(layers):
            layer_input = self.dropout(x)
            output, final = layer(layer_input, lengths, initial[index])
            if self.options.use_skip_connections and index > 0:
                output = output + layer_input
            finals.append(final)
            x = output
        return self.dropout(x), finals

    def dropout_masks(self, batch: int, steps: int) -> list[torch.Tensor] | None:
        """The scaled dropout masks ``(2, T, B, P)`` of each layer's input then of the top output, or None
        (no dropout). Drawn as ``run_direction``'s ``nn.Dropout`` calls draw them (the forward stack's, then
        the backward one's, each ``(B, T, P)``), so both paths see the same masks from the same seed."""
        p = self.dropout.p
        if not self.training or p == 0.0:
            return None
        n_masks = self.options.n_layers + 1
        shape = (batch, steps, self.options.projection_dim)
        drawn = [torch.empty(shape).bernoulli_(1.0 - p).div_(1.0 - p) for _ in range(2 * n_masks)]
        return [torch.stack([drawn[k], drawn[n_masks + k]]).transpose(1, 2) for k in range(n_masks)]

    def run_directions(
        self, embedded: torch.Tensor, initial: list[State]
    ) -> tuple[torch.Tensor, torch.Tensor, list[State]]:
        """Both directions' stacks at once (``fused_lstm``); ``embedded (2, B, T, P)``, forward stream first.

        The same function as ``run_direction`` per direction, with the same dropout masks. Returns the top
        outputs ``(B, T, P)`` of the forward and the backward stack, and the final states (forward layers first).
        """
        n_layers = self.options.n_layers
        masks = self.dropout_masks(embedded.shape[1], embedded.shape[2])
        x = embedded.transpose(1, 2)  # (2, T, B, P): each step's rows contiguous inside the fused layer
        finals: list[tuple[State, State]] = []
        for index in range(n_layers):
            layer_input = x if masks is None else x * masks[index].to(x.device)
            layers = (self.bilm.lstm.forward_layers[index], self.bilm.lstm.backward_layers[index])
            output, final = bidirectional_layer(layers, layer_input, (initial[index], initial[n_layers + index]))
            if self.options.use_skip_connections and index > 0:
                output = output + layer_input
            finals.append(final)
            x = output
        top = (x if masks is None else x * masks[-1].to(x.device)).transpose(1, 2)
        return top[0], top[1], [f for f, _ in finals] + [b for _, b in finals]

    def zero_states(self, batch: int, device: torch.device | None = None) -> list[State]:
        P, C, L = self.options.projection_dim, self.options.lstm_dim, self.options.n_layers
        return [(torch.zeros(batch, P, device=device), torch.zeros(batch, C, device=device)) for _ in range(2 * L)]

    # ------------------------------------------------------------------ softmax

    def _sampled_losses(self, hiddens: list[torch.Tensor], targets: list[torch.Tensor]) -> list[torch.Tensor]:
        """bilm-tf's ``sampled_softmax_loss`` per stream: one set of log-uniform negatives per stream (drawn
        in stream order), logits corrected by ``-log(expected count)``, accidental hits removed.

        The softmax rows of every stream's targets and negatives are gathered in one lookup, so the backward
        pass builds one gradient of the softmax weight (dense, or sparse: ``sparse_softmax_gradient``).
        """
        n_sampled = self.n_negative_samples
        device = hiddens[0].device
        sampled = [sample_log_uniform(n_sampled, self.vocab_size, self.sampler).to(device) for _ in hiddens]
        ids = torch.cat([*targets, *sampled])
        rows = F.embedding(ids, self.softmax_weight, sparse=self.sparse_softmax_gradient)
        corrected_bias = self.softmax_bias[ids] - torch.log(n_sampled * log_uniform_probabilities(ids, self.vocab_size))
        sizes = [t.shape[0] for t in targets] + [n_sampled] * len(sampled)
        rows_of, bias_of = rows.split(sizes), corrected_bias.split(sizes)
        losses = []
        for k, (hidden, target) in enumerate(zip(hiddens, targets, strict=True)):
            negative = len(targets) + k
            true_logits = (hidden * rows_of[k]).sum(-1) + bias_of[k]
            sampled_logits = torch.addmm(bias_of[negative], hidden, rows_of[negative].t())
            sampled_logits.masked_fill_(sampled[k][None, :] == target[:, None], float("-inf"))  # addmm keeps no output
            # cross-entropy with the true class first: logsumexp over [true, sampled] - true
            log_normalizer = torch.logaddexp(true_logits, torch.logsumexp(sampled_logits, dim=1))
            losses.append((log_normalizer - true_logits).mean())
        return losses

    def target_losses(
        self, hiddens: list[torch.Tensor], targets: list[torch.Tensor], exact: bool
    ) -> list[torch.Tensor]:
        """Per stream, the mean loss over positions whose target is not ``IGNORE_TARGET``; ``hidden (N, P)``,
        ``targets (N,)``.

        ``exact``: the true normalised negative log-likelihood (evaluation) rather than the training estimate.
        """
        keep = [t != IGNORE_TARGET for t in targets]
        hiddens = [h[k] for h, k in zip(hiddens, keep, strict=True)]
        targets = [t[k] for t, k in zip(targets, keep, strict=True)]
        if self.softmax_kind == "adaptive":
            return [self.adaptive(h, t).loss for h, t in zip(hiddens, targets, strict=True)]
        if self.softmax_kind == "sampled" and not exact and self.n_negative_samples < self.vocab_size:
            return self._sampled_losses(hiddens, targets)
        return [
            F.cross_entropy(F.linear(h, self.softmax_weight, self.softmax_bias), t)
            for h, t in zip(hiddens, targets, strict=True)
        ]

    def target_loss(self, hidden: torch.Tensor, targets: torch.Tensor, exact: bool) -> torch.Tensor:
        """``target_losses`` of one stream."""
        return self.target_losses([hidden], [targets], exact)[0]

    # ------------------------------------------------------------------ forward

    def forward(self, forward_batch: LMBatch, backward_batch: LMBatch, states: list[State]) -> LMOutput:
        """Both LMs over one window each; ``states`` are the carried ``(h, c)`` (forward layers first).

        In training mode the loss is the training estimate (sampled or adaptive softmax); in eval mode it
        is the exact negative log-likelihood, so ``exp(loss)`` is the perplexity.
        """
        n_layers = self.options.n_layers
        char_ids = torch.stack([forward_batch.char_ids, backward_batch.char_ids])
        embedded = self.encode(char_ids)
        if self.fused_lstm:
            top_forward, top_backward, finals_all = self.run_directions(embedded, states)
        else:
            top_forward, finals_forward = self.run_direction(
                self.bilm.lstm.forward_layers, embedded[0], states[:n_layers]
            )
            top_backward, finals_backward = self.run_direction(
                self.bilm.lstm.backward_layers, embedded[1], states[n_layers:]
            )
            finals_all = finals_forward + finals_backward
        exact = not self.training
        dim = top_forward.shape[-1]
        device = top_forward.device
        # The softmax and loss in float32 whatever the autocast (``precision``) around the rest.
        with torch.autocast(device.type, enabled=False):
            forward_loss, backward_loss = self.target_losses(
                [top_forward.reshape(-1, dim).float(), top_backward.reshape(-1, dim).float()],
                [forward_batch.targets.to(device).view(-1), backward_batch.targets.to(device).view(-1)],
                exact,
            )
        finals = [(h.detach(), c.detach()) for h, c in finals_all]
        return LMOutput(0.5 * (forward_loss + backward_loss), forward_loss, backward_loss, finals)

    @property
    def softmax_device(self) -> torch.device:
        return self.bilm.device


def default_cutoffs(vocab_size: int) -> tuple[int, ...]:
    """Adaptive-softmax clusters: the ~2k most frequent words in the head, then 10k, 50k, the rest."""
    cutoffs = [c for c in (2_000, 10_000, 50_000) if c < vocab_size - 1]
    return tuple(cutoffs) or (max(1, vocab_size // 2),)
