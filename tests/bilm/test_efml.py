"""ELMoForManyLangs (HIT-SCIR) models: exact to their code, their files, bad directories."""

from __future__ import annotations

import json
import pickle
import shutil
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo import ElmoBiLM, ElmoOptionsError, ElmoWeightsError, load_bilm
from spacy_elmo.bilm.efml import (
    KNOWN_CONFIGS,
    EfmlBiLM,
    format_dictionary,
    load_efml,
    parse_dictionary,
    read_network_config,
    save_efml,
)
from spacy_elmo.bilm.weights import save_bilm

from ..efml_reference import LiteralEfml, literal_model

EFML_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "efml"
FIXTURE_MODEL = EFML_FIXTURE / "model"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def sentences() -> list[list[str]]:
    return json.loads((EFML_FIXTURE / "sentences.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def expected() -> list[np.ndarray]:
    with h5py.File(EFML_FIXTURE / "expected_layers.hdf5", "r") as f:
        return [f[str(i)][()] for i in range(len(f))]


@pytest.fixture(scope="module")
def model() -> EfmlBiLM:
    return load_efml(FIXTURE_MODEL)


def copy_model(target: Path) -> Path:
    shutil.copytree(FIXTURE_MODEL, target)
    return target


# ---- exact to their code ----


def test_fixture_reproduced_within_1e5(sentences: list[list[str]], expected: list[np.ndarray]) -> None:
    bilm = load_bilm(FIXTURE_MODEL)  # one argument: the model directory
    assert isinstance(bilm, EfmlBiLM) and isinstance(bilm, ElmoBiLM)
    layers = bilm.embed_sentences(sentences)
    assert len(layers) == len(expected) == 8
    for got, want in zip(layers, expected, strict=True):
        assert got.shape == want.shape == (3, want.shape[1], 32)
        assert np.abs(got - want).max() < TOLERANCE
    # One sentence at a time (zero state each time) gives the same.
    for sentence, want in zip(sentences, expected, strict=True):
        assert np.abs(bilm.embed_sentences([sentence])[0] - want).max() < TOLERANCE


def test_literal_reading_reproduces_the_fixture(sentences: list[list[str]], expected: list[np.ndarray]) -> None:
    """The test's own NumPy reading agrees with their outputs, so it can judge other models."""
    literal = literal_model(FIXTURE_MODEL)
    for sentence, want in zip(sentences, expected, strict=True):
        assert np.abs(literal.layers(sentence) - want).max() < TOLERANCE


def test_id_rows_follow_their_conventions(model: EfmlBiLM) -> None:
    vocab = model.vocabulary
    chars, words = vocab.chars, vocab.words
    assert chars is not None and words is not None
    row = vocab.token_ids("Bank")
    assert row.shape == (1 + 50,)
    assert row[0] == words["Bank"] + 1
    char_ids = row[1:] - 1
    # Swapped lookups: the id of '<eow>' first, of '<bow>' after the characters.
    assert char_ids[0] == chars["<eow>"] and char_ids[5] == chars["<bow>"]
    assert list(char_ids[1:5]) == [chars[c] for c in "Bank"]
    # <pad> over the rest of the full token length.
    assert (char_ids[6:] == chars["<pad>"]).all()
    # <bos> / <eos> are one dictionary character; their words are the dictionary's entries.
    for marker in ("<bos>", "<eos>"):
        ids = vocab.token_ids(marker) - 1
        assert ids[0] == words[marker]
        assert list(ids[1:4]) == [chars["<eow>"], chars[marker], chars["<bow>"]]
        assert (ids[4:] == chars["<pad>"]).all()
    np.testing.assert_array_equal(model.bos_ids.numpy(), vocab.token_ids("<bos>"))
    # Unknown words and characters take the <oov> ids.
    ids = vocab.token_ids("Ωa") - 1
    assert "Ωa" not in words and "Ω" not in chars
    assert ids[0] == words["<oov>"]
    assert list(ids[1:4]) == [chars["<eow>"], chars["<oov>"], chars["a"]]


def test_long_words_are_cut_to_max_characters_minus_2(model: EfmlBiLM) -> None:
    vocab = model.vocabulary
    word = "Bankmeisterschaftsteilnehmerinnenfluss" * 2  # 76 characters
    np.testing.assert_array_equal(vocab.token_ids(word), vocab.token_ids(word[:48]))
    assert not np.array_equal(vocab.token_ids(word[:48]), vocab.token_ids(word[:47]))
    assert vocab.token_ids(word[:48])[-1] - 1 == vocab.chars["<bow>"]  # 48 characters fill all 50 positions
    # The cut word is also what the word dictionary is asked for.
    assert vocab.token_ids("Fluss" + "x" * 60)[0] == vocab.token_ids(("Fluss" + "x" * 60)[:48])[0]
    literal = literal_model(FIXTURE_MODEL)
    sentence = ["Der", word, "Fluss"]
    assert np.abs(model.embed_sentences([sentence])[0] - literal.layers(sentence)).max() < TOLERANCE


def test_unknown_words_and_characters(model: EfmlBiLM) -> None:
    """Characters outside the dictionary are all <oov>: swapping one unknown one for another changes nothing."""
    chars = model.vocabulary.chars
    assert chars is not None and "Ω" not in chars and "Ж" not in chars and "ж" not in chars
    a, b, known = model.embed_sentences([["Ωmega", "x"], ["Жmega", "x"], ["amega", "x"]])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, known)
    literal = literal_model(FIXTURE_MODEL)
    for sentence in (["Ωmega", "ünïcödé", "жжж"], ["unbekanntes", "Wort", "Bank"]):
        assert np.abs(model.embed_sentences([sentence])[0] - literal.layers(sentence)).max() < TOLERANCE


def test_a_single_field_line_is_the_ideographic_space() -> None:
    entries = parse_dictionary("<oov>\t0\n\u3000\t1\nab\t2\n\n  x\t3  \r\n", "test.dic")
    assert entries == {"<oov>": 0, "\u3000": 1, "ab": 2, "x": 3}
    assert parse_dictionary("\t7\n", "test.dic") == {"\u3000": 7}
    assert parse_dictionary(format_dictionary(entries), "again") == entries


def test_word_embedding_rows_are_used_as_saved(model: EfmlBiLM) -> None:
    saved = torch.load(FIXTURE_MODEL / "token_embedder.pkl", weights_only=True)
    rows = saved["word_emb_layer.embedding.weight"]
    np.testing.assert_allclose(rows.norm(dim=1).numpy(), 1.0, atol=1e-6)
    assert torch.equal(model.token_encoder.word_embedding.weight, rows)


# ---- a second model of the format: other sizes, built from random weights in their layout ----


def write_random_efml(
    directory: Path,
    *,
    char_dim: int,
    word_dim: int,
    seed: int,
    legacy_pickle: bool = True,
    config_name: str = "net.json",
) -> dict:
    """A model directory in the format's own layout, with random weights; returns its network config."""
    config = {
        "encoder": {"name": "elmo", "projection_dim": 10, "cell_clip": 2, "proj_clip": 1.5, "dim": 20, "n_layers": 3},
        "token_embedder": {
            "name": "cnn",
            "activation": "tanh",
            "filters": [[1, 4], [3, 6], [5, 10]],
            "n_highway": 1,
            "word_dim": word_dim,
            "char_dim": char_dim,
            "max_characters_per_token": 12,
        },
        "classifier": {"name": "sampled_softmax", "n_samples": 16},
        "dropout": 0.1,
    }
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"config_path": config_name}))
    (directory / config_name).write_text(json.dumps(config))
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.5) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    token: OrderedDict[str, torch.Tensor] = OrderedDict()
    n_filters = 20 if char_dim else 0
    if word_dim:
        words = ["<pad>", "<oov>", "<eos>", "<bos>", "Haus", "Baum", "der", "die", "Bäume"]
        (directory / "word.dic").write_text("".join(f"{w}\t{i}\n" for i, w in enumerate(words)), encoding="utf-8")
        rows = rand(len(words), word_dim)
        token["word_emb_layer.embedding.weight"] = rows / rows.norm(dim=1, keepdim=True)
    if char_dim:
        specials = ["<eos>", "<pad>", "<bow>", "<oov>", "<eow>", "<bos>"]  # not in the fixture's order
        letters = list("Hausmbdeiräöß")
        lines = [f"{c}\t{i}\n" for i, c in enumerate(specials + letters)]
        lines.append(f"\t{len(lines)}\n")  # a single field: the ideographic space
        (directory / "char.dic").write_text("".join(lines), encoding="utf-8")
        n_chars = len(lines)
        token["char_emb_layer.embedding.weight"] = rand(n_chars, char_dim)
        for i, (width, n_out) in enumerate(config["token_embedder"]["filters"]):
            token[f"convolutions.{i}.weight"] = rand(n_out, char_dim, width)
            token[f"convolutions.{i}.bias"] = rand(n_out, scale=0.1)
        token["highways._layers.0.weight"] = rand(2 * n_filters, n_filters, scale=0.3)
        token["highways._layers.0.bias"] = rand(2 * n_filters, scale=0.1)
    token["projection.weight"] = rand(10, word_dim + n_filters, scale=0.3)
    token["projection.bias"] = rand(10, scale=0.1)
    encoder: OrderedDict[str, torch.Tensor] = OrderedDict()
    for layer in range(3):
        for direction in ("forward", "backward"):
            prefix = f"{direction}_layer_{layer}"
            encoder[f"{prefix}.input_linearity.weight"] = rand(80, 10, scale=0.3)
            encoder[f"{prefix}.state_linearity.weight"] = rand(80, 10, scale=0.3)
            encoder[f"{prefix}.state_linearity.bias"] = rand(80, scale=0.3)
            encoder[f"{prefix}.state_projection.weight"] = rand(10, 20, scale=0.3)
    # Released models were saved by pytorch 0.4: the legacy (non-zip) serialization.
    torch.save(token, directory / "token_embedder.pkl", _use_new_zipfile_serialization=not legacy_pickle)
    torch.save(encoder, directory / "encoder.pkl", _use_new_zipfile_serialization=not legacy_pickle)
    return config


