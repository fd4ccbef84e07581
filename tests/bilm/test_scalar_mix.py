import numpy as np
import pytest
import torch

from spacy_elmo import ScalarMix


def _layers() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    layers = torch.randn(3, 2, 4, 5)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    return layers * mask[None, :, :, None], mask


def test_default_mix_is_the_average_and_gamma_scales():
    layers, mask = _layers()
    mix = ScalarMix(3)
    torch.testing.assert_close(mix(layers, mask), layers.mean(0))
    with torch.no_grad():
        mix.gamma.fill_(2.0)
        mix.weights.copy_(torch.tensor([0.0, float(np.log(2.0)), float(np.log(5.0))]))
    expected = 2.0 * (layers[0] * 1 + layers[1] * 2 + layers[2] * 5) / 8
    torch.testing.assert_close(mix(layers, mask), expected)


def test_fixed_weights_are_not_trained():
    layers, mask = _layers()
    mix = ScalarMix(3, fixed_weights=[-9e10, 1.0, -9e10])
    assert not mix.weights.requires_grad and mix.gamma.requires_grad
    torch.testing.assert_close(mix(layers, mask), layers[1])
    with pytest.raises(ValueError, match="needs 3 values"):
        ScalarMix(3, fixed_weights=[1.0, 2.0])


def test_layer_norm_uses_one_mean_and_variance_per_layer_over_unmasked_elements():
    layers, mask = _layers()
    out = ScalarMix(3, do_layer_norm=True)(layers, mask)
    expected = []
    for layer in layers:
        values = layer[mask]
        expected.append((layer - values.mean()) / torch.sqrt(values.var(unbiased=False) + 1e-13))
    torch.testing.assert_close(out, torch.stack(expected).mean(0))


def test_dropout_only_in_training():
    layers, mask = _layers()
    mix = ScalarMix(3, dropout=0.5)
    torch.testing.assert_close(mix.eval()(layers, mask), layers.mean(0))
    assert (mix.train()(layers, mask) == 0).sum() > (layers.mean(0) == 0).sum()
