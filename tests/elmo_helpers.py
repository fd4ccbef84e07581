"""Helpers shared by the spaCy component tests (their fixtures, ``weights_dir`` and ``nlp``, are in conftest.py)."""

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


COMPONENT_SETTINGS = ("mix", "frozen", "set_vectors", "doc_layers")
UNIT_SETTINGS = ("window_size", "window_overlap")


def elmo_config(weights: Path | str | None, **settings: object) -> dict[str, object]:
    """The ``elmo`` component's config: component settings at the top, the model's in ``model``."""
    config: dict[str, object] = {key: settings.pop(key) for key in COMPONENT_SETTINGS if key in settings}
    units = {key: settings.pop(key) for key in UNIT_SETTINGS if key in settings}
    model: dict[str, object] = {"weights": None if weights is None else str(weights), **settings}
    if units:
        model["get_units"] = {"@misc": "spacy-elmo.doc_units.v1", **units}
    config["model"] = model
    return config


def make_nlp(weights: Path | str | None, **settings: object) -> Language:
    """A blank English pipeline with an ``elmo`` component; ``settings`` go where they belong."""
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config=elmo_config(weights, **settings))
    return nlp
