"""The ``elmo`` component through spaCy's own APIs: vectors, hooks, batching, bad input, settings."""

from __future__ import annotations

import resource
import warnings
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc

from spacy_elmo import ElmoError, load_bilm, restore_vectors
from spacy_elmo.layers.bilm_model import get_settings
from spacy_elmo.layers.units import Unit, window_units

from ..elmo_helpers import LAYER_WIDTH, N_LAYERS, elmo_config, make_nlp


def test_add_pipe_and_call_sets_tensor_extension_and_hooks(nlp: Language) -> None:
    doc = nlp("The cat sat on the mat.")
    assert doc.tensor.shape == (7, LAYER_WIDTH)
    layers = doc._.elmo["layers"]
    assert layers.shape == (N_LAYERS, 7, LAYER_WIDTH) and layers.dtype == np.float32
    np.testing.assert_allclose(doc.tensor, layers.mean(axis=0), rtol=1e-6, atol=1e-6)
    assert np.array_equal(doc[1].vector, doc.tensor[1])
    np.testing.assert_allclose(doc[1:3].vector, doc.tensor[1:3].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(doc.vector, doc.tensor.mean(axis=0), rtol=1e-6)
    assert doc[0].has_vector and doc[0:2].has_vector and doc.has_vector
    assert doc[2].vector_norm == pytest.approx(float(np.linalg.norm(doc.tensor[2])), rel=1e-6)


def test_vectors_match_the_bilm_run_directly(nlp: Language, weights_dir: Path) -> None:
    words = ["The", "river", "bank", "was", "muddy", "."]
    doc = nlp(Doc(nlp.vocab, words=words))
    bilm = load_bilm(weights_dir / "options.json", weights_dir / "lm_weights.hdf5")
    (expected,) = bilm.embed_sentences([words])
    np.testing.assert_allclose(doc._.elmo["layers"], expected, atol=1e-6)


def test_same_word_in_two_contexts_gets_different_vectors(nlp: Language) -> None:
    river = nlp("We sat on the bank of the river .")
    money = nlp("I paid the money into the bank account .")
    bank_river, bank_money = river[4], money[6]
    assert bank_river.text == bank_money.text == "bank"
    assert not np.allclose(bank_river.vector, bank_money.vector, atol=1e-3)
    # spaCy's default (no hook) would say 1.0 for two tokens with the same text
    similarity = bank_river.similarity(bank_money)
    assert 0.0 < similarity < 0.999
    cosine = np.dot(bank_river.vector, bank_money.vector) / (
        np.linalg.norm(bank_river.vector) * np.linalg.norm(bank_money.vector)
    )
    assert similarity == pytest.approx(float(cosine), rel=1e-5)


def test_similarity_at_span_and_doc_level_is_contextual(nlp: Language) -> None:
    first = nlp("We went fishing by the water near the bank .")
    second = nlp("I opened an account with cash at the bank .")
    span_a, span_b = first[-3:], second[-3:]
    assert span_a.text == span_b.text == "the bank ."
    assert 0.0 < span_a.similarity(span_b) < 0.999
    assert 0.0 < first.similarity(second) < 0.999
    assert first.similarity(first) == pytest.approx(1.0, abs=1e-6)
    # levels can be mixed; all use the same contextual vectors
    assert first[1].similarity(first[1:2]) == pytest.approx(1.0, abs=1e-6)
    expected = np.dot(first.vector, span_b.vector) / (np.linalg.norm(first.vector) * np.linalg.norm(span_b.vector))
    assert first.similarity(span_b) == pytest.approx(float(expected), rel=1e-5)


def test_pipe_equals_per_doc_calls_in_reset_mode(weights_dir: Path) -> None:
    nlp = make_nlp(weights_dir, max_batch_tokens=200, window_size=100, window_overlap=20)
    texts = [
        "A short one.",
        "",
        "This sentence is a little longer than the first one , with a comma .",
        "Three words here",
        "x",
        " ".join(["token"] * 150),
    ] * 3
    piped = list(nlp.pipe(texts, batch_size=7))
    assert [d.text for d in piped] == texts
    for text, doc in zip(texts, piped, strict=True):
        single = nlp(text)
        assert doc.tensor.shape == single.tensor.shape == (len(single), LAYER_WIDTH)
        np.testing.assert_allclose(doc._.elmo["layers"], single._.elmo["layers"], atol=1e-5)


def test_stateful_mode_carries_state_between_calls(weights_dir: Path) -> None:
    reset = make_nlp(weights_dir)
    stateful = make_nlp(weights_dir, state="stateful")
    text = "The first sentence starts from zero ."
    first, second = stateful(text), stateful(text)
    np.testing.assert_allclose(first._.elmo["layers"], reset(text)._.elmo["layers"], atol=1e-5)
    assert not np.allclose(first._.elmo["layers"][1:], second._.elmo["layers"][1:], atol=1e-3)
    np.testing.assert_allclose(reset(text).tensor, reset(text).tensor, atol=0)


@pytest.mark.parametrize(
    ("mix", "width"),
    [("average", LAYER_WIDTH), ("top", LAYER_WIDTH), ("concat", 3 * LAYER_WIDTH), ([0.2, 0.3, 0.5], LAYER_WIDTH)],
)
def test_mix_settings(weights_dir: Path, mix: object, width: int) -> None:
    doc = make_nlp(weights_dir, mix=mix)("Mixing the layers .")
    layers = doc._.elmo["layers"]
    assert doc.tensor.shape == (4, width)
    if mix == "top":
        np.testing.assert_array_equal(doc.tensor, layers[2])
    elif mix == "concat":
        np.testing.assert_array_equal(doc.tensor, np.concatenate(list(layers), axis=-1))
    elif isinstance(mix, list):
        np.testing.assert_allclose(doc.tensor, 0.2 * layers[0] + 0.3 * layers[1] + 0.5 * layers[2], atol=1e-6)


def test_sentences_are_run_separately_when_set(nlp: Language) -> None:
    nlp.add_pipe("sentencizer", first=True)
    doc = nlp("The dog barked . The cat slept .")
    assert len(list(doc.sents)) == 2
    for sent in doc.sents:
        alone = nlp(sent.text)
        np.testing.assert_allclose(doc._.elmo["layers"][:, sent.start : sent.end], alone._.elmo["layers"], atol=1e-5)


def test_long_documents_use_overlapping_windows(weights_dir: Path) -> None:
    nlp = make_nlp(weights_dir, window_size=20, window_overlap=6, max_batch_tokens=40)
    words = [f"w{i % 13}" for i in range(57)]
    doc = nlp(Doc(nlp.vocab, words=words))
    assert doc._.elmo["layers"].shape == (N_LAYERS, 57, LAYER_WIDTH)
    units = list(window_units(0, 0, 57, 20, 6))
    cores = [i for u in units for i in range(u.core_start, u.core_end)]
    assert cores == list(range(57))
    assert all(u.end - u.start <= 20 for u in units)
    reference = make_nlp(weights_dir)
    for unit in units:
        window = reference(Doc(reference.vocab, words=words[unit.start : unit.end]))
        offset = unit.core_start - unit.start
        np.testing.assert_allclose(
            doc._.elmo["layers"][:, unit.core_start : unit.core_end],
            window._.elmo["layers"][:, offset : offset + unit.core_end - unit.core_start],
            atol=1e-5,
        )


@spacy.registry.misc("test-units-with-a-gap.v1")
def units_with_a_gap() -> object:
    def get_units(doc_index: int, doc: Doc) -> list[Unit]:
        # Cores [0, 2) and [3, n): token 2 is in no core; [1, 3) overlaps the first instead.
        n = len(doc)
        return [Unit(doc_index, 0, n, 0, 2), Unit(doc_index, 0, n, 3, n), Unit(doc_index, 0, n, 1, 2)]

    return get_units


@pytest.mark.parametrize("is_train", [False, True])
def test_a_splitter_whose_cores_do_not_tile_the_doc_is_refused(weights_dir: Path, is_train: bool) -> None:
    nlp = make_nlp(weights_dir, frozen=not is_train, get_units={"@misc": "test-units-with-a-gap.v1"})
    model = nlp.get_pipe("elmo").model
    doc = nlp.make_doc("one two three four five")
    with pytest.raises(ElmoError, match="must tile the Doc exactly"):
        model.begin_update([doc]) if is_train else model.predict([doc])


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["one"],
        [" ", "\n", "\t\t"],
        ["x" * 120, "y" * 51],
        ["😀", "🇫🇷", "漢字", "日本語のテキスト"],
        ["e\u0301", "a\u0308\u0323", "\u0000", "\u0007bell", "\u200b"],
        ["caf\ufffd", "\ufffd\ufffd", "ok"],
    ],
)
def test_bad_input_gives_vectors_of_the_right_shape(nlp: Language, words: list[str]) -> None:
    doc = nlp(Doc(nlp.vocab, words=words))
    assert doc.tensor.shape == (len(words), LAYER_WIDTH)
    assert np.isfinite(doc.tensor).all()
    assert doc.vector.shape == (LAYER_WIDTH,)
    if words:
        assert np.abs(doc.tensor).sum() > 0
        assert doc[0].vector_norm >= 0.0
    else:
        assert not doc.has_vector and float(np.abs(doc.vector).sum()) == 0.0


