"""The shipped configs through spaCy's command line: debug config, train, package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import spacy

from ..elmo_helpers import copy_fixture_weights
from ..training_data import ner_examples, textcat_examples, write_docbin

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def spacy_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m spacy``; ``--code`` registers the plugin even where its entry points are not installed."""
    code = cwd / "register_spacy_elmo.py"
    code.write_text("import spacy_elmo  # noqa: F401\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "spacy", *map(str, args), "--code", str(code)]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    nlp = spacy.blank("en")
    ner, textcat = ner_examples(nlp), textcat_examples(nlp)
    return {
        "ner_train": write_docbin(ner, tmp_path / "ner_train.spacy"),
        "ner_dev": write_docbin(ner[::3], tmp_path / "ner_dev.spacy"),
        "textcat_train": write_docbin(textcat, tmp_path / "textcat_train.spacy"),
        "textcat_dev": write_docbin(textcat[::2], tmp_path / "textcat_dev.spacy"),
    }


@pytest.mark.parametrize("task", ["ner", "textcat"])
def test_debug_config_passes(task: str, tmp_path: Path, corpus: dict[str, Path]) -> None:
    weights = copy_fixture_weights(tmp_path / "weights")
    paths = ["--paths.train", corpus[f"{task}_train"], "--paths.dev", corpus[f"{task}_dev"], "--paths.elmo", weights]
    result = spacy_cli("debug", "config", CONFIGS / f"{task}.cfg", *paths, cwd=tmp_path)
    assert "Config is valid" in result.stdout


@pytest.mark.slow
def test_train_ner_and_package(tmp_path: Path, corpus: dict[str, Path]) -> None:
    weights = copy_fixture_weights(tmp_path / "weights")
    spacy_cli(
        "train",
        CONFIGS / "ner.cfg",
        "--paths.train",
        corpus["ner_train"],
        "--paths.dev",
        corpus["ner_dev"],
        "--paths.elmo",
        weights,
        "--output",
        tmp_path / "out",
        "--training.max_steps",
        "60",
        "--training.eval_frequency",
        "20",
        cwd=tmp_path,
    )
    best = tmp_path / "out" / "model-best"
    assert sorted(p.name for p in (best / "elmo").iterdir()) == ["cfg", "options.json", "weights.hdf5"]
    for path in weights.iterdir():
        path.unlink()
    nlp = spacy.load(best)
    doc = nlp("Angela Merkel visited Paris on Monday.")
    assert doc.tensor.shape == (7, 32)

    (tmp_path / "pkg").mkdir()
    spacy_cli("package", best, tmp_path / "pkg", "--name", "elmo_test", "--version", "0.0.1", cwd=tmp_path)
    package_dir = tmp_path / "pkg" / "en_elmo_test-0.0.1"
    meta = json.loads((package_dir / "meta.json").read_text())
    assert any(req.startswith("spacy-elmo") for req in meta["requirements"]), meta["requirements"]
    with tarfile.open(package_dir / "dist" / "en_elmo_test-0.0.1.tar.gz") as sdist:
        names = sdist.getnames()
    assert any(name.endswith("elmo/weights.hdf5") for name in names)