SECOND_MODEL_SENTENCES = [
    ["Häuser", "und", "Bäume", "\u3000", "ß"],
    ["der", "Baum"],
    ["Baumhausmeisterei", "die"],  # 17 characters: cut to 10
    ["x"],
    ["<bos>", "Haus", "<eos>"],
]


@pytest.mark.parametrize(("char_dim", "word_dim"), [(5, 0), (0, 7), (3, 4)], ids=["chars-only", "words-only", "both"])
def test_second_model_of_other_sizes_matches_a_literal_reading(tmp_path: Path, char_dim: int, word_dim: int) -> None:
    config = write_random_efml(tmp_path / "model", char_dim=char_dim, word_dim=word_dim, seed=char_dim * 10 + word_dim)
    bilm = load_bilm(tmp_path / "model")
    assert isinstance(bilm, EfmlBiLM)
    assert bilm.n_output_layers == 4 and bilm.output_dim == 20
    literal = LiteralEfml(tmp_path / "model", config)
    got = bilm.embed_sentences(SECOND_MODEL_SENTENCES)
    for sentence, layers in zip(SECOND_MODEL_SENTENCES, got, strict=True):
        want = literal.layers(sentence)
        assert layers.shape == want.shape == (4, len(sentence), 20)
        assert np.abs(layers - want).max() < TOLERANCE


