"""Fixtures shared by every test directory (bilm, layers, pipeline, sources, cli, pretrain, project) and the
fixture model's paths and helpers that write model files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from spacy.language import Language

from spacy_elmo.bilm.model import ElmoBiLM
from spacy_elmo.bilm.options import ElmoOptions
from spacy_elmo.bilm.weights import save_bilm

from .elmo_helpers import copy_fixture_weights, make_nlp

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "elmo"
OPTIONS_FILE = FIXTURE_DIR / "options.json"
WEIGHT_FILE = FIXTURE_DIR / "lm_weights.hdf5"


@pytest.fixture(scope="session")
def fixture_sentences() -> list[list[str]]:
    """3 streams x 10 whitespace-tokenized sentences."""
    return json.loads((FIXTURE_DIR / "sentences.json").read_text())


@pytest.fixture(scope="session")
def expected_top_layers() -> list[list[np.ndarray]]:
    """[stream][i]: the reference top layer (n_tokens, 32), forward half first."""
    result = []
    for k in range(3):
        with h5py.File(FIXTURE_DIR / f"lm_embeddings_{k}.hdf5", "r") as f:
            result.append([np.concatenate(list(f[str(i)][()]), axis=-1) for i in range(10)])
    return result


@pytest.fixture
def fixture_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A writable copy of the fixture's options.json and weights."""
    options, weights = tmp_path / "options.json", tmp_path / "lm_weights.hdf5"
    shutil.copy(OPTIONS_FILE, options)
    shutil.copy(WEIGHT_FILE, weights)
    return options, weights


def small_options(**changes: object) -> dict:
    """A small options dict in the reference layout; sections updated by ``changes``."""
    data = {
        "lstm": {
            "cell_clip": 3,
            "use_skip_connections": True,
            "n_layers": 2,
            "proj_clip": 3,
            "projection_dim": 8,
            "dim": 24,
        },
        "char_cnn": {
            "embedding": {"dim": 4},
            "filters": [[1, 4], [2, 4], [3, 8], [7, 8]],
            "n_highway": 1,
            "n_characters": 262,
            "max_characters_per_token": 50,
            "activation": "relu",
        },
    }
    for key, value in changes.items():
        section, name = key.split("__")
        data[section][name] = value
    return data


def random_model_files(directory: Path, options: dict, seed: int = 0) -> tuple[Path, Path]:
    """Random-weight model written in the reference layout; returns (options.json, weights.hdf5)."""
    torch.manual_seed(seed)
    model = ElmoBiLM(ElmoOptions.from_dict(options))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
        model.token_encoder.cnn.embedding.weight[0].zero_()
    return save_bilm(model, directory)


@pytest.fixture(scope="session", name="weights_dir")
def weights_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture biLM as a ``weights`` directory."""
    return copy_fixture_weights(tmp_path_factory.mktemp("elmo_weights"))


@pytest.fixture(name="nlp")
def nlp_fixture(weights_dir: Path) -> Language:
    """A blank English pipeline with an ``elmo`` component on the fixture biLM."""
    return make_nlp(weights_dir)
