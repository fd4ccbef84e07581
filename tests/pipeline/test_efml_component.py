"""ELMoForManyLangs models in spaCy pipelines, by directory and by name (efml-<code>), and in `embed`."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.util import fix_random_seed

from spacy_elmo import ElmoWeightsError, load_bilm
from spacy_elmo.bilm.efml import EfmlBiLM, load_efml
from spacy_elmo.catalog import CATALOG, FORMAT_EFML
from spacy_elmo.cli import main
from spacy_elmo.efml_models import EFML_MODELS
from spacy_elmo.weights_source import resolve_model

from ..elmo_helpers import copy_fixture_weights, elmo_config
from ..http_helpers import serve

FIXTURE_MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "efml" / "model"
WIDTH = 32  # 2P of the fixture model


def efml_nlp(lang: str, weights: Path | str, **config: object) -> Language:
    nlp = spacy.blank(lang)
    nlp.add_pipe("elmo", config=elmo_config(weights, **config))
    return nlp


def test_german_pipeline_shapes_and_context(tmp_path: Path) -> None:
    nlp = efml_nlp("de", FIXTURE_MODEL)
    river, money = nlp("Die Bank am Fluss war steil."), nlp("Ich habe Geld zur Bank gebracht.")
    assert river.tensor.shape == (len(river), WIDTH)
    assert np.asarray(river._.elmo["layers"]).shape == (3, len(river), WIDTH)
    assert river[1].text == money[4].text == "Bank"
    # The same word: the same token layer, other contextual layers and vectors.
    layers_a, layers_b = np.asarray(river._.elmo["layers"]), np.asarray(money._.elmo["layers"])
    np.testing.assert_array_equal(layers_a[0, 1], layers_b[0, 4])
    assert not np.allclose(layers_a[1, 1], layers_b[1, 4])
    assert not np.allclose(river[1].vector, money[4].vector)
    assert river[1].similarity(money[4]) < 0.999
    # Exactly the biLM's layers for the same tokens.
    bilm = load_efml(FIXTURE_MODEL)
    expected = bilm.embed_sentences([[t.text for t in river]])[0]
    np.testing.assert_allclose(layers_a, expected, atol=1e-6)


def test_chinese_pipeline(tmp_path: Path) -> None:
    nlp = efml_nlp("zh", FIXTURE_MODEL, mix="concat")
    a, b = nlp("我们在银行。"), nlp("银行工作。")
    assert [t.text for t in a] == ["我", "们", "在", "银", "行", "。"]  # spaCy's default Chinese: characters
    assert a.tensor.shape == (6, 3 * WIDTH) and b.tensor.shape == (5, 3 * WIDTH)
    bank_a, bank_b = a[3], b[0]
    assert bank_a.text == bank_b.text == "银"
    np.testing.assert_array_equal(bank_a.vector[:WIDTH], bank_b.vector[:WIDTH])  # token layer
    assert not np.allclose(bank_a.vector[WIDTH:], bank_b.vector[WIDTH:])


def test_to_disk_and_spacy_load_without_the_original_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "efml_de"
    shutil.copytree(FIXTURE_MODEL, model_dir)
    nlp = efml_nlp("de", model_dir, mix="concat")
    texts = ["Die Bank am Fluss war steil.", "", "Ωmega ünïcödé x"]
    expected = [nlp(text).tensor.copy() for text in texts]
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(model_dir)
    saved = tmp_path / "pipeline" / "elmo"
    assert sorted(p.name for p in saved.iterdir()) == ["cfg", "efml"]
    # The saved model is itself an ELMoForManyLangs directory.
    assert isinstance(load_bilm(saved / "efml"), EfmlBiLM)
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.lang == "de"
    for text, tensor in zip(texts, expected, strict=True):
        np.testing.assert_array_equal(loaded(text).tensor, tensor)


def test_to_bytes_and_from_bytes(tmp_path: Path) -> None:
    nlp = efml_nlp("de", FIXTURE_MODEL)
    expected = nlp("Der Fluss führt Hochwasser!").tensor.copy()
    data = nlp.to_bytes()
    other = spacy.blank("de")
    other.add_pipe("elmo", config=elmo_config(copy_fixture_weights(tmp_path / "bilm_tf")))  # another format
    other.from_bytes(data)
    assert isinstance(other.get_pipe("elmo").model.shims[0]._model, EfmlBiLM)
    np.testing.assert_array_equal(other("Der Fluss führt Hochwasser!").tensor, expected)


def test_saving_over_a_pipeline_of_the_other_format(tmp_path: Path) -> None:
    """A component directory saved before with a bilm-tf model is overwritten cleanly, and back."""
    bilm_tf = efml_nlp("de", copy_fixture_weights(tmp_path / "bilm_tf"))
    efml = efml_nlp("de", FIXTURE_MODEL)
    bilm_tf.to_disk(tmp_path / "pipeline")
    efml.to_disk(tmp_path / "pipeline")
    assert sorted(p.name for p in (tmp_path / "pipeline" / "elmo").iterdir()) == ["cfg", "efml"]
    assert isinstance(spacy.load(tmp_path / "pipeline").get_pipe("elmo").model.shims[0]._model, EfmlBiLM)
    bilm_tf.to_disk(tmp_path / "pipeline")
    assert sorted(p.name for p in (tmp_path / "pipeline" / "elmo").iterdir()) == ["cfg", "options.json", "weights.hdf5"]
    assert not isinstance(spacy.load(tmp_path / "pipeline").get_pipe("elmo").model.shims[0]._model, EfmlBiLM)


@pytest.mark.slow
def test_spacy_package_of_an_efml_pipeline(tmp_path: Path) -> None:
    from ..cli.test_cli import spacy_cli

    nlp = efml_nlp("de", FIXTURE_MODEL)
    nlp.to_disk(tmp_path / "pipeline")
    (tmp_path / "pkg").mkdir()
    spacy_cli(
        "package", tmp_path / "pipeline", tmp_path / "pkg", "--name", "efml_test", "--version", "0.0.1", cwd=tmp_path
    )
    with tarfile.open(tmp_path / "pkg" / "de_efml_test-0.0.1" / "dist" / "de_efml_test-0.0.1.tar.gz") as sdist:
        names = sdist.getnames()
    for name in ("config.json", "network.json", "char.dic", "word.dic", "token_embedder.pkl", "encoder.pkl"):
        assert any(n.endswith(f"elmo/efml/{name}") for n in names), name


# ---- by name, through a mirror on 127.0.0.1 ----


def zip_model(target: Path, inner: str = "") -> Path:
    """The fixture model zipped like an NLPL entry (files at the top, or under ``inner``), with a meta.json."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as zipped:
        for path in sorted(FIXTURE_MODEL.iterdir()):
            zipped.write(path, arcname=f"{inner}{path.name}")
        zipped.writestr("meta.json", json.dumps({"id": 142, "corpus": "test"}))
    return target


