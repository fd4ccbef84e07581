"""Training fast paths give the plain paths' values and gradients: the fused LSTM, the token encoding."""

from __future__ import annotations

import pytest
import torch

from spacy_elmo.bilm.lstm import ProjectedLstmLayer
from spacy_elmo.pretrain.data import LMBatch
from spacy_elmo.pretrain.fused_lstm import bidirectional_layer
from spacy_elmo.pretrain.lm import BiLMLanguageModel
from spacy_elmo.pretrain.precision import training_precision
from spacy_elmo.pretrain.presets import get_preset


def _layers(clip: float | None) -> tuple[ProjectedLstmLayer, ProjectedLstmLayer]:
    torch.manual_seed(0)
    layers = tuple(ProjectedLstmLayer(6, 8, 5, cell_clip=clip, proj_clip=clip) for _ in range(2))
    with torch.no_grad():
        for layer in layers:  # a non-zero bias, and weights large enough for the clips to bite
            layer.bias.uniform_(-1.0, 1.0)
            layer.input_weight.mul_(3.0)
            layer.hidden_weight.mul_(3.0)
    return layers  # type: ignore[return-value]


def _parameters(layers: tuple[ProjectedLstmLayer, ...]) -> list[torch.Tensor]:
    return [p for layer in layers for p in layer.parameters()]