def test_save_efml_writes_their_layout_bit_for_bit(tmp_path: Path, model: EfmlBiLM) -> None:
    save_efml(model, tmp_path / "saved")
    for name in ("token_embedder.pkl", "encoder.pkl"):
        original = torch.load(FIXTURE_MODEL / name, weights_only=True)
        saved = torch.load(tmp_path / "saved" / name, weights_only=True)
        assert list(saved) == list(original)
        for key in original:
            assert torch.equal(saved[key], original[key]), key
    for name in ("char.dic", "word.dic"):
        assert parse_dictionary((tmp_path / "saved" / name).read_text(encoding="utf-8"), name) == parse_dictionary(
            (FIXTURE_MODEL / name).read_text(encoding="utf-8"), name
        )
    # Fresh models both: the module's model caches token vectors made in other batches.
    reloaded, fresh = load_efml(tmp_path / "saved"), load_efml(FIXTURE_MODEL)
    sentence = ["Die", "Bank", "Ωmega"]
    np.testing.assert_array_equal(reloaded.embed_sentences([sentence])[0], fresh.embed_sentences([sentence])[0])


def test_save_bilm_refuses_an_efml_model(tmp_path: Path, model: EfmlBiLM) -> None:
    with pytest.raises(ElmoWeightsError, match="save_efml"):
        save_bilm(model, tmp_path / "out")
    assert not (tmp_path / "out" / "options.json").exists()


