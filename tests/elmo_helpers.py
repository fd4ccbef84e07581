"""Helpers shared by the spaCy component tests (fixtures are in conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import spacy
import torch
from spacy.language import Language

import spacy_elmo  # noqa: F401  (registers the factory and architectures)

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "elmo"
LAYER_WIDTH = 32  # 2P of the fixture model
N_LAYERS = 3

torch.set_num_threads(1)


def copy_fixture_weights(directory: Path) -> Path:
    """``options.json`` + ``lm_weights.hdf5`` of the fixture model, as a ``weights`` directory."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE_DIR / "options.json", directory / "options.json")
    shutil.copy(FIXTURE_DIR / "lm_weights.hdf5", directory / "lm_weights.hdf5")
    return directory


def make_nlp(weights: Path | str, **config: object) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"weights": str(weights), **config})
    return nlp