def test_lone_surrogates_are_refused_by_spacy_before_the_component(nlp: Language) -> None:
    # spaCy's StringStore cannot hold them, so no Doc with them reaches the component;
    # text decoded with errors="replace" (U+FFFD) works (covered above).
    broken = "caf\xe9 au lait".encode("latin-1").decode("utf-8", "surrogateescape")
    with pytest.raises(UnicodeEncodeError):
        nlp(broken)
    repaired = "caf\xe9 au lait".encode("latin-1").decode("utf-8", "replace")
    doc = nlp(repaired)
    assert doc.tensor.shape == (len(doc), LAYER_WIDTH) and len(doc) >= 3


def test_empty_docs_mixed_into_a_batch(nlp: Language) -> None:
    texts = ["", "Some words here .", "", "   ", "More .", ""]
    docs = list(nlp.pipe(texts))
    for text, doc in zip(texts, docs, strict=True):
        assert doc.text == text
        assert doc.tensor.shape == (len(doc), LAYER_WIDTH)
        assert doc._.elmo["layers"].shape == (N_LAYERS, len(doc), LAYER_WIDTH)
    np.testing.assert_allclose(docs[1].tensor, nlp(texts[1]).tensor, atol=1e-5)


def test_unknown_mix_is_a_clear_error(weights_dir: Path) -> None:
    with pytest.raises(ElmoError, match=r"'mix'.*'median'"):
        make_nlp(weights_dir, mix="median")
    nlp = make_nlp(weights_dir, mix=[0.5, 0.5])
    with pytest.raises(ElmoError, match="'mix' has 2 weights but the biLM has 3 layers"):
        nlp("too few weights")


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("state", "sticky", "'state'"),
        ("window_overlap", 150, "'window_overlap'"),
        ("max_batch_tokens", 10, "'max_batch_tokens'"),
        ("window_size", 0, "'window_size'"),
        ("word_cache_size", -1, "'word_cache_size'"),
    ],
)
def test_bad_settings_name_the_setting(weights_dir: Path, setting: str, value: object, message: str) -> None:
    with pytest.raises(ElmoError, match=message):
        make_nlp(weights_dir, **{setting: value})


