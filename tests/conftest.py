"""Fixtures of the spaCy component tests: the fixture biLM as a ``weights`` directory, a pipeline using it."""

from __future__ import annotations

from pathlib import Path

import pytest
from elmo_helpers import copy_fixture_weights, make_nlp
from spacy.language import Language


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_fixture_weights(tmp_path_factory.mktemp("elmo_weights"))


@pytest.fixture
def nlp(weights_dir: Path) -> Language:
    return make_nlp(weights_dir)
