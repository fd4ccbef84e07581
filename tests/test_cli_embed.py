"""`python -m spacy_elmo embed`: the layout AllenNLP's `elmo` command writes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from spacy_elmo.cli import main

from .conftest import OPTIONS_FILE, WEIGHT_FILE, random_model_files, small_options
from .numpy_reference import NumpyElmo

ROOT = Path(__file__).resolve().parent.parent


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


def test_cr_crlf_and_bom_are_read_as_a_text_editor_reads_them(tmp_path):
    plain = tmp_path / "lf.txt"
    plain.write_bytes(b"The cat sat\n\nhere .\n")
    variants = {
        "crlf": b"The cat sat\r\n\r\nhere .\r\n",
        "cr": b"The cat sat\r\rhere .\r",
        "bom": b"\xef\xbb\xbfThe cat sat\n\nhere .",
        "bom_cr": b"\xef\xbb\xbfThe cat sat\r\rhere .",
    }
    assert _embed(plain, tmp_path / "lf.hdf5", "--quiet") == 0
    with h5py.File(tmp_path / "lf.hdf5", "r") as f:
        expected = {name: f[name][()] for name in f}
    assert sorted(expected) == ["0", "1", "2"] and expected["0"].shape == (3, 3, 32)
    for name, data in variants.items():
        source = tmp_path / f"{name}.txt"
        source.write_bytes(data)
        assert _embed(source, tmp_path / f"{name}.hdf5", "--quiet") == 0
        with h5py.File(tmp_path / f"{name}.hdf5", "r") as f:
            assert sorted(f) == sorted(expected), name
            for key, array in expected.items():
                np.testing.assert_array_equal(f[key][()], array, err_msg=f"{name}, line {key}")


def test_output_directory_must_exist(tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("a b\n")
    assert _embed(source, tmp_path / "nowhere" / "out.hdf5") == 1
    assert "the directory" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


SLOW_EMBED = """
import sys, time
from pathlib import Path
from spacy_elmo.bilm.model import ElmoBiLM
from spacy_elmo.cli import main

ready = Path(sys.argv[1])
original = ElmoBiLM.embed_sentences

def slow(self, sentences, batch_size=64):
    result = original(self, sentences, batch_size=batch_size)
    ready.write_text("writing")  # the temporary output file is open now
    time.sleep(120)
    return result

ElmoBiLM.embed_sentences = slow
sys.exit(main(sys.argv[2:]))
"""


def _start_slow_embed(tmp_path: Path, out: Path) -> tuple[subprocess.Popen, list[Path]]:
    """A subprocess ``embed`` stopped midway through writing ``out``; returns it and its temporary files."""
    source = tmp_path / "in.txt"
    source.write_text("a b\nc\n")
    ready = tmp_path / "started-writing"
    ready.unlink(missing_ok=True)
    args = [str(ready), "embed", str(source), str(out), "--options-file", str(OPTIONS_FILE)]
    args += ["--weight-file", str(WEIGHT_FILE), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", SLOW_EMBED, *args], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "the embed subprocess never started writing"
        time.sleep(0.05)
    temps = sorted(tmp_path.glob(f".{out.name}.*.tmp"))
    return process, temps


def test_sigkill_leaves_a_temp_file_that_the_next_run_removes(tmp_path, capsys):
    out = tmp_path / "out.hdf5"
    process, temps = _start_slow_embed(tmp_path, out)
    assert len(temps) == 1, temps
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert temps[0].exists() and not out.exists()  # what a SIGKILL cannot avoid
    assert _embed(tmp_path / "in.txt", out, "--quiet") == 0
    assert f"removed {temps[0]}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if "out.hdf5" in p.name) == ["out.hdf5"]
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["0", "1"]


def test_sigterm_removes_the_temp_file(tmp_path):
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"previous result")
    process, temps = _start_slow_embed(tmp_path, out)
    assert len(temps) == 1, temps
    process.terminate()
    assert process.wait(timeout=60) == -signal.SIGTERM
    assert not temps[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "out.hdf5" in p.name) == ["out.hdf5"]
    assert out.read_bytes() == b"previous result"


def test_temp_files_of_live_writers_are_kept(tmp_path):
    from spacy_elmo.bilm.weights import remove_stale_temp_files

    out = tmp_path / "out.hdf5"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait(timeout=60)
        live_file = tmp_path / f".out.hdf5.{sleeper.pid}.abcd1234.tmp"
        dead_file = tmp_path / f".out.hdf5.{dead.pid}.efgh5678.tmp"
        other_output = tmp_path / f".out.hdf5x.{dead.pid}.efgh5678.tmp"
        for path in (live_file, dead_file, other_output):
            path.write_bytes(b"partial")
        assert remove_stale_temp_files(out) == [dead_file]
        assert live_file.exists() and other_output.exists() and not dead_file.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
