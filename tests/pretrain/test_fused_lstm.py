"""The fused two-direction training LSTM gives the layer-by-layer LSTM's outputs, states and gradients."""

from __future__ import annotations

import torch

from spacy_elmo.bilm.lstm import ProjectedLstmLayer
from spacy_elmo.pretrain.data import LMBatch
from spacy_elmo.pretrain.fused_lstm import bidirectional_layer
from spacy_elmo.pretrain.lm import BiLMLanguageModel
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
