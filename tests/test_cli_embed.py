"""`python -m spacy_elmo embed`: the layout AllenNLP's `elmo` command writes."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from spacy_elmo.cli import main

from .conftest import OPTIONS_FILE, WEIGHT_FILE, random_model_files, small_options
from .numpy_reference import NumpyElmo


def _stream_file(tmp_path: Path, fixture_sentences: list[list[str]]) -> Path:
    """The 30 fixture sentences so that consecutive batches of 3 are the reference's calls."""
    path = tmp_path / "sentences.txt"
    lines = [fixture_sentences[k][i] for i in range(10) for k in range(3)]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")  # and one empty line at the end
    return path


def _embed(*args: str) -> int:
    return main(["embed", *map(str, args), "--options-file", str(OPTIONS_FILE), "--weight-file", str(WEIGHT_FILE)])


def test_stateful_embed_reproduces_reference_top_layers(tmp_path, fixture_sentences, expected_top_layers):
    out = tmp_path / "out.hdf5"
    source = _stream_file(tmp_path, fixture_sentences)
    assert _embed(source, out, "--batch-size", "3", "--state", "stateful", "--quiet") == 0
    with h5py.File(out, "r") as f:
        assert sorted(f, key=int) == [str(i) for i in range(31)]
        for i in range(10):
            for k in range(3):
                layers = f[str(3 * i + k)][()]
                assert layers.shape == (3, len(fixture_sentences[k][i].split()), 32)
                np.testing.assert_allclose(layers[2], expected_top_layers[k][i], atol=1e-5, rtol=0)
        assert f["30"].shape == (3, 0, 32)


@pytest.mark.parametrize("layers", ["top", "average"])
def test_layer_choices_in_reset_mode(tmp_path, fixture_sentences, layers):
    source = _stream_file(tmp_path, fixture_sentences)
    all_out, one_out = tmp_path / "all.hdf5", tmp_path / f"{layers}.hdf5"
    assert _embed(source, all_out, "--quiet") == 0
    assert _embed(source, one_out, "--layers", layers, "--batch-size", "5", "--quiet") == 0
    with h5py.File(all_out, "r") as a, h5py.File(one_out, "r") as b:
        for name in ("0", "17"):
            expected = a[name][()][2] if layers == "top" else a[name][()].mean(0)
            assert b[name].shape == expected.shape
            # batch sizes differ (64 vs 5): OpenBLAS rounds by matrix size, a few float32 ulps
            np.testing.assert_allclose(b[name][()], expected, atol=5e-6, rtol=0)
        assert b["30"].shape == (0, 32)


def test_int8_precision_writes_close_vectors(tmp_path, fixture_sentences):
    source = _stream_file(tmp_path, fixture_sentences)
    exact_out, int8_out = tmp_path / "fp32.hdf5", tmp_path / "int8.hdf5"
    assert _embed(source, exact_out, "--quiet") == 0
    assert _embed(source, int8_out, "--precision", "int8", "--quiet") == 0
    with h5py.File(exact_out, "r") as a, h5py.File(int8_out, "r") as b:
        difference = max(float(np.abs(a[name][()] - b[name][()]).max(initial=0.0)) for name in a)
    assert 0 < difference < 0.2


def test_embed_on_weights_not_in_the_fixture(tmp_path):
    """A model the tests never saw (no skip connections) against the literal NumPy reading."""
    options_file, weight_file = random_model_files(tmp_path, small_options(lstm__use_skip_connections=False), seed=3)
    source = tmp_path / "in.txt"
    source.write_text("Hello world .\nThe bank of the river\n", encoding="utf-8")
    out = tmp_path / "out.hdf5"
    code = main(
        ["embed", str(source), str(out), "--options-file", str(options_file), "--weight-file", str(weight_file)]
    )
    assert code == 0
    reference = NumpyElmo(json.loads(options_file.read_text()), str(weight_file))
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(
            f["1"][()], reference.sentence(["The", "bank", "of", "the", "river"]), atol=2e-5, rtol=0
        )


def test_errors_are_reported_and_no_output_is_left(tmp_path, capsys):
    out = tmp_path / "out.hdf5"
    assert _embed(tmp_path / "missing.txt", out) == 1
    assert "cannot read input file" in capsys.readouterr().err and not out.exists()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    assert _embed(bad, out) == 1
    assert "bad.txt, line 2: not valid UTF-8" in capsys.readouterr().err and not out.exists()
    good = tmp_path / "good.txt"
    good.write_text("a b\n")
    weights = tmp_path / "weights.hdf5"
    weights.write_text("not hdf5")
    code = main(["embed", str(good), str(out), "--options-file", str(OPTIONS_FILE), "--weight-file", str(weights)])
    assert code == 1 and "not a readable HDF5 weight file" in capsys.readouterr().err
    assert list(tmp_path.glob("*out.hdf5*")) == []


def test_failure_midway_keeps_the_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"previous result")
    source = tmp_path / "in.txt"
    source.write_text("a b\nc\n" * 10)
    from spacy_elmo.bilm.model import ElmoBiLM

    def broken(self, sentences, batch_size=64):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(ElmoBiLM, "embed_sentences", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        _embed(source, out)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.hdf5"]


def test_module_entry_point_and_progress_bar(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("word\n" * 250)
    out = tmp_path / "out.hdf5"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy_elmo",
            "embed",
            str(source),
            str(out),
            "--options-file",
            str(OPTIONS_FILE),
            "--weight-file",
            str(WEIGHT_FILE),
            "--layers",
            "top",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "250/250" in result.stderr and "wrote 250 sentences" in result.stderr
    with h5py.File(out, "r") as f:
        assert len(f) == 250 and f["249"].shape == (1, 32)
