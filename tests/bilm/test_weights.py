"""Reading and writing the reference weight layout, model variants, and bad files."""

import json
import os
import shutil
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

from spacy_elmo import ElmoOptionsError, ElmoWeightsError, load_bilm, save_bilm

from ..conftest import OPTIONS_FILE, WEIGHT_FILE, random_model_files, small_options
from ..numpy_reference import NumpyElmo

SENTENCES = [["The", "bank", "of", "the", "river", "."], ["Money", "in", "the", "bank"], ["x"], []]


def _datasets(path: Path) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def test_fixture_round_trip_is_bit_exact(tmp_path):
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    options_file, weight_file = save_bilm(model, tmp_path / "out")
    original, written = _datasets(WEIGHT_FILE), _datasets(weight_file)
    assert sorted(original) == sorted(written)
    for name, array in original.items():
        assert written[name].dtype == np.float32
        assert written[name].shape == array.shape, name
        assert np.array_equal(written[name].view(np.uint32), array.view(np.uint32)), name
    assert json.loads(options_file.read_text()) == json.loads(OPTIONS_FILE.read_text())
    reloaded = load_bilm(options_file, weight_file)
    a, b = model.embed_sentences(SENTENCES), reloaded.embed_sentences(SENTENCES)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


VARIANTS = {
    "reference": {},
    "no_skip_connections": {"lstm__use_skip_connections": False},
    "no_clipping": {"lstm__cell_clip": None, "lstm__proj_clip": 0},
    "tanh_no_highway": {"char_cnn__activation": "tanh", "char_cnn__n_highway": 0},
    "two_highway_three_layers": {"char_cnn__n_highway": 2, "lstm__n_layers": 3},
    "no_projection": {"char_cnn__filters": [[1, 2], [3, 2], [7, 4]]},  # 8 filters == P
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_match_a_literal_numpy_reading_of_the_spec(tmp_path, variant):
    options = small_options(**VARIANTS[variant])
    if variant == "no_clipping":
        del options["lstm"]["cell_clip"]
    options_file, weight_file = random_model_files(tmp_path, options)
    if variant == "no_projection":
        assert "CNN_proj/W_proj" not in _datasets(weight_file)
    model = load_bilm(options_file, weight_file)
    reference = NumpyElmo(json.loads(options_file.read_text()), str(weight_file))
    outputs = model.embed_sentences(SENTENCES, batch_size=3)
    n_layers = options["lstm"]["n_layers"] + 1
    for sentence, output in zip(SENTENCES, outputs, strict=True):
        assert output.shape == (n_layers, len(sentence), 16)
        if sentence:
            np.testing.assert_allclose(output, reference.sentence(sentence), atol=2e-5, rtol=0)
    # and the variant survives a round trip bit for bit
    _, again = save_bilm(model, tmp_path / "again")
    first, second = _datasets(weight_file), _datasets(again)
    assert sorted(first) == sorted(second)
    assert all(np.array_equal(first[k], second[k]) for k in first)


def _write_options(path: Path, **changes: object) -> Path:
    data = json.loads(OPTIONS_FILE.read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        data[section][name] = value
    path.write_text(json.dumps(data))
    return path


def _copy_without(tmp_path: Path, dataset: str) -> Path:
    target = tmp_path / "weights.hdf5"
    shutil.copy(WEIGHT_FILE, target)
    with h5py.File(target, "a") as f:
        del f[dataset]
    return target


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ElmoOptionsError, match=r"options file not found: .*nope\.json"):
        load_bilm(tmp_path / "nope.json", WEIGHT_FILE)
    with pytest.raises(ElmoWeightsError, match=r"weight file not found: .*nope\.hdf5"):
        load_bilm(OPTIONS_FILE, tmp_path / "nope.hdf5")


def test_not_hdf5_and_truncated_files(tmp_path):
    text = tmp_path / "weights.txt"
    text.write_text("these are not weights\n")
    with pytest.raises(ElmoWeightsError, match=r"weights.txt: not a readable HDF5 weight file"):
        load_bilm(OPTIONS_FILE, text)
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(WEIGHT_FILE.read_bytes()[: WEIGHT_FILE.stat().st_size // 2])
    with pytest.raises(ElmoWeightsError, match=r"truncated.hdf5: .*(truncated|damaged)"):
        load_bilm(OPTIONS_FILE, truncated)


def test_missing_dataset_is_named_with_its_shape(tmp_path):
    name = "RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0"
    weights = _copy_without(tmp_path, name)
    with pytest.raises(ElmoWeightsError, match=rf"missing dataset '{name}' \(expected shape \(64, 16\)"):
        load_bilm(OPTIONS_FILE, weights)


def test_options_that_disagree_with_weights(tmp_path):
    options = _write_options(tmp_path / "options.json", lstm__dim=32)
    with pytest.raises(
        ElmoWeightsError,
        match=r"dataset 'RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0' has shape \(32, 256\), expected \(32, 128\)",
    ):
        load_bilm(options, WEIGHT_FILE)
    options = _write_options(tmp_path / "options.json", char_cnn__n_highway=1)
    with pytest.raises(ElmoWeightsError, match=r"has dataset 'CNN_high_1', but .*char_cnn.n_highway = 1"):
        load_bilm(options, WEIGHT_FILE)
    options = _write_options(tmp_path / "options.json", char_cnn__filters=[[1, 4], [2, 8], [3, 16], [4, 32], [6, 64]])
    with pytest.raises(ElmoWeightsError, match=r"'CNN/W_cnn_4' has shape \(1, 5, 4, 64\), expected \(1, 6, 4, 64\)"):
        load_bilm(options, WEIGHT_FILE)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"char_cnn__activation": "gelu"}, r"'char_cnn.activation' must be one of"),
        ({"char_cnn__max_characters_per_token": 60}, r"'char_cnn.max_characters_per_token' must be 50"),
        ({"lstm__n_layers": 0}, r"'lstm.n_layers' must be an integer >= 1, found 0"),
        ({"char_cnn__filters": [[1, 4], [2]]}, r"'char_cnn.filters\[1\]' must be \[width, n_out\]"),
        ({"lstm__use_skip_connections": "yes"}, r"'lstm.use_skip_connections' must be true or false"),
        ({"lstm__cell_clip": -1}, r"'lstm.cell_clip' must be a positive number"),
    ],
)
def test_unsupported_option_values(tmp_path, changes, message):
    options = _write_options(tmp_path / "options.json", **changes)
    with pytest.raises(ElmoOptionsError, match=rf"options.json: {message}"):
        load_bilm(options, WEIGHT_FILE)


