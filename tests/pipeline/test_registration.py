"""The entry points declared in setup.cfg name the objects registered with spaCy."""

from __future__ import annotations

import configparser
import importlib
from pathlib import Path

import spacy
from spacy.language import Language

SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"


def entry_points(group: str) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    lines = parser["options.entry_points"][group].strip().splitlines()
    return dict((part.strip() for part in line.split("=", 1)) for line in lines)  # type: ignore[misc]


def load(target: str) -> object:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def test_factory_entry_point() -> None:
    factories = entry_points("spacy_factories")
    assert factories == {"elmo": "spacy_elmo.component:make_elmo"}
    assert Language.has_factory("elmo")
    assert spacy.registry.factories.get("elmo") is load(factories["elmo"])


def test_architecture_entry_points() -> None:
    architectures = entry_points("spacy_architectures")
    first_release = {"spacy_elmo.ElmoModel.v1", "spacy_elmo.ElmoListener.v1", "spacy_elmo.Elmo.v1"}
    assert set(architectures) == first_release | {
        "spacy-elmo.ElmoModel.v2",
        "spacy-elmo.ElmoListener.v2",
        "spacy-elmo.Elmo.v2",
    }
    for name, target in architectures.items():
        built_by = load(target)  # imports the module, as spaCy's entry point would
        assert spacy.registry.architectures.get(name) is built_by


def test_misc_entry_points() -> None:
    misc = entry_points("spacy_misc")
    assert misc == {"spacy-elmo.doc_units.v1": "spacy_elmo.architectures:configure_doc_units"}
    built_by = load(misc["spacy-elmo.doc_units.v1"])
    assert spacy.registry.misc.get("spacy-elmo.doc_units.v1") is built_by


def test_first_release_import_paths_name_the_same_objects() -> None:
    # configs and code written for spacy_elmo 0.1 imported these modules
    assert load("spacy_elmo.thinc_model:build_elmo_model") is load("spacy_elmo.architectures:build_elmo_model")
    assert load("spacy_elmo.listener:build_inline_elmo") is load("spacy_elmo.architectures:build_inline_elmo")
    assert load("spacy_elmo.listener:ElmoListener") is load("spacy_elmo.layers.listener:ElmoListener")


def test_bundled_models_are_package_data() -> None:
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    patterns = parser["options.package_data"]["spacy_elmo"].split()
    assert "models/*/*" in patterns
