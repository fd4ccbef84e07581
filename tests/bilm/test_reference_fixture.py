"""Parity with the outputs of the original TensorFlow ELMo (AllenNLP's fixture)."""

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo import load_bilm
from spacy_elmo.bilm.chars import word_to_char_ids

from ..conftest import FIXTURE_DIR, OPTIONS_FILE, WEIGHT_FILE

ATOL = 1e-5
# OpenBLAS picks its kernels by matrix size, so a row's rounding can depend on the batch
# it is in (a few float32 ulps: 1.2e-6 seen at values near 2.7).
BATCH_ROUNDING = 5e-6


def test_stateful_top_layer_matches_reference_for_all_30_sentences(fixture_sentences, expected_top_layers):
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE, state="stateful")
    worst = 0.0
    for i in range(10):
        batch = [fixture_sentences[k][i].split() for k in range(3)]
        outputs = model.embed_sentences(batch, batch_size=3)
        for k in range(3):
            assert outputs[k].shape == (3, len(batch[k]), 32)
            worst = max(worst, float(np.abs(outputs[k][2] - expected_top_layers[k][i]).max()))
    assert worst < ATOL


def test_context_free_token_embeddings_match_reference():
    words = [w for w in (FIXTURE_DIR / "vocab_test.txt").read_text().split("\n") if w]
    assert len(words) == 458
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    with torch.no_grad():
        ids = torch.from_numpy(np.stack([word_to_char_ids(w) for w in words]))
        embeddings = model.embed_tokens(ids).numpy()
    with h5py.File(FIXTURE_DIR / "elmo_token_embeddings.hdf5", "r") as f:
        expected = f["embedding"][()]
    np.testing.assert_allclose(embeddings, expected, atol=ATOL, rtol=0)


def test_reset_mode_matches_reference_where_the_reference_starts_from_zero(fixture_sentences, expected_top_layers):
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)  # reset is the default
    outputs = model.embed_sentences([s.split() for s in fixture_sentences[1]])
    np.testing.assert_allclose(outputs[0][2], expected_top_layers[1][0], atol=ATOL, rtol=0)
    # Later sentences differ: the reference carried state from the previous sentence.
    assert np.abs(outputs[1][2] - expected_top_layers[1][1]).max() > 1e-2


def test_reset_mode_does_not_depend_on_batch_or_history(fixture_sentences):
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    sentences = [s.split() for stream in fixture_sentences for s in stream]
    alone = [model.embed_sentences([s])[0] for s in sentences[:6]]
    for batch_size in (1, 4, 30):
        together = model.embed_sentences(sentences, batch_size=batch_size)
        for a, b in zip(alone, together[:6], strict=True):
            np.testing.assert_allclose(a, b, atol=BATCH_ROUNDING, rtol=0)
    reversed_order = model.embed_sentences(sentences[::-1], batch_size=7)[::-1]
    for a, b in zip(together, reversed_order, strict=True):
        np.testing.assert_allclose(a, b, atol=BATCH_ROUNDING, rtol=0)


def test_stateful_mode_depends_on_history_until_reset(fixture_sentences, expected_top_layers):
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE, state="stateful")
    batch = [fixture_sentences[k][0].split() for k in range(3)]
    first = model.embed_sentences(batch, batch_size=3)
    second = model.embed_sentences(batch, batch_size=3)
    assert np.abs(first[0] - second[0]).max() > 1e-2
    model.reset_states()
    again = model.embed_sentences(batch, batch_size=3)
    for k in range(3):
        np.testing.assert_array_equal(first[k], again[k])
        np.testing.assert_allclose(first[k][2], expected_top_layers[k][0], atol=ATOL, rtol=0)


def test_stateful_smaller_batch_leaves_other_rows_untouched(fixture_sentences, expected_top_layers):
    """bilm-tf's own check: after batches of 3, a batch of 2 leaves row 2's state alone."""
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE, state="stateful")
    model.embed_sentences([fixture_sentences[k][0].split() for k in range(3)], batch_size=3)
    model.embed_sentences([fixture_sentences[k][1].split() for k in range(2)], batch_size=2)
    row2 = model.embed_sentences([fixture_sentences[k][2].split() for k in range(3)], batch_size=3)[2]
    # Row 2 continues from sentence 0 of its stream, as if sentence 1 had been skipped:
    model.reset_states()
    model.embed_sentences([fixture_sentences[k][0].split() for k in range(3)], batch_size=3)
    skipped = model.embed_sentences([fixture_sentences[k][2].split() for k in range(3)], batch_size=3)[2]
    np.testing.assert_array_equal(row2, skipped)


def test_empty_and_padded_sentences(fixture_sentences):
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    outputs = model.embed_sentences([[], ["a"], fixture_sentences[0][0].split()])
    assert outputs[0].shape == (3, 0, 32) and outputs[0].dtype == np.float32
    assert outputs[1].shape == (3, 1, 32)
    with torch.no_grad():
        layers = model(torch.zeros(2, 3, 50, dtype=torch.long)).layers
    assert layers.shape == (3, 2, 3, 32) and not layers.any()


def test_bad_sentence_input_names_the_item():
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    with pytest.raises(TypeError, match="sentence 1 must be a list"):
        model.embed_sentences([["ok"], "not tokenized"])
    with pytest.raises(TypeError, match="sentence 0, token 1"):
        model.embed_sentences([["ok", 3]])