def test_options_that_are_not_json(tmp_path):
    bad = tmp_path / "options.json"
    bad.write_text("{not json")
    with pytest.raises(ElmoOptionsError, match=r"options.json: not a readable JSON options file"):
        load_bilm(bad, WEIGHT_FILE)
    bad.write_text(json.dumps({"lstm": {}}))
    with pytest.raises(ElmoOptionsError, match=r"missing the 'char_cnn' section"):
        load_bilm(bad, WEIGHT_FILE)


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    target = tmp_path / "out"

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        save_bilm(model, target)
    assert list(target.iterdir()) == []


def test_saved_files_get_ordinary_permissions(tmp_path):
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    old = os.umask(0o022)
    try:
        options_file, weight_file = save_bilm(model, tmp_path / "out")
    finally:
        os.umask(old)
    assert stat.S_IMODE(weight_file.stat().st_mode) == 0o644
    assert stat.S_IMODE(options_file.stat().st_mode) == 0o644


def test_weights_are_read_block_by_block_into_the_parameters(
    monkeypatch: pytest.MonkeyPatch, fixture_copy: tuple[Path, Path]
) -> None:
    """Small read blocks (many per matrix) give the same parameters, bit for bit; a NaN in a
    later block still fails the load, naming the dataset."""
    import spacy_elmo.bilm.weights as weights_module
    from spacy_elmo.bilm.options import read_options

    _, arrays = weights_module.read_weight_arrays(WEIGHT_FILE, read_options(OPTIONS_FILE))
    monkeypatch.setattr(weights_module, "READ_BLOCK_BYTES", 64)
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    written = weights_module.weight_arrays(model)
    assert written.keys() == arrays.keys()
    for name, array in arrays.items():
        assert np.array_equal(written[name], array), name
    options, weights = fixture_copy
    name = "RNN_0/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"
    with h5py.File(weights, "r+") as handle:
        handle[name][-1, -1] = np.nan
    with pytest.raises(ElmoWeightsError, match="W_0' holds NaN"):
        load_bilm(options, weights)
