"""The spaCy project (project.yml, configs/, scripts/): splits, data parsing, checksums, configs that build."""

from __future__ import annotations

import hashlib
import shlex
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import srsly
from spacy.cli._util import parse_config_overrides
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import load_config, load_model_from_config
from thinc.api import Config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import convert_wnut  # noqa: E402
import spacy_to_text  # noqa: E402
import verify_checksums  # noqa: E402
from splits import random_split, split_sizes, stratified_split  # noqa: E402

from spacy_elmo.weights_source import DEFAULT_MODEL  # noqa: E402

from ..elmo_helpers import copy_fixture_weights  # noqa: E402

PROJECT = srsly.read_yaml(ROOT / "project.yml")


def train_eval_systems() -> dict[str, tuple[str, list[str]]]:
    """Every system project.yml trains: its config and its overrides (``vars`` filled in, training length dropped)."""
    variables = {name: str(value) for name, value in PROJECT["vars"].items()}
    systems: dict[str, tuple[str, list[str]]] = {}
    for command in PROJECT["commands"]:
        for line in command["script"]:
            if not line.startswith("python scripts/train_eval.py "):
                continue
            for name, value in variables.items():
                line = line.replace(f"${{vars.{name}}}", value)
            words = shlex.split(line)
            overrides = words[words.index("--") + 1 :]
            pairs = dict(zip(overrides[::2], overrides[1::2], strict=True))
            for dropped in ("--training.max_steps", "--training.max_epochs", "--paths.elmo"):
                pairs.pop(dropped, None)
            systems[words[2]] = (words[3], [item for pair in pairs.items() for item in pair])
    return systems


SYSTEMS = train_eval_systems()
BASELINE_SYSTEMS = sorted(name for name in SYSTEMS if "elmo" not in name)
ELMO_SYSTEMS = sorted(name for name in SYSTEMS if "elmo" in name)


def system_config(name: str, **overrides: object) -> Config:
    """The config a project system trains with (paths.vectors: null; the GloVe table is built by the project)."""
    path, args = SYSTEMS[name]
    parsed = parse_config_overrides(list(args))  # it consumes the list it is given
    if "paths.vectors" in parsed:
        parsed["paths.vectors"] = None
    return load_config(ROOT / path, overrides={**parsed, **overrides})


def test_split_sizes_round_dev_and_test() -> None:
    assert split_sizes(2394, 0.15, 0.15) == (1676, 359, 359)
    assert split_sizes(11, 0.15, 0.15) == (7, 2, 2)  # 1.65 rounds to 2; train takes the rest
    with pytest.raises(ValueError, match="dev_fraction"):
        split_sizes(10, 0.6, 0.5)


def test_random_split_is_a_seeded_partition() -> None:
    first = random_split(100, seed=0, dev_fraction=0.15, test_fraction=0.15)
    assert first == random_split(100, seed=0, dev_fraction=0.15, test_fraction=0.15)
    assert first != random_split(100, seed=1, dev_fraction=0.15, test_fraction=0.15)
    assert sorted(first["train"] + first["dev"] + first["test"]) == list(range(100))
    assert [len(first[name]) for name in ("train", "dev", "test")] == [70, 15, 15]


def test_stratified_split_keeps_label_proportions() -> None:
    labels = ["a"] * 60 + ["b"] * 40
    parts = stratified_split(labels, seed=3, dev_fraction=0.15, test_fraction=0.15)
    assert sorted(i for part in parts.values() for i in part) == list(range(100))
    counts = {
        name: (sum(labels[i] == "a" for i in idx), sum(labels[i] == "b" for i in idx)) for name, idx in parts.items()
    }
    assert counts == {"train": (42, 28), "dev": (9, 6), "test": (9, 6)}


def test_wnut_reader_splits_tweets_and_repairs_iob() -> None:
    lines = ["Empire\tB-facility", "State\tI-facility", "\t", "in\tO", "NYC\tI-geo-loc", "\t"]
    tweets = convert_wnut.read_tweets(lines)
    assert tweets == [[("Empire", "B-facility"), ("State", "I-facility")], [("in", "O"), ("NYC", "I-geo-loc")]]
    assert convert_wnut.repair_iob(["O", "I-geo-loc", "I-geo-loc", "I-person"]) == [
        "O",
        "B-geo-loc",
        "I-geo-loc",
        "B-person",
    ]
    with pytest.raises(ValueError, match="line 2"):
        convert_wnut.read_tweets(["ok\tO", "bad\tX-person"])