def test_efml_names_cover_44_languages() -> None:
    assert len(EFML_MODELS) == 44
    assert sorted(m.nlpl_id for m in EFML_MODELS) == list(range(136, 180))
    by_code = {m.code: m for m in EFML_MODELS}
    assert (by_code["de"].nlpl_id, by_code["zh"].nlpl_id, by_code["ar"].nlpl_id) == (142, 179, 136)
    assert (by_code["nl"].nlpl_id, by_code["nb"].nlpl_id, by_code["grc"].language) == (164, 165, "Ancient Greek")
    entries = [entry for entry in CATALOG.values() if entry.format == FORMAT_EFML]
    assert [entry.name for entry in entries] == [f"efml-{m.code}" for m in EFML_MODELS]
    assert CATALOG["efml-fr"].archive is not None
    assert CATALOG["efml-fr"].archive.canonical_url == "http://vectors.nlpl.eu/repository/11/150.zip"
    assert "French" in CATALOG["efml-fr"].description


def test_efml_name_resolves_through_a_local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    zip_model(served / "nlpl" / "11" / "142.zip")
    zip_model(served / "nlpl" / "11" / "179.zip", inner="zh.model/")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPACY_ELMO_CACHE", str(cache))
    with serve(served) as server:
        monkeypatch.setenv("SPACY_ELMO_MIRROR", server.base + "/")
        files = resolve_model("efml-de")
        assert files.format == FORMAT_EFML and files.directory.is_relative_to(cache)
        nlp = spacy.blank("de")
        nlp.add_pipe("elmo", config=elmo_config("efml-de"))
        doc = nlp("Die Bank am Fluss war steil.")
        assert doc.tensor.shape == (7, WIDTH)
        zh = spacy.blank("zh")
        zh.add_pipe("elmo", config=elmo_config("efml-zh"))
        assert zh("我们在银行。").tensor.shape == (6, WIDTH)
        assert isinstance(load_bilm("efml-de"), EfmlBiLM)
        # Downloaded once each; later uses take the verified cached copy.
        assert server.count("/nlpl/11/142.zip") == 1 and server.count("/nlpl/11/179.zip") == 1
    with pytest.raises(ElmoWeightsError, match="'efml-xx' is not a model name"):
        resolve_model("efml-xx")