def test_fused_layer_matches_two_projected_lstm_layers() -> None:
    for clip in (0.4, None):
        layers = _layers(clip)
        batch, steps = 3, 7
        generator = torch.Generator().manual_seed(1)
        inputs = torch.randn(2, batch, steps, 6, generator=generator, requires_grad=True)
        initial = [
            (torch.randn(batch, 5, generator=generator), torch.randn(batch, 8, generator=generator)) for _ in range(2)
        ]
        initial = [(h.requires_grad_(), c.requires_grad_()) for h, c in initial]
        # Weights on every output, so every gradient path is used (outputs and final h and c).
        out_w = torch.randn(2, batch, steps, 5, generator=generator)
        h_w, c_w = torch.randn(2, batch, 5, generator=generator), torch.randn(2, batch, 8, generator=generator)
        leaves = [inputs, *(t for state in initial for t in state), *_parameters(layers)]

        reference_loss = torch.zeros(())
        for d in range(2):
            out, (h, c) = layers[d](inputs[d], [steps] * batch, initial[d])
            reference_loss = reference_loss + (out * out_w[d]).sum() + (h * h_w[d]).sum() + (c * c_w[d]).sum()
        reference = torch.autograd.grad(reference_loss, leaves)

        out, finals = bidirectional_layer(layers, inputs.transpose(1, 2), (initial[0], initial[1]))
        out = out.transpose(1, 2)
        fused_loss = (out * out_w).sum()
        for d in range(2):
            fused_loss = fused_loss + (finals[d][0] * h_w[d]).sum() + (finals[d][1] * c_w[d]).sum()
        fused = torch.autograd.grad(fused_loss, leaves)

        if clip is not None:
            assert bool((out.abs() == clip).any()), "the projection clip was not exercised"
        torch.testing.assert_close(fused_loss, reference_loss, rtol=1e-5, atol=1e-5)
        for got, expected in zip(fused, reference, strict=True):
            assert float(expected.abs().max()) > 0
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_language_model_loss_and_gradients_equal_on_both_lstm_paths() -> None:
    preset = get_preset("tiny")
    torch.manual_seed(0)
    model = BiLMLanguageModel(preset.options, vocab_size=50, dropout=0.3, softmax="full")
    generator = torch.Generator().manual_seed(2)

    def batch() -> LMBatch:
        chars = torch.randint(1, 200, (4, 6, 50), generator=generator)
        return LMBatch(chars, torch.randint(0, 50, (4, 6), generator=generator))

    forward_batch, backward_batch = batch(), batch()
    states = [(torch.randn_like(h), torch.randn_like(c)) for h, c in model.zero_states(4)]
    results = []
    for fused in (False, True):
        model.fused_lstm = fused
        model.zero_grad()
        torch.manual_seed(5)  # the same dropout masks on both paths
        output = model(forward_batch, backward_batch, states)
        output.loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        results.append((output, grads))
    (old, old_grads), (new, new_grads) = results
    torch.testing.assert_close(new.loss, old.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new.forward_loss, old.forward_loss, rtol=1e-5, atol=1e-6)
    for (h_new, c_new), (h_old, c_old) in zip(new.states, old.states, strict=True):
        torch.testing.assert_close(h_new, h_old, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c_new, c_old, rtol=1e-5, atol=1e-6)
    assert old_grads.keys() == new_grads.keys()
    for name, grad in old_grads.items():
        torch.testing.assert_close(new_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_encode_gives_each_token_its_own_encoding_and_gradient() -> None:
    """Distinct tokens are encoded once, shortest first; values and gradients are those of a plain call."""
    torch.manual_seed(0)
    model = BiLMLanguageModel(get_preset("tiny").options, vocab_size=50)
    generator = torch.Generator().manual_seed(3)
    words = torch.full((5, 50), 261)  # padding char id
    for row, length in enumerate((9, 3, 14, 5, 3)):
        words[row, :length] = torch.randint(1, 200, (length,), generator=generator)
    char_ids = words[torch.tensor([[0, 1, 2, 1], [3, 4, 0, 2]])]  # (2, 4, 50) with repeats
    weights = torch.randn(2, 4, 16, generator=generator)

    encoded = model.encode(char_ids)
    (encoded * weights).sum().backward()
    grads = [p.grad.clone() for p in model.bilm.token_encoder.parameters()]
    model.zero_grad()
    plain = model.bilm.token_encoder(char_ids.reshape(-1, 50)).view(2, 4, -1)
    (plain * weights).sum().backward()

    torch.testing.assert_close(encoded, plain, rtol=1e-5, atol=1e-6)
    for got, p in zip(grads, model.bilm.token_encoder.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)


def test_bfloat16_precision_stays_close_to_float32_and_keeps_float32_gradients() -> None:
    torch.manual_seed(0)
    model = BiLMLanguageModel(get_preset("tiny").options, vocab_size=50, dropout=0.0, softmax="full")
    generator = torch.Generator().manual_seed(4)
    batches = [
        LMBatch(
            torch.randint(1, 200, (4, 6, 50), generator=generator), torch.randint(0, 50, (4, 6), generator=generator)
        )
        for _ in range(2)
    ]
    states = model.zero_states(4)
    results = []
    for precision in ("float32", "bfloat16"):
        model.zero_grad()
        with training_precision(precision):
            output = model(*batches, states)
        output.loss.backward()
        results.append((output.loss.detach(), [p.grad for p in model.parameters()]))
    (loss32, grads32), (loss16, grads16) = results
    assert loss16.dtype == torch.float32
    assert abs(float(loss16 - loss32)) < 0.02 * float(loss32)
    # bfloat16 keeps 8 bits of mantissa: about 1% off for most gradients, up to 9% for the char embedding
    for g32, g16 in zip(grads32, grads16, strict=True):
        assert g16.dtype == torch.float32
        assert float((g16 - g32).norm()) <= 0.15 * float(g32.norm()) + 1e-6


def _char_ids_of_lengths(lengths: list[int], generator: torch.Generator) -> torch.Tensor:
    """``(n, 50)`` char ids: begin/end-of-word marks around random characters, padding after (as ``chars``)."""
    from spacy_elmo.bilm.chars import BOW_CHAR, EOW_CHAR, PAD_CHAR

    rows = torch.full((len(lengths), 50), PAD_CHAR + 1)
    for row, length in enumerate(lengths):
        rows[row, 0] = BOW_CHAR + 1
        rows[row, 1 : length - 1] = torch.randint(1, 200, (length - 2,), generator=generator)
        rows[row, length - 1] = EOW_CHAR + 1
    return rows


def test_training_encoder_matches_the_token_encoder_with_gradients() -> None:
    """Every filter width, tokens from 3 to 50 positions (the widest filters' windows reach past position 50
    for the longest), repeated characters (tied windows): the values and every gradient of a plain call."""
    from spacy_elmo.bilm.options import ElmoOptions
    from spacy_elmo.bilm.token_encoder import TokenEncoder
    from spacy_elmo.pretrain.training_encoder import encode_tokens

    options = ElmoOptions(
        char_embedding_dim=4,
        filters=((1, 4), (2, 4), (3, 6), (4, 6), (5, 8), (6, 8), (7, 4)),
        n_highway=2,
        activation="relu",
        lstm_dim=16,
        projection_dim=8,
        n_layers=2,
        cell_clip=3.0,
        proj_clip=3.0,
        use_skip_connections=True,
        use_projection=True,
    )
    torch.manual_seed(0)
    encoder = TokenEncoder(options)
    generator = torch.Generator().manual_seed(7)
    lengths = [3, 5, 8, 9, 16, 17, 30, 40, 43, 44, 45, 46, 48, 49, 50, 50]
    char_ids = _char_ids_of_lengths(lengths, generator)
    char_ids[3, 1:8] = 42  # one repeated character: tied windows
    weights = torch.randn(len(lengths), 8, generator=generator)

    plain = encoder(char_ids)
    plain_grads = torch.autograd.grad((plain * weights).sum(), list(encoder.parameters()))
    fast = encode_tokens(encoder, char_ids)
    fast_grads = torch.autograd.grad((fast * weights).sum(), list(encoder.parameters()))

    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    for (name, _), got, expected in zip(encoder.named_parameters(), fast_grads, plain_grads, strict=True):
        assert float(expected.abs().max()) > 0, name
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6, msg=name)