def test_wrong_weights_path_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ElmoError, match=r"setting 'weights'.*nowhere.*catalog models: small"):
        make_nlp(tmp_path / "nowhere")  # at add_pipe, before any Doc
    (tmp_path / "empty").mkdir()
    with pytest.raises(ElmoError, match=r"no options.json"):
        make_nlp(tmp_path / "empty")("text")


def test_missing_weights_without_bundled_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("spacy_elmo.weights_source.BUNDLED_MODELS_DIR", tmp_path)
    nlp = spacy.blank("en")
    with pytest.raises(ElmoError, match=r"setting 'weights': no weights given.*en_elmo_small"):
        nlp.add_pipe("elmo")


TAGGER_WITH_LISTENER = {
    "model": {
        "@architectures": "spacy.Tagger.v2",
        "tok2vec": {"@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "*"},
    }
}


def test_warns_when_a_spacy_tok2vec_listener_would_read_elmo_tensor(weights_dir: Path) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    nlp.add_pipe("elmo", config=elmo_config(weights_dir))
    with pytest.warns(UserWarning, match="spaCy tok2vec listener"):
        nlp.add_pipe("tagger", config=TAGGER_WITH_LISTENER)
    # No warning when the tok2vec runs after elmo (it sets doc.tensor again).
    ok = spacy.blank("en")
    ok.add_pipe("elmo", config=elmo_config(weights_dir))
    ok.add_pipe("tok2vec")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok.add_pipe("tagger", config=TAGGER_WITH_LISTENER)


@pytest.mark.slow
def test_a_100k_token_document_runs_in_bounded_memory(weights_dir: Path) -> None:
    nlp = make_nlp(weights_dir)
    nlp("warm up")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    doc = nlp(Doc(nlp.vocab, words=[f"word{i % 997}" for i in range(100_000)]))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert doc.tensor.shape == (100_000, LAYER_WIDTH) and np.isfinite(doc.tensor).all()
    # the output itself is 3 layers + tensor = 51 MB; windows keep the rest of the work small
    assert grown_mb < 500, grown_mb


def test_int8_precision_setting_gives_close_vectors_and_bad_values_are_named(weights_dir: Path) -> None:
    text = "The bank of the river was steep and the money stayed in the bank ."
    exact = make_nlp(weights_dir)(text).tensor
    approx_nlp = make_nlp(weights_dir, precision="int8")
    assert get_settings(approx_nlp.get_pipe("elmo").model).precision == "int8"
    approx = approx_nlp(text).tensor
    assert approx.shape == exact.shape
    difference = float(np.abs(approx - exact).max())
    assert 0 < difference < 0.2
    with pytest.raises(ElmoError, match=r"'precision' must be one of .*'fp16'"):
        make_nlp(weights_dir, precision="fp16")


def test_set_vectors_false_keeps_only_the_layers(weights_dir: Path) -> None:
    doc = make_nlp(weights_dir, set_vectors=False)("The cat sat .")
    assert doc._.elmo["layers"].shape == (N_LAYERS, 4, LAYER_WIDTH)
    assert doc.tensor.size == 0 and "vector" not in doc.user_token_hooks
    restore_vectors(doc)  # the mix is stored: the vectors can still be made
    np.testing.assert_allclose(doc.tensor, doc._.elmo["layers"].mean(axis=0), rtol=1e-6, atol=1e-6)


def test_legacy_component_level_settings_reach_the_model_with_a_warning(weights_dir: Path) -> None:
    nlp = spacy.blank("en")
    with pytest.warns(DeprecationWarning, match=r"weights, window_size, precision belong to the model now"):
        nlp.add_pipe("elmo", config={"weights": str(weights_dir), "window_size": 120, "precision": "int8"})
    settings = get_settings(nlp.get_pipe("elmo").model)
    assert (settings.weights, settings.precision, settings.get_units.window_size) == (str(weights_dir), "int8", 120)
    assert settings.get_units.window_overlap == 50