def test_spacy_to_text_writes_one_line_per_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = spacy.blank("en").vocab
    docs = [
        Doc(vocab, words=["RT", "@user", ":", "New", "York", "!"], ents=["O", "O", "O", "B-geo", "I-geo", "O"]),
        Doc(vocab, words=["  "], spaces=[False]),  # whitespace only: no line
        Doc(vocab, words=["a", "\n", "b"]),
    ]
    corpus = tmp_path / "train.spacy"
    DocBin(docs=docs).to_disk(corpus)
    output = tmp_path / "text" / "train.txt"
    monkeypatch.setattr(sys, "argv", ["spacy_to_text", str(corpus), str(output)])
    assert spacy_to_text.main() == 0
    assert output.read_text(encoding="utf8") == "RT @user : New York !\na b\n"
    monkeypatch.setattr(sys, "argv", ["spacy_to_text", str(tmp_path / "missing.spacy"), str(output)])
    assert spacy_to_text.main() == 1


def test_verify_checksums_reports_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "file.bin"
    data.write_bytes(b"spacy-elmo")
    good = hashlib.sha256(b"spacy-elmo").hexdigest()
    sums = tmp_path / "sums"
    monkeypatch.chdir(tmp_path)
    sums.write_text(f"{good}  file.bin\n")
    monkeypatch.setattr(sys, "argv", ["verify", str(sums), "file.bin"])
    assert verify_checksums.main() == 0
    sums.write_text(f"{'0' * 64}  file.bin\n")
    assert verify_checksums.main() == 1


def test_project_commands_reference_existing_files() -> None:
    project = PROJECT
    commands = {command["name"]: command for command in project["commands"]}
    assert not set(project["workflows"]) & set(commands), "weasel refuses a workflow named like a command"
    for workflow, steps in project["workflows"].items():
        assert set(steps) <= set(commands), f"workflow {workflow} names unknown commands"
    for command in commands.values():
        for line in command["script"]:
            for word in line.split():
                if word.startswith(("configs/", "scripts/")):
                    assert (ROOT / word).exists(), word
    checksummed = {line.split("  ")[1] for line in (ROOT / "checksums.sha256").read_text().splitlines() if line}
    fetched = {out for name, c in commands.items() if name.startswith("fetch-") for out in c["outputs"]}
    assert fetched == checksummed


def test_systems_differ_from_their_base_config_only_by_overrides() -> None:
    assert len(SYSTEMS) == 40 and {config for config, _ in SYSTEMS.values()} == {
        f"configs/{task}{suffix}.cfg" for task in ("ner", "textcat") for suffix in ("", "_tok2vec", "_elmo")
    }
    glove = system_config("ner_elmo_glove")
    assert glove["components"]["tok2vec"]["model"]["embed"]["include_static_vectors"] is True
    assert system_config("textcat_bbc_elmo_finetune")["components"]["elmo"]["frozen"] is False
    assert system_config("textcat_bbc_elmo_frozen")["components"]["elmo"]["frozen"] is True
    # the *_v2, *_v3 and *_v4 systems are the frozen systems with the later bundled defaults
    for task in ("ner", "textcat_bbc", "textcat_movies"):
        for kind in ("frozen", "glove"):
            for version in ("v2", "v3", "v4"):
                assert SYSTEMS[f"{task}_elmo_{kind}_{version}"] == SYSTEMS[f"{task}_elmo_{kind}"]


def test_the_default_systems_name_the_bundled_default_model() -> None:
    assert PROJECT["vars"]["elmo_default"] == DEFAULT_MODEL
    assert PROJECT["vars"]["elmo_v2"] == "en_elmo_small_v2"
    assert PROJECT["vars"]["elmo_v3"] == "en_elmo_small_v3"
    scripts = [line for command in PROJECT["commands"] for line in command["script"]]
    for version, var in (("v4", "elmo_default"), ("v3", "elmo_v3"), ("v2", "elmo_v2")):
        lines = [line for line in scripts if f"_{version} configs/" in line]
        assert len(lines) == 6 and all(line.endswith(f"--paths.elmo ${{vars.{var}}}") for line in lines)


@pytest.mark.parametrize("name", BASELINE_SYSTEMS)
def test_baseline_configs_build(name: str) -> None:
    config = system_config(name)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["tok2vec", name.split("_")[0]]
    assert config["components"]["tok2vec"]["model"]["embed"]["include_static_vectors"] is name.endswith("_glove")


