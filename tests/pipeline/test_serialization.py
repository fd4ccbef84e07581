"""Saving and loading the component, and Docs that carry ELMo vectors across serialization."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import spacy
import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.util import load_model_from_config

from spacy_elmo import ElmoError, restore_vectors
from spacy_elmo.bilm import read_options
from spacy_elmo.bilm.weights import read_weight_arrays
from spacy_elmo.layers.bilm_model import bilm_from_files, get_bilm, get_settings

from ..elmo_helpers import (
    LAYER_WIDTH,
    N_LAYERS,
    copy_fixture_weights,
    make_nlp,
)

TEXTS = ["The bank by the river flooded .", "", "She keeps her money in a bank .", "Hi"]


def test_to_disk_and_spacy_load_without_the_original_files(tmp_path: Path) -> None:
    weights = copy_fixture_weights(tmp_path / "weights")
    nlp = make_nlp(weights, mix="concat", state="reset")
    expected = [nlp(text).tensor.copy() for text in TEXTS]
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(weights)
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("elmo").mix == "concat"
    for text, tensor in zip(TEXTS, expected, strict=True):
        doc = loaded(text)
        assert doc.tensor.shape == (len(doc), 3 * LAYER_WIDTH)
        np.testing.assert_array_equal(doc.tensor, tensor)
    # The saved weight file is in the reference layout, bit for bit the original weights.
    saved = tmp_path / "pipeline" / "elmo"
    options = read_options(saved / "options.json")
    _, arrays = read_weight_arrays(saved / "weights.hdf5", options)
    _, original = read_weight_arrays(
        Path(__file__).resolve().parents[1] / "fixtures" / "elmo" / "lm_weights.hdf5", options
    )
    assert arrays.keys() == original.keys()
    assert all(np.array_equal(arrays[k], original[k]) for k in arrays)


def _from_config_with_weights(nlp: Language, weights: str) -> Language:
    config = nlp.config.copy()
    config["components"]["elmo"]["model"]["weights"] = weights
    return spacy.util.load_model_from_config(config)


def test_from_disk_into_a_blank_pipeline(nlp: Language, tmp_path: Path) -> None:
    expected = nlp(TEXTS[0]).tensor
    nlp.to_disk(tmp_path / "p")
    # Built from a config (as spacy.load does), a weights path that is gone is not an error: from_disk fills the biLM.
    other = _from_config_with_weights(nlp, str(tmp_path / "does-not-exist"))
    other.from_disk(tmp_path / "p")
    np.testing.assert_array_equal(other(TEXTS[0]).tensor, expected)


def test_to_bytes_and_from_bytes(nlp: Language, tmp_path: Path) -> None:
    expected = nlp(TEXTS[2]).tensor
    data = nlp.to_bytes()
    other = _from_config_with_weights(nlp, str(tmp_path / "gone"))
    other.from_bytes(data)
    np.testing.assert_array_equal(other(TEXTS[2]).tensor, expected)


def test_saved_weights_that_do_not_match_their_options_are_a_clear_error(nlp: Language, tmp_path: Path) -> None:
    nlp.to_disk(tmp_path / "p")
    options = tmp_path / "p" / "elmo" / "options.json"
    options.write_text(options.read_text().replace('"projection_dim": 16', '"projection_dim": 8'))
    with pytest.raises(ElmoError, match=r"weights.hdf5.*expected.*options and weights disagree"):
        spacy.load(tmp_path / "p")
    shutil.rmtree(tmp_path / "p" / "elmo")
    (tmp_path / "p" / "elmo").mkdir()
    with pytest.raises(ElmoError, match=r"lacks options.json or weights.hdf5"):
        spacy.load(tmp_path / "p")


def test_saved_mix_that_does_not_fit_the_weights(weights_dir: Path, tmp_path: Path) -> None:
    nlp = make_nlp(weights_dir)
    nlp("warm up")
    nlp.to_disk(tmp_path / "p")
    with pytest.raises(ElmoError, match="'mix' has 2 weights but the biLM has 3 layers"):
        spacy.load(tmp_path / "p", config={"components": {"elmo": {"mix": [0.5, 0.5]}}})


def test_docbin_round_trip_and_restore(nlp: Language) -> None:
    docs = list(nlp.pipe(TEXTS))
    data = DocBin(docs=docs, store_user_data=True).to_bytes()
    loaded = list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    for original, doc in zip(docs, loaded, strict=True):
        assert "vector" not in doc.user_token_hooks  # hooks are not serialized
        restore_vectors(doc)
        np.testing.assert_array_equal(doc.tensor, original.tensor)
        if len(doc):
            np.testing.assert_array_equal(doc[0].vector, original[0].vector)
            assert doc[0].similarity(docs[0][0]) == pytest.approx(original[0].similarity(docs[0][0]), abs=1e-7)
    bank_a, bank_b = loaded[0][1], loaded[2][6]
    assert bank_a.text == bank_b.text == "bank"
    assert bank_a.similarity(bank_b) < 0.999


def test_doc_to_bytes_keeps_tensor_and_layers(nlp: Language) -> None:
    doc = nlp(TEXTS[0])
    with pytest.warns(UserWarning, match="W109"):  # spaCy: user hooks are not serialized
        data = doc.to_bytes()
    copy = Doc(nlp.vocab).from_bytes(data)
    np.testing.assert_array_equal(copy.tensor, doc.tensor)
    np.testing.assert_array_equal(copy._.elmo["layers"], doc._.elmo["layers"])
    restore_vectors(copy)
    assert copy[1].similarity(doc[1]) == pytest.approx(1.0, abs=1e-6)


def test_restore_without_data_is_a_clear_error() -> None:
    doc = spacy.blank("en")("no elmo here")
    with pytest.raises(ElmoError, match="restore_vectors: the Doc has no ELMo data"):
        restore_vectors(doc)


def test_pipe_with_two_processes(nlp: Language) -> None:
    texts = TEXTS * 3
    expected = [nlp(text) for text in texts]
    docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
    assert [d.text for d in docs] == texts
    for doc, single in zip(docs, expected, strict=True):
        np.testing.assert_allclose(doc.tensor, single.tensor, atol=1e-5)
        assert doc._.elmo["layers"].shape == (N_LAYERS, len(doc), LAYER_WIDTH)
        restore_vectors(doc)
        if len(doc):
            np.testing.assert_allclose(doc[0].vector, single[0].vector, atol=1e-5)


SETTINGS = {
    "mix": "concat",
    "precision": "int8",
    "cache_tokens": 100,
    "max_batch_tokens": 300,
    "window_size": 50,
    "window_overlap": 10,
    "word_cache_size": 7,
}


def _settings(nlp: Language) -> tuple[object, ...]:
    elmo = nlp.get_pipe("elmo")
    settings = get_settings(elmo.model)
    bilm = get_bilm(elmo.model)
    assert bilm is not None and bilm.precision == settings.precision  # the installed biLM runs them
    assert bilm.word_cache_size == settings.word_cache_size
    return elmo.mix, elmo.frozen, elmo.set_vectors, dataclasses.astuple(settings)


@pytest.mark.parametrize("route", ["bytes", "disk", "spacy.load", "component from_disk"])
def test_every_setting_survives_serialization(weights_dir: Path, tmp_path: Path, route: str) -> None:
    text = "The bank of the river was steep and the money stayed in the bank ."
    nlp = make_nlp(weights_dir, **SETTINGS)
    expected = nlp(text).tensor
    exact = make_nlp(weights_dir, mix="concat")(text).tensor
    assert not np.array_equal(expected, exact)  # int8 differs from fp32
    if route == "bytes":
        other = load_model_from_config(nlp.config)
        other.from_bytes(nlp.to_bytes())
    elif route == "disk":
        nlp.to_disk(tmp_path / "p")
        other = load_model_from_config(nlp.config).from_disk(tmp_path / "p")
    elif route == "spacy.load":
        nlp.to_disk(tmp_path / "p")
        other = spacy.load(tmp_path / "p")
    else:
        nlp.get_pipe("elmo").to_disk(tmp_path / "elmo")
        other = load_model_from_config(nlp.config)
        other.get_pipe("elmo").from_disk(tmp_path / "elmo")
    assert _settings(other) == _settings(nlp)
    np.testing.assert_array_equal(other(text).tensor, expected)


def test_serialization_honours_exclude(nlp: Language, tmp_path: Path) -> None:
    elmo = nlp.get_pipe("elmo")
    elmo.to_disk(tmp_path / "cfg_only", exclude=["model"])
    assert sorted(p.name for p in (tmp_path / "cfg_only").iterdir()) == ["cfg"]
    assert srsly.read_json(tmp_path / "cfg_only" / "cfg") == {"n_layers": N_LAYERS, "width": LAYER_WIDTH}
    elmo.to_disk(tmp_path / "full")
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["cfg", "options.json", "weights.hdf5"]
    other = _from_config_with_weights(nlp, str(tmp_path / "gone")).get_pipe("elmo")
    other.from_disk(tmp_path / "cfg_only", exclude=["model"])  # reads no weights
    assert get_bilm(other.model) is None and other.cfg == elmo.cfg
    assert len(elmo.to_bytes(exclude=["model"])) < 100 < len(elmo.to_bytes())
    other.from_bytes(elmo.to_bytes(), exclude=["cfg"])
    assert get_bilm(other.model) is not None


def test_saved_cfg_is_read_back_and_checked(nlp: Language, tmp_path: Path) -> None:
    nlp.to_disk(tmp_path / "p")
    srsly.write_json(tmp_path / "p" / "elmo" / "cfg", {"n_layers": 2, "width": LAYER_WIDTH})
    with pytest.raises(ElmoError, match=r"cfg says 2 layers 32 wide, the saved biLM has 3 layers 32 wide"):
        spacy.load(tmp_path / "p")


def test_bytes_and_disk_hold_the_same_files(nlp: Language, tmp_path: Path) -> None:
    elmo = nlp.get_pipe("elmo")
    elmo.to_disk(tmp_path / "elmo")
    files = srsly.msgpack_loads(elmo.to_bytes())["model"]
    assert sorted(files) == ["options.json", "weights.hdf5"]
    assert files["options.json"] == (tmp_path / "elmo" / "options.json").read_bytes()
    options = read_options(tmp_path / "elmo" / "options.json")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "w.hdf5").write_bytes(files["weights.hdf5"])
        _, from_bytes = read_weight_arrays(Path(tmp) / "w.hdf5", options)
    _, from_disk = read_weight_arrays(tmp_path / "elmo" / "weights.hdf5", options)
    assert from_bytes.keys() == from_disk.keys()
    assert all(np.array_equal(from_bytes[k], from_disk[k]) for k in from_disk)


@pytest.mark.parametrize("mix", ["average", "concat", [0.2, 0.3, 0.5]])
def test_doc_layers_mix_keeps_only_the_mixed_vectors(weights_dir: Path, mix: object) -> None:
    full = make_nlp(weights_dir, mix=mix)
    lean = make_nlp(weights_dir, mix=mix, doc_layers="mix")
    assert lean.get_pipe("elmo").doc_layers == "mix"
    docs = list(lean.pipe(TEXTS))
    for expected, doc in zip(full.pipe(TEXTS), docs, strict=True):
        assert set(doc._.elmo) == {"vectors", "mix"}
        # The stored vectors are doc.tensor itself: they cost no memory of their own.
        assert doc._.elmo["vectors"] is doc.tensor
        np.testing.assert_array_equal(doc.tensor, expected.tensor)
        for token, expected_token in zip(doc, expected, strict=True):
            np.testing.assert_array_equal(token.vector, expected_token.vector)
    data = DocBin(docs=docs, store_user_data=True).to_bytes()
    loaded = list(DocBin().from_bytes(data).get_docs(lean.vocab))
    for original, doc in zip(docs, loaded, strict=True):
        assert "vector" not in doc.user_token_hooks
        restore_vectors(doc)
        np.testing.assert_array_equal(doc.tensor, original.tensor)
        if len(doc):
            np.testing.assert_array_equal(doc[0].vector, original[0].vector)
            assert doc[0].similarity(original[0]) == pytest.approx(1.0, abs=1e-6)
    with pytest.warns(UserWarning, match="W109"):
        doc_bytes = docs[0].to_bytes()
    copy = restore_vectors(Doc(lean.vocab).from_bytes(doc_bytes))
    np.testing.assert_array_equal(copy.tensor, docs[0].tensor)


def test_doc_layers_mix_survives_to_disk(weights_dir: Path, tmp_path: Path) -> None:
    nlp = make_nlp(weights_dir, doc_layers="mix")
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("elmo").doc_layers == "mix"
    assert "layers" not in loaded(TEXTS[0])._.elmo


def test_bad_doc_layers_is_a_clear_error(weights_dir: Path) -> None:
    with pytest.raises(ElmoError, match="'doc_layers' must be one of"):
        make_nlp(weights_dir, doc_layers="some")


def test_restore_rejects_vectors_of_another_doc(weights_dir: Path) -> None:
    nlp = make_nlp(weights_dir, doc_layers="mix")
    doc = nlp(TEXTS[0])
    other = nlp.make_doc(TEXTS[2])
    other._.elmo = doc._.elmo
    with pytest.raises(ElmoError, match=r"holds vectors of shape \(7, 32\) for a Doc of 8 tokens"):
        restore_vectors(other)


@pytest.mark.parametrize("name", ["../x.json", "/etc/x", ".hidden", "a/../../b"])
def test_serialized_file_names_stay_inside(name: str) -> None:
    with pytest.raises(ElmoError, match="bad file name"):
        bilm_from_files({name: b"{}"})