def test_efml_archives_by_path_and_url_and_the_download_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("SPACY_ELMO_CACHE", str(tmp_path / "cache"))
    local = zip_model(tmp_path / "de.zip", inner="de.model/")
    files = resolve_model(str(local))
    assert files.format == FORMAT_EFML and (files.directory / "encoder.pkl").is_file()
    served = tmp_path / "served"
    zip_model(served / "models" / "de.zip")
    zip_model(served / "nlpl" / "11" / "150.zip")
    with serve(served) as server:
        assert isinstance(load_bilm(f"{server.base}/models/de.zip"), EfmlBiLM)
        monkeypatch.setenv("SPACY_ELMO_MIRROR", server.base)
        assert main(["download", "efml-fr", "--to", str(tmp_path / "fr"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "fr")
    assert isinstance(load_bilm(str(tmp_path / "fr")), EfmlBiLM)


def test_an_efml_directory_named_efml_dash_something_is_a_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURE_MODEL, tmp_path / "efml-mine")
    files = resolve_model("efml-mine")
    assert (files.format, files.directory) == (FORMAT_EFML, Path("efml-mine"))


# ---- embed --weights ----


def test_embed_with_weights_directory(tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_text("Die Bank am Fluss war steil .\n我们 在 银行 。\n", encoding="utf-8")
    out = tmp_path / "out.hdf5"
    assert main(["embed", str(source), str(out), "--weights", str(FIXTURE_MODEL), "--quiet"]) == 0
    bilm = load_efml(FIXTURE_MODEL)
    expected = bilm.embed_sentences([line.split() for line in source.read_text(encoding="utf-8").splitlines()])
    with h5py.File(out, "r") as f:
        for i, layers in enumerate(expected):
            np.testing.assert_allclose(f[str(i)][()], layers, atol=1e-6)


def test_embed_weights_and_file_options_exclude_each_other(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "input.txt"
    source.write_text("a b\n", encoding="utf-8")
    weights = copy_fixture_weights(tmp_path / "bilm_tf")
    args = ["embed", str(source), str(tmp_path / "out.hdf5")]
    assert main([*args, "--weights", str(FIXTURE_MODEL), "--weight-file", str(weights / "lm_weights.hdf5")]) == 1
    assert "either --weights or --weight-file" in capsys.readouterr().err
    assert main([*args, "--options-file", str(weights / "options.json")]) == 1
    assert "or both --options-file and --weight-file" in capsys.readouterr().err
    assert main([*args, "--weights", str(weights), "--quiet"]) == 0  # a bilm-tf directory works too


def test_ner_fine_tunes_an_efml_model_in_a_german_pipeline() -> None:
    """A listener trains on it, and unfrozen, the update reaches the word and character embeddings."""
    from ..training_data import ner_examples
    from .test_training import NER_MODEL, bilm_state, train

    # Seeded before anything is built (see test_fine_tuning_changes_the_bilm). With 6 epochs
    # last/first was 0.65-1.03 over seeds 0-11 and this failed in CI; with 10 it is 0.60-0.75.
    fix_random_seed(0)
    nlp = spacy.blank("de")
    nlp.add_pipe("elmo", config=elmo_config(FIXTURE_MODEL, frozen=False))
    nlp.add_pipe("ner", config={"model": NER_MODEL})
    examples = ner_examples(nlp)[:16]
    nlp.initialize(lambda: examples)
    before = bilm_state(nlp)
    history = train(nlp, examples, "ner", epochs=10, learn_rate=0.003)
    after = bilm_state(nlp)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {
        "token_encoder.word_embedding.weight",
        "token_encoder.char_embedding.weight",
        "token_encoder.projection_weight",
        "lstm.backward_layers.1.hidden_weight",
    } <= changed
    assert np.mean(history[-2:]) < 0.9 * np.mean(history[:2]), history