@pytest.mark.parametrize("name", ELMO_SYSTEMS)
def test_elmo_configs_initialize_and_update(name: str, tmp_path: Path) -> None:
    weights = copy_fixture_weights(tmp_path / "elmo")
    config = system_config(name, **{"paths.elmo": str(weights)})
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    task = name.split("_")[0]
    assert nlp.pipe_names[0] == "elmo" and nlp.pipe_names[-1] == task
    if name.endswith(
        ("_glove", "_glove_v2", "_glove_v3", "_glove_v4", "_adapted")
    ):  # a small static-vectors table in place of GloVe
        nlp.vocab.reset_vectors(width=4)
        for row, word in enumerate(("empire", "state", "new", "york")):
            nlp.vocab.set_vector(word, numpy.full(4, row + 1.0, dtype="float32"))
    words = ["Empire", "State", "Building", "in", "New", "York"]
    examples = []
    for label in ("positive", "negative"):
        reference = Doc(nlp.vocab, words=words, ents=["B-facility", "I-facility", "I-facility", "O", "B-geo", "I-geo"])
        reference.cats = {"positive": float(label == "positive"), "negative": float(label == "negative")}
        examples.append(Example(nlp.make_doc(" ".join(words)), reference))
    nlp.initialize(lambda: examples)  # concatenating the ELMo listener with spaCy's tok2vec listener must init
    losses = nlp.update(examples, sgd=nlp.create_optimizer())
    assert losses[task] > 0
    assert nlp(" ".join(words)).tensor.shape[0] == len(words)


def test_report_tables_and_targets(tmp_path: Path) -> None:
    import report

    for system, f_scores in (("ner_tok2vec", [0.40, 0.44]), ("ner_elmo_frozen", [0.45, 0.47])):
        for seed, f in enumerate(f_scores):
            path = tmp_path / "metrics" / system / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            srsly.write_json(path, {"ents_f": f, "ents_p": f + 0.1, "ents_r": f - 0.1, "speed": 1000.0 * (seed + 1)})
            srsly.write_json(path.with_name(f"seed{seed}.run.json"), {"train_seconds": 60.0, "model_bytes": 5_000_000})
    results = report.collect(tmp_path / "metrics", tmp_path / "training")
    assert [(r.task, r.system, len(r.seeds)) for r in results] == [("ner", "tok2vec", 2), ("ner", "elmo_frozen", 2)]
    table = report.markdown_tables(results)
    assert (
        "| spaCy tok2vec, no vectors | 42.0 ± 2.8 | 52.0 ± 2.8 | 32.0 ± 2.8 | 1500 ± 707 | 60 ± 0 | n/a | 5.0 | 2 |"
        in table
    )
    assert report.target_lines(results)[0] == "- NER: ELMo frozen + tok2vec − tok2vec = +4.0 F1 (target ≥ +3.0): met"


def test_report_merges_seeds_of_an_earlier_results_json(tmp_path: Path) -> None:
    import report

    path = tmp_path / "metrics" / "ner_glove" / "seed1.json"
    path.parent.mkdir(parents=True)
    srsly.write_json(path, {"ents_f": 0.5, "ents_p": 0.6, "ents_r": 0.4, "speed": 900.0})
    seed = {"f1": 0.3, "precision": 0.3, "recall": 0.3, "words_per_second": 1.0, "train_seconds": None}
    seed |= {"train_cpu_seconds": None, "model_bytes": None, "curve": [[0, 0.0], [200, 0.25]]}
    previous = [
        {
            "task": "ner",
            "system": "glove",
            "seeds": [{"seed": 0, "score": 0.3, **seed}, {"seed": 1, "score": 0.1, **seed}],
        },
        {"task": "ner", "system": "tok2vec", "seeds": [{"seed": 0, "score": 0.2, **seed}]},
    ]
    srsly.write_json(tmp_path / "results.json", previous)
    results = report.merge_previous(report.collect(tmp_path / "metrics", tmp_path), tmp_path / "results.json")
    assert [(r.system, [(s.seed, s.score) for s in r.seeds]) for r in results] == [
        ("tok2vec", [(0, 0.2)]),
        ("glove", [(0, 0.3), (1, 0.5)]),  # seed 1 from metrics/ wins over the earlier file
    ]
    assert results[0].seeds[0].curve == [(0, 0.0), (200, 0.25)]
