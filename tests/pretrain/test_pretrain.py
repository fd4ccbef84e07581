"""Pretraining: data packing, the objective, export, exact resume, fine-tuning and bad input."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickletools
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo import load_bilm
from spacy_elmo.bilm.chars import batch_to_char_ids
from spacy_elmo.cli import main as cli_main
from spacy_elmo.pretrain import PresetError, PretrainConfig, PretrainDataError, Vocabulary, pretrain
from spacy_elmo.pretrain.data import (
    IGNORE_TARGET,
    LMBatcher,
    SentenceStream,
    SentenceTokenizer,
    evaluation_batches,
    tokenize_corpus,
)
from spacy_elmo.pretrain.lm import BiLMLanguageModel, log_uniform_probabilities, sample_log_uniform
from spacy_elmo.pretrain.presets import get_preset
from spacy_elmo.pretrain.train import PretrainError, build_model, load_checkpoint_file, reset_states

FIXTURE_MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "elmo"
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_corpus(n_lines: int, seed: int) -> str:
    """A small English-like corpus from a fixed grammar: learnable, so the loss must fall."""
    rng = random.Random(seed)
    subjects = ["The cat", "A dog", "My neighbour", "The old farmer", "Her brother", "The children"]
    verbs = ["saw", "liked", "painted", "followed", "found", "carried"]
    objects = ["the red ball", "a small boat", "the garden gate", "two apples", "the long letter"]
    endings = [".", " yesterday.", " in the morning.", " again.", "!"]
    lines = []
    for _ in range(n_lines):
        sentences = [
            f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(endings)}"
            for _ in range(rng.randint(1, 3))
        ]
        lines.append(" ".join(sentences))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("corpus")
    train, dev = directory / "train.txt", directory / "dev.txt"
    train.write_text(make_corpus(300, seed=1), encoding="utf-8")
    dev.write_text(make_corpus(30, seed=2), encoding="utf-8")
    return train, dev


def tiny_config(train: Path, output: Path, dev: Path | None = None, **overrides: object) -> PretrainConfig:
    settings = {"max_steps": 40, "eval_every": 20, "checkpoint_every": 20}
    settings.update(overrides)
    return PretrainConfig(
        train=str(train),
        output_dir=str(output),
        dev=str(dev) if dev else None,
        preset="tiny",
        seed=3,
        overrides=settings,
        threads=1,
        progress=False,
    )


def read_log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


def read_weights(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return arrays


# ---------------------------------------------------------------------- data


def test_vocabulary_sorted_by_frequency_with_specials_first() -> None:
    vocab = Vocabulary.from_counts({"b": 3, "a": 3, "c": 5, "rare": 1}, max_size=5)
    assert vocab.tokens == ["<S>", "</S>", "<UNK>", "c", "a"]
    assert vocab.ids(["c", "rare", "a"]) == [3, 2, 4]


def test_spacy_tokenizer_splits_sentences_and_tokens() -> None:
    sentences = list(SentenceTokenizer("en")(["Don't stop. It's fine!", "   ", "One more"]))
    assert sentences == [["Do", "n't", "stop", "."], ["It", "'s", "fine", "!"], ["One", "more"]]


def test_batcher_continues_sentences_in_the_same_row(tmp_path: Path) -> None:
    shard = tmp_path / "shard-00000.txt"
    shard.write_text("a b c d e\nf g\n", encoding="utf-8")
    vocab = Vocabulary.from_counts(dict.fromkeys("abcdefg", 1))
    stream = SentenceStream((shard,), seed=0, shuffle=False)
    batcher = LMBatcher(stream, vocab, batch_size=1, unroll_steps=4, reverse=False)
    ids = {token: i for i, token in enumerate(vocab.tokens)}
    first, second = next(batcher), next(batcher)
    # <S> a b c d e </S> <S> f g </S>: inputs drop each sentence's last token, targets its first.
    assert first.targets.tolist() == [[ids["a"], ids["b"], ids["c"], ids["d"]]]
    assert second.targets.tolist() == [[ids["e"], ids["</S>"], ids["f"], ids["g"]]]
    expected_inputs = batch_to_char_ids([["d", "e", "<S>", "f"]])
    assert torch.equal(second.char_ids, expected_inputs)

    backward = LMBatcher(SentenceStream((shard,), seed=0, shuffle=False), vocab, 1, 4, reverse=True)
    # Reversed: </S> e d c b a <S>, then </S> g f <S>
    assert next(backward).targets.tolist() == [[ids["e"], ids["d"], ids["c"], ids["b"]]]
    assert next(backward).targets.tolist() == [[ids["a"], ids["<S>"], ids["g"], ids["f"]]]


def test_batcher_resets_start_a_fresh_sentence(tmp_path: Path) -> None:
    shard = tmp_path / "shard-00000.txt"
    shard.write_text("a b c d e\nf g\nb c\n", encoding="utf-8")
    vocab = Vocabulary.from_counts(dict.fromkeys("abcdefg", 1))
    always = LMBatcher(SentenceStream((shard,), seed=0, shuffle=False), vocab, 2, 3, False, reset_probability=1.0)
    for _ in range(3):
        batch = next(always)
        assert batch.reset.tolist() == [True, True]
        assert torch.equal(batch.char_ids[:, 0], batch_to_char_ids([["<S>"], ["<S>"]])[:, 0])
    never = LMBatcher(SentenceStream((shard,), seed=0, shuffle=False), vocab, 2, 3, False)
    assert next(never).reset.tolist() == [False, False]
    some = LMBatcher(SentenceStream((shard,), seed=0), vocab, 64, 3, False, reset_probability=0.25)
    share = float(torch.stack([next(some).reset for _ in range(20)]).float().mean())
    assert 0.15 < share < 0.35
    # Reset rows get a zero state; the others keep theirs.
    states = [(torch.ones(64, 4), torch.ones(64, 5))] * 2
    batch = next(some)
    zeroed = reset_states(states, batch, batch)
    assert torch.equal(zeroed[0][0].sum(1) == 0, batch.reset)


def test_stream_splits_sentences_between_ranks(tmp_path: Path) -> None:
    shard = tmp_path / "shard-00000.txt"
    shard.write_text("".join(f"w{i}\n" for i in range(10)), encoding="utf-8")
    seen = []
    for rank in range(2):
        stream = SentenceStream((shard,), seed=5, rank=rank, world_size=2)
        seen.append({next(stream)[0] for _ in range(5)})
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == {f"w{i}" for i in range(10)}


def test_evaluation_batches_cover_every_target_once() -> None:
    vocab = Vocabulary.from_counts(dict.fromkeys("abcdefg", 1))
    sentences = [["a", "b"], ["c"], ["d", "e", "f", "g"]]
    batches = list(evaluation_batches(sentences, vocab, batch_size=2, unroll_steps=3, reverse=False))
    targets = [t for b in batches for t in b.targets.flatten().tolist() if t != IGNORE_TARGET]
    assert sorted(targets) == sorted(vocab.ids(["a", "b", "</S>", "c", "</S>", "d", "e", "f", "g", "</S>"]))
    # Every row starts at a sentence start (the model starts from a zero state there, as in use).
    first_inputs = batches[0].char_ids[:, 0]
    assert torch.equal(first_inputs, batch_to_char_ids([["<S>"], ["<S>"]])[:, 0])
    backward = next(evaluation_batches(sentences, vocab, batch_size=2, unroll_steps=3, reverse=True))
    assert torch.equal(backward.char_ids[:, 0], batch_to_char_ids([["</S>"], ["</S>"]])[:, 0])


def test_log_uniform_sampler_matches_its_distribution() -> None:
    generator = torch.Generator().manual_seed(0)
    samples = sample_log_uniform(200_000, 50, generator)
    observed = torch.bincount(samples, minlength=50).double() / samples.numel()
    expected = log_uniform_probabilities(torch.arange(50), 50).double()
    assert abs(float(expected.sum()) - 1.0) < 1e-5
    assert torch.allclose(observed[:10], expected[:10], atol=3e-3)


def test_sampled_softmax_agrees_with_full_softmax_on_a_confident_model() -> None:
    options = get_preset("tiny").options
    model = BiLMLanguageModel(options, vocab_size=16, softmax="sampled", n_negative_samples=8)
    model.sampler = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.softmax_weight.copy_(torch.eye(16) * 30.0)
        model.softmax_bias.zero_()
    hidden = torch.eye(16)
    targets = torch.arange(16)  # frequent ids are sampled as negatives too: those accidental hits are removed
    sampled = float(model.target_loss(hidden, targets, exact=False).detach())
    full = float(model.target_loss(hidden, targets, exact=True).detach())
    assert 0.0 <= sampled < 1e-6
    assert 0.0 <= full < 1e-6
    with torch.no_grad():
        model.softmax_weight.zero_()
    # Uniform logits: the exact loss is log V.
    assert float(model.target_loss(hidden, targets, exact=True).detach()) == pytest.approx(np.log(16), rel=1e-6)


# ---------------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def trained_run(corpus: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, dev = corpus
    output = tmp_path_factory.mktemp("run") / "out"
    pretrain(tiny_config(train, output, dev, max_steps=150, eval_every=50, checkpoint_every=50))
    return output


def test_loss_and_dev_perplexity_decrease(trained_run: Path) -> None:
    log = read_log(trained_run)
    assert [entry["step"] for entry in log] == [50, 100, 150]
    assert log[-1]["train_loss"] < log[0]["train_loss"] - 0.3
    assert log[-1]["dev_perplexity"] < 0.8 * log[0]["dev_perplexity"]
    for entry in log:
        mean = 0.5 * (entry["dev_perplexity_forward"] + entry["dev_perplexity_backward"])
        assert entry["dev_perplexity"] == pytest.approx(mean)
        assert entry["tokens_per_s"] > 0


def test_export_layout_and_options(trained_run: Path) -> None:
    options = json.loads((trained_run / "options.json").read_text())
    preset = get_preset("tiny")
    assert options["char_cnn"]["n_characters"] == 262
    assert options["lstm"]["dim"] == preset.options.lstm_dim
    assert options["lstm"]["projection_dim"] == preset.options.projection_dim
    assert options["unroll_steps"] == preset.training.unroll_steps
    assert options["n_tokens_vocab"] == len(Vocabulary.load(trained_run / "vocab.txt"))
    names = set(read_weights(trained_run / "weights.hdf5"))
    assert "char_embed" in names and "CNN_proj/W_proj" in names
    assert "RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0" in names
    assert not any("softmax" in name for name in names)


def test_exported_weights_reproduce_the_trained_model(trained_run: Path) -> None:
    saved, _ = load_checkpoint_file(trained_run / "checkpoints" / "model.pt")
    vocab = Vocabulary.load(trained_run / "vocab.txt")
    preset = get_preset("tiny")
    model = BiLMLanguageModel(preset.options, len(vocab), n_negative_samples=preset.training.n_negative_samples)
    model.load_state_dict(saved["model"])
    model.eval()
    loaded = load_bilm(trained_run / "options.json", trained_run / "weights.hdf5")

    sentence = ["The", "cat", "found", "two", "apples", "again", "."]
    char_ids = batch_to_char_ids([sentence])
    with torch.no_grad():
        assert torch.equal(model.bilm.token_encoder(char_ids[0]), loaded.embed_tokens(char_ids[0]))
        layers = loaded(char_ids).layers  # (3, 1, n, 2P)
        P = preset.options.projection_dim
        # The training LM's own recurrence over <S> w.. </S> (forward) and its reverse (backward).
        padded = batch_to_char_ids([["<S>", *sentence, "</S>"]])
        embedded = model.encode(padded)
        states = model.zero_states(1)
        top_forward, _ = model.run_direction(model.bilm.lstm.forward_layers, embedded, states[:2])
        top_backward, _ = model.run_direction(model.bilm.lstm.backward_layers, embedded.flip(1), states[2:])
    n = len(sentence)
    assert torch.allclose(layers[2, 0, :, :P], top_forward[0, 1 : n + 1], atol=1e-6, rtol=0)
    assert torch.allclose(layers[2, 0, :, P:], top_backward[0].flip(0)[1 : n + 1], atol=1e-6, rtol=0)


def test_export_command_rewrites_the_same_files(trained_run: Path, tmp_path: Path) -> None:
    assert cli_main(["export-pretrained", str(trained_run), "--to", str(tmp_path / "exported")]) == 0
    original = read_weights(trained_run / "weights.hdf5")
    exported = read_weights(tmp_path / "exported" / "weights.hdf5")
    assert original.keys() == exported.keys()
    assert all(np.array_equal(original[k], exported[k]) for k in original)
    assert (tmp_path / "exported" / "vocab.txt").is_file()


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_resume_after_interruption_matches_an_uninterrupted_run(
    corpus: tuple[Path, Path], tmp_path: Path, precision: str
) -> None:
    train, dev = corpus
    whole = tmp_path / "whole"
    pretrain(dataclasses.replace(tiny_config(train, whole, dev, max_steps=40), precision=precision))
    interrupted = tmp_path / "interrupted"
    pretrain(dataclasses.replace(tiny_config(train, interrupted, dev, max_steps=20), precision=precision))
    # A resumed run continues from the step-20 checkpoint with its data position, state and RNGs
    # (and its precision, from config.json).
    pretrain(tiny_config(train, interrupted, dev, max_steps=40), resume=True)
    assert read_log(whole) == [
        {**entry, "elapsed_s": read_log(whole)[i]["elapsed_s"], "tokens_per_s": read_log(whole)[i]["tokens_per_s"]}
        for i, entry in enumerate(read_log(interrupted))
    ]
    first, second = read_weights(whole / "weights.hdf5"), read_weights(interrupted / "weights.hdf5")
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_same_seed_same_model_other_seed_differs(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = corpus
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        config = tiny_config(train, tmp_path / name, max_steps=10)
        config.seed = seed
        pretrain(config)
        runs.append(read_weights(tmp_path / name / "weights.hdf5"))
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not np.array_equal(runs[0]["char_embed"], runs[2]["char_embed"])


def test_rerun_without_resume_refuses_to_overwrite(corpus: tuple[Path, Path], trained_run: Path) -> None:
    train, _ = corpus
    with pytest.raises(ValueError, match="--resume"):
        pretrain(tiny_config(train, trained_run))


def test_fine_tune_from_the_fixture_model(corpus: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    train, dev = corpus
    reference = load_bilm(FIXTURE_MODEL / "options.json", FIXTURE_MODEL / "lm_weights.hdf5")
    model, note = build_model(get_preset("tiny").options, get_preset("tiny").training, 100, 0, str(FIXTURE_MODEL))
    assert "new sampled softmax" in note
    for name, value in reference.state_dict().items():
        assert torch.equal(model.bilm.state_dict()[name], value), name

    output = tmp_path / "finetuned"
    config = tiny_config(train, output, dev, max_steps=20)
    config.init_from = str(FIXTURE_MODEL)
    pretrain(config)
    assert "fine-tuning" in capsys.readouterr().out
    tuned_options = json.loads((output / "options.json").read_text())
    assert tuned_options["lstm"]["dim"] == reference.options.lstm_dim == 64
    assert tuned_options["char_cnn"]["filters"] == [list(f) for f in reference.options.filters]
    tuned = load_bilm(output / "options.json", output / "weights.hdf5")
    before = reference.lstm.forward_layers[0].input_weight
    after = tuned.lstm.forward_layers[0].input_weight
    change = float((after - before).abs().max().detach())
    assert 0.0 < change < 1.0
    assert read_log(output)[-1]["dev_perplexity"] > 1.0


# ---------------------------------------------------------------------- bad input


def test_missing_train_file(tmp_path: Path) -> None:
    with pytest.raises(PretrainDataError, match="training text not found"):
        pretrain(tiny_config(tmp_path / "nope.txt", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_empty_corpus(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\n", encoding="utf-8")
    with pytest.raises(PretrainDataError, match="holds no tokens"):
        pretrain(tiny_config(empty, tmp_path / "out"))
    with pytest.raises(PretrainDataError, match="holds no files"):
        (tmp_path / "emptydir").mkdir()
        tokenize_corpus(tmp_path / "emptydir", tmp_path / "shards", SentenceTokenizer("en", "whitespace"))


def test_bad_preset_name(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = corpus
    config = tiny_config(train, tmp_path / "out")
    config.preset = "enormous"
    with pytest.raises(PresetError, match="unknown preset 'enormous'; choose one of: tiny"):
        pretrain(config)


def test_cli_reports_bad_input_clearly(tmp_path: Path, capsys) -> None:
    assert cli_main(["pretrain", str(tmp_path / "missing.txt"), str(tmp_path / "out")]) == 1
    assert "training text not found" in capsys.readouterr().err
    assert cli_main(["pretrain", str(tmp_path), str(tmp_path / "out"), "--preset", "huge"]) == 1
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert cli_main(["export-pretrained", str(tmp_path)]) == 1
    assert "not a pretraining directory" in capsys.readouterr().err


def test_resume_without_checkpoint(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = corpus
    with pytest.raises(ValueError, match="no checkpoint"):
        pretrain(tiny_config(train, tmp_path / "fresh"), resume=True)


# ---------------------------------------------------------------------- distributed


@pytest.mark.slow
def test_torchrun_two_processes_average_gradients(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """Two gloo processes: each reads its half of the data; the update is Adagrad on the averaged gradient."""
    train, dev = corpus
    output = tmp_path / "ddp"
    n_steps, seed = 3, 3
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "spacy_elmo", "pretrain", str(train), str(output), "--dev", str(dev),
        "--preset", "tiny", "--seed", str(seed), "--max-steps", str(n_steps), "--dropout", "0",
        "--softmax", "full", "--threads", "1", "--no-progress", "--eval-every", "3", "--checkpoint-every", "3",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    rank_states = [load_checkpoint_file(output / "checkpoints" / f"rank{r}-step{n_steps}.pt")[1] for r in (0, 1)]
    assert rank_states[0]["parameter_checksum"] == rank_states[1]["parameter_checksum"]
    assert rank_states[0]["tokens_seen"] == n_steps * 2 * 8 * 10
    trained = load_checkpoint_file(output / "checkpoints" / "model.pt")[0]["model"]

    # Replay in one process: the same initial weights, each rank's own batches and carried state.
    preset = get_preset("tiny")
    settings = dataclasses.replace(preset.training, dropout=0.0, softmax="full")
    vocab = Vocabulary.load(output / "vocab.txt")
    manifest = json.loads((output / "data" / "train" / "manifest.json").read_text())
    shards = tuple(output / "data" / "train" / name for name in manifest["shards"])

    def replay(average: bool) -> dict[str, torch.Tensor]:
        model, _ = build_model(preset.options, settings, len(vocab), seed, None)
        optimizer = torch.optim.Adagrad(model.parameters(), lr=0.2, initial_accumulator_value=1.0)
        batchers = [
            [
                LMBatcher(SentenceStream(shards, seed * 2 + d, rank, 2), vocab, 8, 10, bool(d), reset_probability=0.1)
                for d in (0, 1)
            ]
            for rank in (0, 1)
        ]
        states = [model.zero_states(8), model.zero_states(8)]
        for _ in range(n_steps):
            for rank in (0, 1):
                forward_batch, backward_batch = next(batchers[rank][0]), next(batchers[rank][1])
                out = model(forward_batch, backward_batch, reset_states(states[rank], forward_batch, backward_batch))
                states[rank] = out.states
                if average or rank == 0:
                    (out.loss * 10 / (2 if average else 1)).backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), 10.0)
            optimizer.step()
            optimizer.zero_grad()
        return model.state_dict()

    expected = replay(average=True)
    for name, value in expected.items():
        assert torch.allclose(trained[name], value, atol=1e-5, rtol=1e-4), name
    rank0_only = replay(average=False)
    assert not torch.allclose(trained["softmax_weight"], rank0_only["softmax_weight"], atol=1e-4)
    assert read_log(output)[-1]["step"] == n_steps
    assert load_bilm(output / "options.json", output / "weights.hdf5").options.projection_dim == 16


def test_evaluate_command_matches_the_logged_dev_perplexity(
    trained_run: Path, corpus: tuple[Path, Path], capsys
) -> None:
    _, dev = corpus
    assert cli_main(["evaluate-pretrained", str(trained_run), str(dev), "--max-tokens", "2000"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dev_perplexity"] == pytest.approx(read_log(trained_run)[-1]["dev_perplexity"], rel=1e-6)


@pytest.mark.parametrize("softmax", ["adaptive", "full"])
def test_other_softmaxes_train_and_evaluate(corpus: tuple[Path, Path], tmp_path: Path, softmax: str) -> None:
    train, dev = corpus
    output = tmp_path / softmax
    pretrain(tiny_config(train, output, dev, max_steps=60, eval_every=15, softmax=softmax))
    log = read_log(output)
    assert [entry["step"] for entry in log] == [15, 30, 45, 60]
    # Learning, and better than the uniform distribution over the vocabulary (perplexity = its size).
    n_words = len(Vocabulary.load(output / "vocab.txt"))
    assert log[-1]["dev_perplexity"] < min(log[0]["dev_perplexity"], 0.8 * n_words)
    assert json.loads((output / "config.json").read_text())["overrides"]["softmax"] == softmax


# ---------------------------------------------------------------------- hostile and bad input (issue 17)


class PlantedCode:
    """Unpickling this creates ``path``: what a crafted checkpoint could do with ``weights_only=False``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


