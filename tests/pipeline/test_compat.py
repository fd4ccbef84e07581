"""What the first release wrote keeps working: its config names and shape, its saved pipelines and bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_config, load_model_from_config

from spacy_elmo.layers.bilm_model import get_settings
from spacy_elmo.layers.units import DocUnits

from ..elmo_helpers import copy_fixture_weights, elmo_config

FIRST_RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "first_release"
TEXT = "Angela Merkel visited Paris ."
LEGACY = "belong to the model now"


def test_a_first_release_config_builds_initializes_and_runs(tmp_path: Path) -> None:
    weights = copy_fixture_weights(tmp_path / "elmo")
    config = load_config(FIRST_RELEASE / "ner_elmo_frozen.cfg", overrides={"paths.elmo": str(weights)})
    assert config["components"]["elmo"]["model"]["@architectures"] == "spacy_elmo.ElmoModel.v1"
    with pytest.warns(DeprecationWarning, match=LEGACY):
        nlp = load_model_from_config(config, auto_fill=True, validate=True)
    settings = get_settings(nlp.get_pipe("elmo").model)
    # the component-level settings reached the model
    assert (settings.weights, settings.cache_tokens, settings.state) == (str(weights), 500000, "reset")
    assert settings.get_units == DocUnits(200, 50) and settings.frozen
    words = ["Empire", "State", "Building", "in", "New", "York"]
    reference = Doc(nlp.vocab, words=words, ents=["B-facility", "I-facility", "I-facility", "O", "B-geo", "I-geo"])
    examples = [Example(nlp.make_doc(" ".join(words)), reference)]
    nlp.initialize(lambda: examples)
    losses = nlp.update(examples, sgd=nlp.create_optimizer())
    assert losses["ner"] > 0
    doc = nlp(" ".join(words))
    assert doc._.elmo["layers"].shape == (3, 6, 32) and doc.tensor.shape == (6, 96)  # the tok2vec sets the tensor


def _load_first_release(tmp_path: Path) -> spacy.Language:
    with pytest.warns(DeprecationWarning, match=LEGACY):
        return spacy.load(FIRST_RELEASE / "pipeline")


def test_a_pipeline_saved_by_the_first_release_loads_with_its_settings(tmp_path: Path) -> None:
    nlp = _load_first_release(tmp_path)
    elmo = nlp.get_pipe("elmo")
    settings = get_settings(elmo.model)
    assert (elmo.mix, settings.precision, settings.max_batch_tokens) == ("top", "int8", 1000)
    assert settings.get_units == DocUnits(100, 10)
    doc = nlp(TEXT)
    np.testing.assert_allclose(doc.tensor, np.load(FIRST_RELEASE / "expected_tensor.npy"), atol=1e-6)
    assert doc.ents == ()  # the ner ran on the listener


def test_bytes_written_by_the_first_release_load(weights_dir: Path) -> None:
    nlp = spacy.blank("en")
    units = {"@misc": "spacy-elmo.doc_units.v1", "window_size": 100, "window_overlap": 10}
    config = elmo_config(weights_dir, mix="top", precision="int8", get_units=units)
    nlp.add_pipe("elmo", config=config)
    nlp.get_pipe("elmo").from_bytes((FIRST_RELEASE / "elmo.bytes").read_bytes())
    np.testing.assert_allclose(nlp(TEXT).tensor, np.load(FIRST_RELEASE / "expected_tensor.npy"), atol=1e-6)


def test_replace_listeners_on_a_first_release_pipeline_writes_a_v2_config(tmp_path: Path) -> None:
    nlp = _load_first_release(tmp_path)
    docs = list(nlp.get_pipe("elmo").pipe(nlp.make_doc(t) for t in [TEXT, "Toyota builds cars in Japan ."]))
    tok2vec = nlp.get_pipe("ner").model.get_ref("tok2vec")
    expected = tok2vec.predict(docs)
    nlp.replace_listeners("elmo", "ner", ["model.tok2vec"])
    inline = nlp.config["components"]["ner"]["model"]["tok2vec"]
    assert inline["@architectures"] == "spacy-elmo.Elmo.v2" and inline["frozen"] is True
    assert inline["model"]["@architectures"] == "spacy-elmo.ElmoModel.v2"
    assert inline["model"]["precision"] == "int8"
    assert inline["model"]["get_units"] == {
        "@misc": "spacy-elmo.doc_units.v1",
        "window_size": 100,
        "window_overlap": 10,
    }
    nlp.remove_pipe("elmo")
    fresh = [nlp.make_doc(doc.text) for doc in docs]
    got = nlp.get_pipe("ner").model.get_ref("tok2vec").predict(fresh)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    nlp.to_disk(tmp_path / "inline")
    loaded = spacy.load(tmp_path / "inline")
    again = loaded.get_pipe("ner").model.get_ref("tok2vec").predict([loaded.make_doc(doc.text) for doc in docs])
    for a, b in zip(expected, again, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