def test_distinct_rows_and_their_inverse_rebuild_the_input() -> None:
    from spacy_elmo.pretrain.training_encoder import distinct_rows

    generator = torch.Generator().manual_seed(8)
    words = torch.randint(0, 262, (7, 50), generator=generator)
    picks = torch.tensor([3, 0, 3, 6, 1, 0, 3, 2, 5, 4, 6])
    unique, inverse = distinct_rows(words[picks])
    assert unique.shape == (7, 50)
    assert torch.equal(unique[inverse], words[picks])
    assert len({tuple(row.tolist()) for row in unique}) == 7


def test_sampled_softmax_equals_the_cross_entropy_of_true_and_sampled_logits() -> None:
    """Both streams' rows in one lookup, logsumexp in place of the concatenated logits: the loss and the
    gradients of the plain formula (bilm-tf's) with the same negatives."""
    from spacy_elmo.pretrain.lm import log_uniform_probabilities, sample_log_uniform

    torch.manual_seed(0)
    vocab, n_sampled = 40, 12
    model = BiLMLanguageModel(get_preset("tiny").options, vocab_size=vocab, n_negative_samples=n_sampled)
    with torch.no_grad():
        model.softmax_bias.uniform_(-1.0, 1.0)
    generator = torch.Generator().manual_seed(9)
    hiddens = [torch.randn(10, 16, generator=generator, requires_grad=True) for _ in range(2)]
    targets = [torch.randint(0, 6, (10,), generator=generator) for _ in range(2)]  # frequent ids: some hits

    model.sampler = torch.Generator().manual_seed(3)
    fast = model.target_losses(hiddens, targets, exact=False)
    fast_grads = torch.autograd.grad(sum(fast), [*hiddens, model.softmax_weight, model.softmax_bias])

    sampler = torch.Generator().manual_seed(3)
    plain, hits = [], 0
    for hidden, target in zip(hiddens, targets, strict=True):
        sampled = sample_log_uniform(n_sampled, vocab, sampler)
        log_counts = lambda ids: torch.log(n_sampled * log_uniform_probabilities(ids, vocab))  # noqa: E731
        true_logits = (hidden * model.softmax_weight[target]).sum(-1) + model.softmax_bias[target]
        sampled_logits = hidden @ model.softmax_weight[sampled].T + model.softmax_bias[sampled]
        accidental = sampled[None, :] == target[:, None]
        hits += int(accidental.sum())
        sampled_logits = (sampled_logits - log_counts(sampled)).masked_fill(accidental, float("-inf"))
        logits = torch.cat([(true_logits - log_counts(target))[:, None], sampled_logits], dim=1)
        plain.append(torch.nn.functional.cross_entropy(logits, torch.zeros_like(target)))
    plain_grads = torch.autograd.grad(sum(plain), [*hiddens, model.softmax_weight, model.softmax_bias])

    assert hits > 0, "no accidental hit was exercised"
    for got, expected in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for got, expected in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_sparse_softmax_gradients_give_the_dense_updates() -> None:
    """Three training steps with the sampled softmax's weight gradient sparse (clipped by ``clip_gradients``,
    updated by Adagrad's sparse path) end with the weights and optimiser state of the dense steps."""
    from spacy_elmo.pretrain.train import build_optimizer, training_step

    preset = get_preset("tiny")
    settings = preset.training
    generator = torch.Generator().manual_seed(11)

    def batch() -> LMBatch:
        chars = torch.randint(1, 200, (4, 6, 50), generator=generator)
        return LMBatch(chars, torch.randint(0, 40, (4, 6), generator=generator), torch.tensor([1, 0, 0, 1]).bool())

    batches = [(batch(), batch()) for _ in range(3)]
    runs = []
    for sparse in (False, True):
        torch.manual_seed(0)
        model = BiLMLanguageModel(preset.options, vocab_size=400, n_negative_samples=12)
        model.sparse_softmax_gradient = sparse
        model.sampler = torch.Generator().manual_seed(1)
        optimizer = build_optimizer(model, settings)
        parameters = list(model.parameters())
        states = model.zero_states(4)
        losses = []
        for pair in batches:
            torch.manual_seed(5)  # the same dropout masks in both runs
            output = training_step(model, optimizer, parameters, pair, states, settings)
            states = output.states
            losses.append(float(output.loss.detach()))
        sums = [optimizer.state[p]["sum"].clone() for p in parameters]
        softmax_index = next(k for k, p in enumerate(parameters) if p is model.softmax_weight)
        runs.append((losses, [p.detach().clone() for p in parameters], sums))
    (dense_losses, dense_weights, dense_sums), (sparse_losses, sparse_weights, sparse_sums) = runs
    assert sparse_losses == pytest.approx(dense_losses, rel=1e-6)
    for got, expected in zip(sparse_weights + sparse_sums, dense_weights + dense_sums, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    # only some softmax rows were used: the sparse update skipped the rest and left them as they were
    untouched = (dense_sums[softmax_index] == settings.initial_accumulator).all(dim=1)
    assert 0 < int(untouched.sum()) < 400


def test_clip_gradients_is_clip_grad_norm_on_dense_gradients() -> None:
    from spacy_elmo.pretrain.train import clip_gradients

    generator = torch.Generator().manual_seed(12)
    for scale in (0.01, 10.0):  # below and above the limit
        parameters = [torch.nn.Parameter(torch.zeros(shape)) for shape in ((3, 4), (5,), (2, 2))]
        reference = [torch.nn.Parameter(torch.zeros(p.shape)) for p in parameters]
        for p, r in zip(parameters, reference, strict=True):
            p.grad = torch.randn(p.shape, generator=generator) * scale
            r.grad = p.grad.clone()
        total = clip_gradients(parameters, 1.0)
        expected_total = torch.nn.utils.clip_grad_norm_(reference, 1.0)
        torch.testing.assert_close(total, expected_total)
        for p, r in zip(parameters, reference, strict=True):
            torch.testing.assert_close(p.grad, r.grad)


def test_the_pretrain_command_keeps_freed_memory_on_glibc() -> None:
    """In a child process (the setting is process-wide): glibc takes both thresholds; elsewhere a no-op."""
    import platform
    import subprocess
    import sys

    code = "from spacy_elmo.pretrain.allocator import keep_freed_memory; print(keep_freed_memory())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    is_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert done.stdout.strip() == str(is_glibc)