def _pickled_calls(path: Path) -> list[tuple[str, str]]:
    """What the pickle inside a ``torch.save`` file calls when unpickled: ``(function, first argument)`` per
    ``REDUCE``, read from its opcodes without unpickling it."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    calls, function, arguments = [], "", []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            function, arguments = argument, []
        elif opcode.name == "BINUNICODE":
            arguments.append(argument)
        elif opcode.name == "REDUCE":
            calls.append((function, arguments[0] if arguments else ""))
    return calls


def _plant(run: Path, destination: Path, marker: Path) -> None:
    shutil.copytree(run, destination)
    checkpoints = destination / "checkpoints"
    torch.save({"step": 150, "world_size": 1, "model": PlantedCode(marker)}, checkpoints / "model.pt")
    for rank_file in checkpoints.glob("rank*-step*.pt"):
        torch.save({"step": 150, "states": PlantedCode(marker)}, rank_file)


def test_a_planted_checkpoint_runs_no_code(
    trained_run: Path, corpus: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    train, dev = corpus
    marker = tmp_path / "code-ran"
    planted = tmp_path / "planted"
    _plant(trained_run, planted, marker)
    # The plant is live: every planted file's pickle calls open(marker, "w") when unpickled (read from its
    # opcodes; the test itself never unpickles it).
    for path in (planted / "checkpoints").glob("*.pt"):
        assert ("io open", str(marker)) in _pickled_calls(path), path

    assert cli_main(["export-pretrained", str(planted), "--to", str(tmp_path / "exported")]) == 1
    assert "not a checkpoint this package can read" in capsys.readouterr().err
    assert cli_main(["evaluate-pretrained", str(planted), str(dev)]) == 1
    assert "not a checkpoint this package can read" in capsys.readouterr().err
    config = tiny_config(train, planted, dev, max_steps=160)
    with pytest.raises(PretrainError, match=r"model\.pt is not a checkpoint this package can read"):
        pretrain(config, resume=True)
    # Only the rank file planted: resume reads the real model.pt, then refuses the rank file.
    (planted / "checkpoints" / "model.pt").unlink()
    shutil.copy(trained_run / "checkpoints" / "model.pt", planted / "checkpoints" / "model.pt")
    with pytest.raises(PretrainError, match=r"rank0-step150\.pt is not a checkpoint this package can read"):
        pretrain(config, resume=True)
    assert not marker.exists()
    assert not (tmp_path / "exported").exists()


def test_checkpoints_hold_only_tensors_and_json(trained_run: Path) -> None:
    for path in (trained_run / "checkpoints").glob("*.pt"):
        saved = torch.load(path, weights_only=True)
        assert saved["format"] == "spacy-elmo.pretrain-checkpoint.v2"
        json.loads(saved["state_json"])
    _, state = load_checkpoint_file(trained_run / "checkpoints" / "rank0-step150.pt")
    # Every random state a resumed run needs, as JSON: numpy's and Python's global generators too.
    assert state["numpy_rng"][0] == "MT19937" and len(state["numpy_rng"][1]) == 624
    assert len(state["python_rng"][1]) == 625


def test_resume_restores_numpy_and_python_random_states_in_a_moved_run(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = corpus
    output = tmp_path / "run"
    random.seed(11)
    np.random.seed(11)
    pretrain(tiny_config(train, output, max_steps=10, checkpoint_every=10))
    expected = (random.random(), np.random.random())
    random.seed(99)
    np.random.seed(99)
    moved = tmp_path / "moved"
    output.rename(moved)  # a run resumes where it is now, not where its config.json says it was
    with (moved / "log.jsonl").open("a") as log:
        log.write('{"step": 11, "train_')  # an entry cut short by a kill
    pretrain(tiny_config(train, moved, max_steps=10), resume=True)  # nothing left to train: state as saved
    assert (random.random(), np.random.random()) == expected
    assert not output.exists()
    assert json.loads((moved / "config.json").read_text())["output_dir"] == str(moved)
    assert [entry["step"] for entry in read_log(moved)] == [10]


def test_non_empty_directory_of_something_else_is_refused(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = corpus
    output = tmp_path / "photos"
    output.mkdir()
    (output / "holiday.jpg").write_bytes(b"not a run")
    with pytest.raises(PretrainError, match=r"is not empty and is not a pretraining run.*--resume"):
        pretrain(tiny_config(train, output, max_steps=5))
    assert sorted(p.name for p in output.iterdir()) == ["holiday.jpg"]
    # An empty directory, and a run of its own stopped before its first checkpoint, are fine.
    (output / "holiday.jpg").unlink()
    pretrain(tiny_config(train, output, max_steps=5))
    shutil.rmtree(output / "checkpoints")
    pretrain(tiny_config(train, output, max_steps=5))
    assert (output / "weights.hdf5").is_file()


def test_text_that_is_not_utf8_is_refused_unless_asked(tmp_path: Path, capsys) -> None:
    binary = tmp_path / "random.bin"
    rng = np.random.default_rng(0)
    binary.write_bytes(b"A fine first line .\n" + rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    output = tmp_path / "out"
    args = ["pretrain", str(binary), str(output), "--max-steps", "3", "--no-progress", "--threads", "1"]
    assert cli_main(args) == 1
    error = capsys.readouterr().err
    assert f"{binary}, line 2: not valid UTF-8 (byte " in error and "--encoding-errors replace" in error
    assert not output.exists()
    output.mkdir()
    assert cli_main(args) == 1
    assert list(output.iterdir()) == []
    assert cli_main([*args, "--encoding-errors", "replace"]) == 0
    capsys.readouterr()
    assert json.loads((output / "config.json").read_text())["encoding_errors"] == "replace"
    assert "\ufffd" in Vocabulary.load(output / "vocab.txt").tokens


def test_a_refused_run_leaves_nothing_behind(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(PretrainDataError, match="holds no tokens"):
        pretrain(tiny_config(empty, tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    (tmp_path / "existing").mkdir()
    with pytest.raises(PretrainDataError, match="holds no tokens"):
        pretrain(tiny_config(empty, tmp_path / "existing"))
    assert list((tmp_path / "existing").iterdir()) == []


def test_crlf_cr_and_bom_training_text_gives_the_same_shards(tmp_path: Path) -> None:
    tokenizer = SentenceTokenizer("en", "whitespace")
    texts = {
        "lf": b"a b c\nd e\n",
        "crlf": b"a b c\r\nd e\r\n",
        "cr": b"a b c\rd e\r",
        "bom": b"\xef\xbb\xbfa b c\nd e",
    }
    for name, data in texts.items():
        (tmp_path / f"{name}.txt").write_bytes(data)
        corpus = tokenize_corpus(tmp_path / f"{name}.txt", tmp_path / name, tokenizer)
        assert list(corpus.iter_sentences()) == [["a", "b", "c"], ["d", "e"]], name


def test_every_pretrain_option_has_help_with_its_default() -> None:
    from spacy_elmo.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    pretrain_parser = subparsers.choices["pretrain"]
    options = [a for a in pretrain_parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 25
    for action in options:
        assert action.help and "default: " in action.help, action.option_strings
    batch_help = next(a.help for a in options if a.dest == "batch_size")
    assert "tiny 8" in batch_help and "small/medium/original 128" in batch_help
    for command in ("export-pretrained", "evaluate-pretrained"):
        assert subparsers.choices[command].description, command