def test_word_ids_beyond_int16_are_distinct_in_the_word_cache(tmp_path: Path) -> None:
    """The inference cache keys on id rows; word ids above 65535 must not collide."""
    write_random_efml(tmp_path / "model", char_dim=0, word_dim=3, seed=1)
    vocab_lines = ["<pad>\t0\n", "<oov>\t1\n", "<bos>\t2\n", "<eos>\t3\n"]
    vocab_lines += [f"w{i}\t{i}\n" for i in range(4, 70_004)]
    (tmp_path / "model" / "word.dic").write_text("".join(vocab_lines))
    token = torch.load(tmp_path / "model" / "token_embedder.pkl", weights_only=True)
    token["word_emb_layer.embedding.weight"] = torch.randn(70_004, 3)
    torch.save(token, tmp_path / "model" / "token_embedder.pkl")
    bilm = load_bilm(tmp_path / "model")
    first = bilm.embed_sentences([["w5"]])[0]
    second = bilm.embed_sentences([["w65541"]])[0]  # 65541 = 5 + 65536
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(bilm.embed_sentences([["w65541"]], batch_size=1)[0], second)


# ---- config fallbacks ----


def test_missing_config_file_falls_back_to_the_known_config_by_name(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    for reference, name in [
        ("../configs/cnn_50_100_512_4096_sample.json", "cnn_50_100_512_4096_sample.json"),
        ("/somewhere/else/cnn_0_100_512_4096_sample.json", "cnn_0_100_512_4096_sample.json"),
    ]:
        (directory / "config.json").write_text(json.dumps({"config_path": reference}))
        config, source = read_network_config(directory)
        assert name in source
        assert config.to_dict()["token_embedder"] == KNOWN_CONFIGS[name]["token_embedder"]
        assert (config.projection_dim, config.lstm_dim, config.n_layers, config.n_filters) == (512, 4096, 2, 2048)
        assert (config.char_dim, config.max_characters_per_token) == (50, 50)
        assert config.word_dim == (100 if "50_100" in name else 0)
    # No config_path: the known config that matches the weights (here: with a word embedding).
    (directory / "config.json").write_text("{}")
    assert read_network_config(directory, has_word_embedding=True)[0].word_dim == 100
    assert read_network_config(directory, has_word_embedding=False)[0].word_dim == 0


def test_absolute_config_path_is_not_read_but_its_name_is_found_in_the_directory(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    outside = tmp_path / "elsewhere" / "net.json"
    outside.parent.mkdir()
    outside.write_text("not json")  # would fail if it were read
    (directory / "config.json").write_text(json.dumps({"config_path": str(outside)}))
    config, source = read_network_config(directory)
    assert source == str(directory / "net.json") and config.projection_dim == 16


def test_unknown_config_name_is_an_error_naming_config_json(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    (directory / "config.json").write_text(json.dumps({"config_path": "../configs/cnn_7_7.json"}))
    with pytest.raises(ElmoOptionsError, match=r"config\.json.*cnn_7_7\.json.*known network configs"):
        load_efml(directory)


def test_released_sizes_checked_against_the_known_config(tmp_path: Path) -> None:
    """A fixture-sized model behind a released config's name: the shape error names file and tensor."""
    directory = copy_model(tmp_path / "model")
    (directory / "net.json").unlink()
    (directory / "config.json").write_text(json.dumps({"config_path": "cnn_50_100_512_4096_sample.json"}))
    with pytest.raises(ElmoWeightsError, match=r"token_embedder\.pkl: tensor 'word_emb_layer\.embedding\.weight'.*"):
        load_efml(directory)


# ---- bad model directories ----


def test_missing_dictionary(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    (directory / "char.dic").unlink()
    with pytest.raises(ElmoWeightsError, match=r"dictionary not found: .*char\.dic"):
        load_bilm(directory)


def test_dictionary_without_a_special_entry(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    lines = (directory / "char.dic").read_text(encoding="utf-8").splitlines(keepends=True)
    (directory / "char.dic").write_text("".join(line for line in lines if not line.startswith("<bow>")))
    with pytest.raises(ElmoWeightsError, match=r"char\.dic lacks the special entries <bow>"):
        load_efml(directory)


def test_bad_dictionary_lines(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    with (directory / "word.dic").open("a", encoding="utf-8") as handle:
        handle.write("a\tb\t3\n")
    with pytest.raises(ElmoWeightsError, match=r"word\.dic, line 39: expected 'token<TAB>id', found 3"):
        load_efml(directory)
    (directory / "word.dic").write_text("<oov>\t0\n<pad>\tone\n")
    with pytest.raises(ElmoWeightsError, match=r"word\.dic, line 2: id 'one'"):
        load_efml(directory)


def test_dictionary_and_embedding_disagree(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    with (directory / "word.dic").open("a", encoding="utf-8") as handle:
        handle.write("neu\t38\n")
    with pytest.raises(
        ElmoWeightsError, match=r"'word_emb_layer\.embedding\.weight' has shape \(38, 12\), expected \(39"
    ):
        load_efml(directory)
    (directory / "word.dic").write_text((FIXTURE_MODEL / "word.dic").read_text(encoding="utf-8") + "neu\t99\n")
    with pytest.raises(ElmoWeightsError, match=r"id 99 of 'neu' is out of range"):
        load_efml(directory)


def test_wrong_tensor_shape_names_file_and_tensor(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    encoder = torch.load(directory / "encoder.pkl", weights_only=True)
    encoder["backward_layer_1.state_projection.weight"] = torch.zeros(16, 47)
    torch.save(encoder, directory / "encoder.pkl")
    with pytest.raises(
        ElmoWeightsError,
        match=r"encoder\.pkl: tensor 'backward_layer_1\.state_projection\.weight' has shape \(16, 47\), "
        r"expected \(16, 48\) from .*net\.json",
    ):
        load_bilm(directory)
    del encoder["backward_layer_1.state_projection.weight"]
    torch.save(encoder, directory / "encoder.pkl")
    with pytest.raises(ElmoWeightsError, match=r"missing tensor 'backward_layer_1\.state_projection\.weight'"):
        load_efml(directory)


class _RunsCode:
    """Unpickling this would call ``Path.touch`` on the marker: code run from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_a_pickle_that_is_not_a_plain_state_dict_runs_no_code(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    marker = tmp_path / "code_ran"
    with (directory / "token_embedder.pkl").open("wb") as handle:
        pickle.dump(OrderedDict(weight=_RunsCode(marker)), handle)
    with pytest.raises(ElmoWeightsError, match=r"token_embedder\.pkl: not a plain PyTorch state dict"):
        load_bilm(directory)
    assert not marker.exists()
    # A whole pickled module (what torch.save(model) writes) is refused the same way.
    torch.save(torch.nn.Linear(2, 2), directory / "token_embedder.pkl")
    with pytest.raises(ElmoWeightsError, match="not a plain PyTorch state dict"):
        load_efml(directory)
    # Plain data, but not a mapping of tensors.
    torch.save([torch.zeros(2)], directory / "encoder.pkl")
    shutil.copy(FIXTURE_MODEL / "token_embedder.pkl", directory / "token_embedder.pkl")
    with pytest.raises(ElmoWeightsError, match=r"encoder\.pkl: holds a list, expected a state dict"):
        load_efml(directory)
    (directory / "encoder.pkl").write_bytes(b"truncated")
    with pytest.raises(ElmoWeightsError, match=r"encoder\.pkl: not a plain PyTorch state dict"):
        load_efml(directory)


def test_nan_weights_and_missing_files(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    token = torch.load(directory / "token_embedder.pkl", weights_only=True)
    token["projection.bias"][3] = float("nan")
    torch.save(token, directory / "token_embedder.pkl")
    with pytest.raises(ElmoWeightsError, match=r"'projection\.bias' holds NaN"):
        load_efml(directory)
    (directory / "token_embedder.pkl").unlink()
    with pytest.raises(ElmoWeightsError, match=r"weight file not found: .*token_embedder\.pkl"):
        load_efml(directory)
    with pytest.raises(ElmoWeightsError, match="model directory not found"):
        load_efml(tmp_path / "nothing")


def test_unsupported_network_configs(tmp_path: Path) -> None:
    directory = copy_model(tmp_path / "model")
    config = json.loads((directory / "net.json").read_text())
    config["token_embedder"]["name"] = "lstm"
    (directory / "net.json").write_text(json.dumps(config))
    with pytest.raises(ElmoOptionsError, match=r"net\.json: 'token_embedder\.name' must be 'cnn'"):
        load_efml(directory)
    config["token_embedder"]["name"] = "cnn"
    config["encoder"]["name"] = "lstm"
    (directory / "net.json").write_text(json.dumps(config))
    with pytest.raises(ElmoOptionsError, match=r"'encoder\.name' must be 'elmo'"):
        load_efml(directory)


def test_one_argument_load_bilm_takes_a_bilm_tf_directory_too(weights_dir: Path) -> None:
    from ..conftest import OPTIONS_FILE, WEIGHT_FILE

    one = load_bilm(weights_dir)
    two = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    assert not isinstance(one, EfmlBiLM)
    sentence = [["The", "bank", "."]]
    np.testing.assert_array_equal(one.embed_sentences(sentence)[0], two.embed_sentences(sentence)[0])
    with pytest.raises(ElmoWeightsError, match="is an options file"):
        load_bilm(OPTIONS_FILE)


@pytest.mark.slow
def test_released_sizes_through_the_built_in_config(tmp_path: Path) -> None:
    """A model of the released sizes (random weights, their legacy pickle format) whose config.json
    points at the usual missing ``../configs/cnn_50_100_512_4096_sample.json``."""
    config = KNOWN_CONFIGS["cnn_50_100_512_4096_sample.json"]
    directory = tmp_path / "de.model"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"config_path": "../configs/cnn_50_100_512_4096_sample.json"}))
    chars = ["<oov>", "<pad>", "<bos>", "<eos>", "<bow>", "<eow>", *"abcdefghijklmnopqrstuvwxyzäöüß"]
    words = ["<oov>", "<pad>", "<bos>", "<eos>", "die", "bank", "am", "fluss"]
    (directory / "char.dic").write_text("".join(f"{c}\t{i}\n" for i, c in enumerate(chars)), encoding="utf-8")
    (directory / "word.dic").write_text("".join(f"{w}\t{i}\n" for i, w in enumerate(words)), encoding="utf-8")
    generator = torch.Generator().manual_seed(3)

    def rand(*shape: int, scale: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    token: OrderedDict[str, torch.Tensor] = OrderedDict()
    token["word_emb_layer.embedding.weight"] = torch.nn.functional.normalize(rand(len(words), 100), dim=1)
    token["char_emb_layer.embedding.weight"] = torch.nn.functional.normalize(rand(len(chars), 50), dim=1)
    for i, (width, n_out) in enumerate(config["token_embedder"]["filters"]):
        token[f"convolutions.{i}.weight"] = rand(n_out, 50, width, scale=0.2)
        token[f"convolutions.{i}.bias"] = rand(n_out)
    for k in range(2):
        token[f"highways._layers.{k}.weight"] = rand(4096, 2048, scale=0.02)
        token[f"highways._layers.{k}.bias"] = rand(4096)
    token["projection.weight"] = rand(512, 2148, scale=0.05)
    token["projection.bias"] = rand(512)
    encoder: OrderedDict[str, torch.Tensor] = OrderedDict()
    for layer in range(2):
        for direction in ("forward", "backward"):
            prefix = f"{direction}_layer_{layer}"
            encoder[f"{prefix}.input_linearity.weight"] = rand(16384, 512, scale=0.05)
            encoder[f"{prefix}.state_linearity.weight"] = rand(16384, 512, scale=0.05)
            encoder[f"{prefix}.state_linearity.bias"] = rand(16384, scale=0.5)
            encoder[f"{prefix}.state_projection.weight"] = rand(512, 4096, scale=0.02)
    torch.save(token, directory / "token_embedder.pkl", _use_new_zipfile_serialization=False)
    torch.save(encoder, directory / "encoder.pkl", _use_new_zipfile_serialization=False)
    del token, encoder
    bilm = load_bilm(directory)
    assert bilm.output_dim == 1024 and bilm.n_output_layers == 3
    sentence = ["die", "bank", "am", "Fluss"]
    got = bilm.embed_sentences([sentence])[0]
    want = LiteralEfml(directory, config).layers(sentence)
    assert got.shape == want.shape == (3, 4, 1024)
    assert np.abs(got - want).max() < TOLERANCE


def test_word_cache_size_applies_to_efml_models_and_the_cache_is_exact() -> None:
    sentences = [["the", "cat", "sat"], ["the", "dog", "sat", "down"], ["a", "cat"]]
    uncached = load_bilm(FIXTURE_MODEL, word_cache_size=0)
    cached = load_bilm(FIXTURE_MODEL, word_cache_size=4)
    assert cached.word_cache_size == 4 and uncached.word_cache_size == 0
    first = cached.embed_sentences(sentences, batch_size=1)
    again = cached.embed_sentences(sentences, batch_size=1)
    expected = uncached.embed_sentences(sentences, batch_size=1)
    assert len(cached.word_cache) == 4 and len(uncached.word_cache) == 0
    for a, b, c in zip(first, again, expected, strict=True):
        assert np.abs(a - c).max() <= 1e-6 and np.abs(b - c).max() <= 1e-6
