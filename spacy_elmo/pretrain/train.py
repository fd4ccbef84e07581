"""The pretraining loop: single process or PyTorch DDP under ``torchrun``, exactly resumable.

``OUTPUT_DIR`` holds ``config.json`` (what was asked), ``vocab.txt``, ``data/`` (tokenized shards),
``checkpoints/`` (``model.pt``: model and optimiser; ``rank{r}-step{N}.pt``: each rank's data position,
carried LSTM state and RNG states), ``log.jsonl`` (one object per evaluation) and the export
``options.json`` + ``weights.hdf5`` in the bilm-tf / AllenNLP layout.

A checkpoint file holds tensors and state dicts only, plus its other state as one JSON string, and is
read with ``torch.load(..., weights_only=True)``: a run directory from elsewhere cannot run code.

Optimiser and schedule follow bilm-tf: Adagrad (lr 0.2, initial accumulator 1.0), gradients of
``loss * unroll_steps``, averaged over processes, clipped to a global norm of 10.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from ..bilm.lstm import State
from ..bilm.options import ElmoOptions
from ..bilm.weights import atomic_write, load_bilm, save_bilm
from ..errors import ElmoError
from ..text_lines import ENCODING_ERRORS
from .data import (
    LMBatch,
    LMBatcher,
    PretrainDataError,
    SentenceStream,
    SentenceTokenizer,
    TokenizedCorpus,
    Vocabulary,
    evaluation_batches,
    tokenize_corpus,
)
from .lm import BiLMLanguageModel, LMOutput
from .precision import PRECISIONS, training_precision
from .presets import TrainingSettings, get_preset, override_training

CONFIG_NAME = "config.json"
LOG_NAME = "log.jsonl"
VOCAB_NAME = "vocab.txt"
CHECKPOINT_DIR = "checkpoints"
MODEL_CHECKPOINT = "model.pt"
CHECKPOINT_FORMAT = "spacy-elmo.pretrain-checkpoint.v2"
# Settings a resumed run may change; everything else comes from the run's config.json.
RESUMABLE_OVERRIDES = ("max_steps", "state_reset_probability", "eval_every", "checkpoint_every")


class PretrainError(ElmoError):
    """A pretraining run cannot start or resume as asked."""


@dataclass
class PretrainConfig:
    """One pretraining run; saved as ``config.json`` so ``--resume`` and ``export`` rebuild the same model."""

    train: str
    output_dir: str
    dev: str | None = None
    preset: str = "tiny"
    lang: str = "en"
    tokenizer: str = "spacy"
    seed: int = 0
    init_from: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    max_time_minutes: float | None = None
    threads: int | None = None
    device: str | None = None
    progress: bool = True
    # "strict": bytes that are not UTF-8 are an error naming the line; "replace": read as U+FFFD.
    encoding_errors: str = "strict"
    # "bfloat16": the forward pass under autocast, weights and optimiser in float32 (see precision.py).
    precision: str = "float32"

    def settings(self) -> TrainingSettings:
        return override_training(get_preset(self.preset).training, self.overrides)


# ---------------------------------------------------------------------- distributed helpers


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: str | None) -> DistributedContext:
    """Join the process group ``torchrun`` describes (gloo on CPU, NCCL on GPU), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if use_cuda:
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    else:
        target = torch.device("cpu")
    if world_size <= 1:
        return DistributedContext(device=target)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, target)


# ---------------------------------------------------------------------- setup


def _training_option_keys(settings: TrainingSettings, vocab_size: int, n_train_tokens: int) -> dict[str, Any]:
    """bilm-tf's training-only options keys, written into the exported ``options.json``."""
    return {
        "bidirectional": True,
        "dropout": settings.dropout,
        "n_tokens_vocab": vocab_size,
        "batch_size": settings.batch_size,
        "unroll_steps": settings.unroll_steps,
        "n_negative_samples_batch": settings.n_negative_samples,
        "all_clip_norm_val": settings.clip_norm,
        "n_train_tokens": n_train_tokens,
    }


def find_reference_model(directory: str | Path) -> tuple[Path, Path]:
    """``options.json`` and the single ``*.hdf5`` weight file of a reference-format model directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PretrainError(f"--init-from: model directory not found: {directory}")
    options = directory / "options.json"
    if not options.is_file():
        raise PretrainError(f"--init-from: {directory} has no options.json")
    preferred = directory / "weights.hdf5"
    if preferred.is_file():
        return options, preferred
    candidates = sorted(p for p in directory.glob("*.hdf5") if "embedding" not in p.name)
    weight_files = [p for p in candidates if p.name in ("lm_weights.hdf5",)] or candidates
    if len(weight_files) != 1:
        raise PretrainError(f"--init-from: expected one weight file (*.hdf5) in {directory}, found {len(weight_files)}")
    return options, weight_files[0]


def build_model(
    options: ElmoOptions, settings: TrainingSettings, vocab_size: int, seed: int, init_from: str | None
) -> tuple[BiLMLanguageModel, str | None]:
    """The LM, initialised from ``seed`` (and from reference weights with ``init_from``); returns a note."""
    torch.manual_seed(seed)
    note = None
    if init_from is not None:
        options_file, weight_file = find_reference_model(init_from)
        reference = load_bilm(options_file, weight_file)
        options = reference.options
    model = BiLMLanguageModel(
        options,
        vocab_size,
        dropout=settings.dropout,
        softmax=settings.softmax,  # type: ignore[arg-type]
        n_negative_samples=settings.n_negative_samples,
    )
    if init_from is not None:
        model.bilm.load_state_dict(reference.state_dict())
        note = (
            f"fine-tuning: encoder and LSTMs loaded from {weight_file}; the weight file has no softmax, so a new "
            f"{settings.softmax} softmax over the {vocab_size:,}-word vocabulary is initialised at random"
        )
    return model, note


def export_model(model: BiLMLanguageModel, directory: str | Path, training_keys: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``options.json`` (262 characters plus bilm-tf's training keys) and ``weights.hdf5``."""
    bilm = model.bilm
    options = replace(bilm.options, extra=tuple(training_keys.items()))
    original, bilm.options = bilm.options, options
    try:
        return save_bilm(bilm, directory)
    finally:
        bilm.options = original


def save_checkpoint_file(path: Path, tensors: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``tensors`` (tensors, state dicts, lists of tensors) and ``state`` (JSON data) atomically."""
    payload = {"format": CHECKPOINT_FORMAT, "tensors": tensors, "state_json": json.dumps(state)}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint_file(path: Path, map_location: Any = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(tensors, state)`` of a checkpoint, read with ``weights_only=True`` (no code can run).

    Checkpoints of earlier versions (one dict of tensors and plain data) are read too.
    """
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PretrainError(
            f"{path} is not a checkpoint this package can read: only tensors and plain data are loaded "
            f"(weights_only), and this file holds something else or is damaged ({reason})"
        ) from None
    if not isinstance(saved, dict):
        raise PretrainError(f"{path} is not a pretraining checkpoint (it holds a {type(saved).__name__})")
    if saved.get("format") == CHECKPOINT_FORMAT:
        return saved["tensors"], json.loads(saved["state_json"])
    return saved, saved


def _python_rng_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_rng_state(state: list[Any]) -> None:
    version, internal, gauss = state
    random.setstate((version, tuple(internal), gauss))


def _numpy_rng_state() -> list[Any]:
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return [name, keys.tolist(), int(position), int(has_gauss), float(cached)]


def _set_numpy_rng_state(state: list[Any]) -> None:
    name, keys, position, has_gauss, cached = state
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))


def _rank_checkpoint(directory: Path, rank: int, step: int) -> Path:
    return directory / f"rank{rank}-step{step}.pt"


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


# ---------------------------------------------------------------------- evaluation


def evaluate(
    model: BiLMLanguageModel, corpus: TokenizedCorpus, vocab: Vocabulary, settings: TrainingSettings
) -> dict[str, float]:
    """Exact (full-softmax) perplexity of each direction on the dev text, from a zero state.

    ``dev_perplexity`` is the mean of the forward and backward perplexities, as reported by Peters et al.
    """
    was_training = model.training
    model.eval()
    device = model.bilm.device

    def batches(reverse: bool):
        return evaluation_batches(
            corpus.iter_sentences(),
            vocab,
            settings.eval_batch_size,
            settings.unroll_steps,
            reverse,
            settings.dev_max_tokens,
        )

    nll_forward = nll_backward = 0.0
    n_targets = 0
    states: list[State] | None = None
    with torch.no_grad():
        for forward_batch, backward_batch in zip(batches(False), batches(True), strict=True):
            if states is None:
                states = model.zero_states(forward_batch.targets.shape[0], device)
            output = model(forward_batch, backward_batch, states)
            states = output.states
            count = forward_batch.n_targets
            nll_forward += float(output.forward_loss) * count
            nll_backward += float(output.backward_loss) * count
            n_targets += count
    model.train(was_training)
    if n_targets == 0:
        raise PretrainDataError("the dev text holds no tokens")
    forward = math.exp(nll_forward / n_targets)
    backward = math.exp(nll_backward / n_targets)
    return {
        "dev_perplexity": 0.5 * (forward + backward),
        "dev_perplexity_forward": forward,
        "dev_perplexity_backward": backward,
        "dev_tokens": n_targets,
    }


# ---------------------------------------------------------------------- the run


def _prepare_output(config: PretrainConfig, resume: bool, ctx: DistributedContext) -> PretrainConfig:
    output = Path(config.output_dir)
    config_path = output / CONFIG_NAME
    checkpoint = output / CHECKPOINT_DIR / MODEL_CHECKPOINT
    if resume:
        if not checkpoint.is_file() or not config_path.is_file():
            raise PretrainError(f"--resume: no checkpoint in {output} (expected {checkpoint} and {config_path})")
        saved = PretrainConfig(**json.loads(config_path.read_text(encoding="utf-8")))
        # What may change on resume: RESUMABLE_OVERRIDES, and how to run (threads, device, progress bar).
        overrides = dict(saved.overrides)
        for key in RESUMABLE_OVERRIDES:
            if config.overrides.get(key) is not None:
                overrides[key] = config.overrides[key]
        resumed = replace(
            saved,
            output_dir=config.output_dir,  # where the run is now (it may have been moved or copied)
            overrides=overrides,
            max_time_minutes=config.max_time_minutes,
            threads=config.threads,
            device=config.device,
            progress=config.progress,
        )
        resumed.settings()  # validate
        if ctx.is_main and (resumed.overrides != saved.overrides or resumed.output_dir != saved.output_dir):
            _write_json(config_path, asdict(resumed))
        return resumed
    if checkpoint.is_file():
        raise PretrainError(
            f"{output} already holds a checkpoint: pass --resume to continue it, or choose a new directory"
        )
    if output.exists() and not output.is_dir():
        raise PretrainError(f"OUTPUT_DIR {output} is a file, not a directory")
    if output.is_dir() and any(output.iterdir()) and not _is_own_run(output):
        raise PretrainError(
            f"OUTPUT_DIR {output} is not empty and is not a pretraining run (it has no {CONFIG_NAME} written by "
            "pretrain): choose a new or empty directory; to continue a run, pass its directory with --resume"
        )
    config.settings()  # validate before any work
    # Every rank has looked at OUTPUT_DIR before rank 0 writes to it: a rank still checking would otherwise
    # see rank 0's half-written config.json (its temporary file) and refuse the directory.
    ctx.barrier()
    if ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
        _write_json(config_path, asdict(config))
    return config


def _is_own_run(output: Path) -> bool:
    """Whether ``output`` holds a ``config.json`` written by ``pretrain`` (a run stopped before a checkpoint)."""
    try:
        saved = json.loads((output / CONFIG_NAME).read_text(encoding="utf-8"))
        PretrainConfig(**saved)
    except (OSError, ValueError, TypeError):
        return False
    return True


def _remove_new_run(output: Path, created: bool) -> None:
    """Undo a new run that failed before its first checkpoint: ``output`` was absent (``created``) or empty."""
    if created:
        shutil.rmtree(output, ignore_errors=True)
        return
    if output.is_dir():
        for child in output.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _tokenize(config: PretrainConfig, ctx: DistributedContext) -> tuple[TokenizedCorpus, TokenizedCorpus | None]:
    """Rank 0 tokenizes (once; the shards are reused); the other ranks wait, then read the manifest."""
    tokenizer = SentenceTokenizer(config.lang, config.tokenizer)
    output = Path(config.output_dir)

    def run() -> tuple[TokenizedCorpus, TokenizedCorpus | None]:
        show = config.progress and ctx.is_main
        errors = config.encoding_errors
        train = tokenize_corpus(
            config.train, output / "data" / "train", tokenizer, "training text", progress=show, encoding_errors=errors
        )
        dev = None
        if config.dev is not None:
            dev = tokenize_corpus(
                config.dev, output / "data" / "dev", tokenizer, "dev text", progress=show, encoding_errors=errors
            )
        return train, dev

    if ctx.is_main:
        result = run()
        ctx.barrier()
        return result
    ctx.barrier()
    return run()


def pretrain(config: PretrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) a biLM as ``config`` says, then export it; returns the last log entry.

    A new run that fails (or is interrupted) before its first checkpoint leaves ``OUTPUT_DIR`` as it
    found it: absent or empty.
    """
    ctx = init_distributed(config.device)
    output = Path(config.output_dir)
    created = not output.exists()
    new_run = not resume and (created or (output.is_dir() and not any(output.iterdir())))
    try:
        return _pretrain(config, resume, ctx)
    except BaseException:
        if new_run and ctx.is_main and not (output / CHECKPOINT_DIR / MODEL_CHECKPOINT).is_file():
            _remove_new_run(output, created)
        raise
    finally:
        if ctx.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _pretrain(config: PretrainConfig, resume: bool, ctx: DistributedContext) -> dict[str, Any]:
    # Fail on bad input before touching the output directory.
    for path, what in ((config.train, "training text"), (config.dev, "dev text")):
        if path is not None and not Path(path).exists():
            raise PretrainDataError(f"{what} not found: {path}")
    get_preset(config.preset)
    if config.encoding_errors not in ENCODING_ERRORS:
        raise PretrainError(f"encoding_errors must be one of {ENCODING_ERRORS}, found {config.encoding_errors!r}")
    if config.precision not in PRECISIONS:
        raise PretrainError(f"precision must be one of {PRECISIONS}, found {config.precision!r}")
    config = _prepare_output(config, resume, ctx)
    settings = config.settings()
    threads = config.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    run_dir = Path(config.output_dir)
    checkpoints = run_dir / CHECKPOINT_DIR

    train_corpus, dev_corpus = _tokenize(config, ctx)
    vocab_path = run_dir / VOCAB_NAME
    if resume:
        vocab = Vocabulary.load(vocab_path)
    else:
        vocab = Vocabulary.from_counts(train_corpus.counts, settings.max_vocab_size, settings.min_count)
        if ctx.is_main:
            vocab.save(vocab_path)

    model, note = build_model(get_preset(config.preset).options, settings, len(vocab), config.seed, config.init_from)
    model.to(ctx.device)
    if note and ctx.is_main:
        print(note, flush=True)
    optimizer = build_optimizer(model, settings)
    model.sampler = torch.Generator().manual_seed(config.seed * 7919 + ctx.rank)
    torch.manual_seed(config.seed * 7919 + ctx.rank)
    streams = [
        SentenceStream(train_corpus.shards, config.seed * 2 + direction, ctx.rank, ctx.world_size)
        for direction in (0, 1)
    ]
    forward_batcher, backward_batcher = (
        LMBatcher(
            stream,
            vocab,
            settings.batch_size,
            settings.unroll_steps,
            reverse=direction == 1,
            reset_probability=settings.state_reset_probability,
        )
        for direction, stream in enumerate(streams)
    )
    states = model.zero_states(settings.batch_size, ctx.device)
    step = 0
    elapsed = 0.0
    tokens_seen = 0

    if resume:
        saved, saved_state = load_checkpoint_file(checkpoints / MODEL_CHECKPOINT, map_location=ctx.device)
        if saved_state["world_size"] != ctx.world_size:
            raise PretrainError(
                f"--resume: the checkpoint was written by {saved_state['world_size']} processes, this run has "
                f"{ctx.world_size}; resume with the same number"
            )
        step = saved_state["step"]
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rank_tensors, rank_state = load_checkpoint_file(_rank_checkpoint(checkpoints, ctx.rank, step))
        forward_batcher.load_state_dict(rank_state["forward_batcher"])
        backward_batcher.load_state_dict(rank_state["backward_batcher"])
        states = [(h.to(ctx.device), c.to(ctx.device)) for h, c in rank_tensors["states"]]
        torch.set_rng_state(rank_tensors["torch_rng"])
        model.sampler.set_state(rank_tensors["sampler_rng"])
        if rank_tensors.get("cuda_rng") is not None and ctx.device.type == "cuda":
            torch.cuda.set_rng_state(rank_tensors["cuda_rng"], ctx.device)
        if rank_state.get("numpy_rng") is not None:
            _set_numpy_rng_state(rank_state["numpy_rng"])
        if rank_state.get("python_rng") is not None:
            _set_python_rng_state(rank_state["python_rng"])
        elapsed, tokens_seen = rank_state["elapsed"], rank_state["tokens_seen"]
        if ctx.is_main:
            _truncate_log(run_dir / LOG_NAME, step)
            print(f"resumed from step {step} ({checkpoints / MODEL_CHECKPOINT})", flush=True)

    trained: nn.Module = model
    # Sparse softmax gradients (one process): ``clip_gradients`` and Adagrad's sparse update handle them.
    model.sparse_softmax_gradient = not ctx.enabled
    if ctx.enabled:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # An adaptive softmax's tail clusters get no gradient in batches without their words.
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=settings.softmax == "adaptive"
        )

    training_keys = _training_option_keys(settings, len(vocab), train_corpus.n_tokens)
    tokens_per_step = settings.batch_size * settings.unroll_steps * ctx.world_size

    def save_checkpoint() -> None:
        rank_tensors = {
            "states": [(h.cpu(), c.cpu()) for h, c in states],
            "torch_rng": torch.get_rng_state(),
            "sampler_rng": model.sampler.get_state(),
            "cuda_rng": torch.cuda.get_rng_state(ctx.device) if ctx.device.type == "cuda" else None,
        }
        rank_state = {
            "step": step,
            "forward_batcher": forward_batcher.state_dict(),
            "backward_batcher": backward_batcher.state_dict(),
            "numpy_rng": _numpy_rng_state(),
            "python_rng": _python_rng_state(),
            "elapsed": elapsed,
            "tokens_seen": tokens_seen,
            # Lets anyone check that every rank holds the same weights (DDP keeps them in sync).
            "parameter_checksum": float(sum(p.detach().double().sum() for p in model.parameters())),
        }
        save_checkpoint_file(_rank_checkpoint(checkpoints, ctx.rank, step), rank_tensors, rank_state)
        ctx.barrier()
        if ctx.is_main:
            save_checkpoint_file(
                checkpoints / MODEL_CHECKPOINT,
                {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                {"step": step, "world_size": ctx.world_size},
            )
            # Keep this step's rank files and the previous ones (in case a kill lands mid-save).
            for old in checkpoints.glob("rank*-step*.pt"):
                old_step = int(old.stem.split("-step")[1])
                if old_step < step and old_step != previous_checkpoint_step[0]:
                    old.unlink(missing_ok=True)
        previous_checkpoint_step[0] = step
        ctx.barrier()

    previous_checkpoint_step = [step]
    if ctx.is_main:
        checkpoints.mkdir(parents=True, exist_ok=True)
    ctx.barrier()

    last_entry: dict[str, Any] = {}
    if not resume:
        save_checkpoint()  # step 0: a kill before the first interval resumes from the initial weights

    progress = None
    if ctx.is_main and config.progress:
        from tqdm import tqdm

        progress = tqdm(total=settings.max_steps, initial=step, desc="pretraining", unit="step", mininterval=5.0)

    loss_sum = 0.0
    loss_count = 0
    started = time.perf_counter()
    elapsed_at_start = elapsed
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    while step < settings.max_steps:
        if config.max_time_minutes is not None and _time_is_up(
            time.perf_counter() - started, config.max_time_minutes, ctx
        ):
            break
        output = training_step(
            trained,
            optimizer,
            parameters,
            (next(forward_batcher), next(backward_batcher)),
            states,
            settings,
            config.precision,
            ctx.device.type,
        )
        states = output.states
        step += 1
        tokens_seen += tokens_per_step
        loss_sum += float(output.loss.detach())
        loss_count += 1
        elapsed = elapsed_at_start + time.perf_counter() - started
        if progress is not None:
            progress.update(1)
            if step % 10 == 0:
                mean = loss_sum / loss_count
                progress.set_postfix(
                    loss=f"{mean:.3f}", ppl=f"{math.exp(min(mean, 50)):.1f}", tok_s=f"{tokens_seen / elapsed:.0f}"
                )
        if step % settings.eval_every == 0 or step == settings.max_steps:
            last_entry = _log_evaluation(model, dev_corpus, vocab, settings, ctx, step, loss_sum, loss_count)
            last_entry.update(_progress_fields(step, tokens_seen, elapsed, train_corpus))
            if ctx.is_main:
                _append_log(run_dir / LOG_NAME, last_entry)
            loss_sum, loss_count = 0.0, 0
        if step % settings.checkpoint_every == 0 or step == settings.max_steps:
            save_checkpoint()
    if progress is not None:
        progress.close()
    if previous_checkpoint_step[0] != step:
        if loss_count:
            last_entry = _log_evaluation(model, dev_corpus, vocab, settings, ctx, step, loss_sum, loss_count)
            last_entry.update(_progress_fields(step, tokens_seen, elapsed, train_corpus))
            if ctx.is_main:
                _append_log(run_dir / LOG_NAME, last_entry)
        save_checkpoint()
    if ctx.is_main:
        export_model(model, run_dir, training_keys)
        print(f"exported {run_dir / 'options.json'} and {run_dir / 'weights.hdf5'} at step {step}", flush=True)
    ctx.barrier()
    return last_entry


def build_optimizer(model: nn.Module, settings: TrainingSettings) -> torch.optim.Adagrad:
    """bilm-tf's optimiser: Adagrad with the settings' learning rate and initial accumulator."""
    return torch.optim.Adagrad(
        model.parameters(), lr=settings.learning_rate, initial_accumulator_value=settings.initial_accumulator
    )


def training_step(
    trained: nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[nn.Parameter],
    batches: tuple[LMBatch, LMBatch],
    states: list[State],
    settings: TrainingSettings,
    precision: str = "float32",
    device_type: str = "cpu",
) -> LMOutput:
    """One update: reset the marked rows' states, both LMs forward, backward of ``loss * unroll_steps``
    (bilm-tf's sum over the window), global-norm clipping, Adagrad. Returns the model's output."""
    forward_batch, backward_batch = batches
    states = reset_states(states, forward_batch, backward_batch)
    with training_precision(precision, device_type):
        output = trained(forward_batch, backward_batch, states)
    (output.loss * settings.unroll_steps).backward()
    clip_gradients(parameters, settings.clip_norm)
    # Sparse softmax gradients: Adagrad builds its sparse tensors from coalesced ones; the checks stay off,
    # said explicitly (PyTorch warns when they are off by default).
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return output


def clip_gradients(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``nn.utils.clip_grad_norm_`` (global 2-norm, same coefficient) for dense and sparse gradients.

    A sparse gradient (``BiLMLanguageModel.sparse_softmax_gradient``) is coalesced in place first, so that
    its norm and Adagrad's update see each row once. Returns the total norm before clipping.
    """
    grads = []
    for p in parameters:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad._values())
        else:
            grads.append(p.grad)
    if not grads:
        return torch.zeros(())
    total = nn.utils.get_total_norm(grads)
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for grad in grads:
        grad.mul_(coefficient)
    return total


def reset_states(states: list[State], forward_batch: LMBatch, backward_batch: LMBatch) -> list[State]:
    """Zero the carried state of rows marked ``reset`` (forward layers first, then backward)."""
    n_layers = len(states) // 2
    updated = []
    for index, (h, c) in enumerate(states):
        reset = (forward_batch if index < n_layers else backward_batch).reset
        if reset is None or not bool(reset.any()):
            updated.append((h, c))
            continue
        keep = (~reset).to(h.device, h.dtype)[:, None]
        updated.append((h * keep, c * keep))
    return updated


def _time_is_up(elapsed_this_run: float, limit_minutes: float, ctx: DistributedContext) -> bool:
    up = torch.tensor([1.0 if elapsed_this_run >= limit_minutes * 60 else 0.0], device=ctx.device)
    if ctx.enabled:
        dist.all_reduce(up, op=dist.ReduceOp.MAX)
    return bool(up.item() > 0)


def _progress_fields(step: int, tokens_seen: int, elapsed: float, corpus: TokenizedCorpus) -> dict[str, Any]:
    # Targets per epoch and direction: every token plus one </S> per sentence.
    epoch_tokens = corpus.n_tokens + corpus.n_sentences
    return {
        "tokens_seen": tokens_seen,
        "epochs": round(tokens_seen / epoch_tokens, 4),
        "elapsed_s": round(elapsed, 1),
        "tokens_per_s": round(tokens_seen / elapsed, 1) if elapsed > 0 else None,
    }


def _log_evaluation(
    model: BiLMLanguageModel,
    dev_corpus: TokenizedCorpus | None,
    vocab: Vocabulary,
    settings: TrainingSettings,
    ctx: DistributedContext,
    step: int,
    loss_sum: float,
    loss_count: int,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"step": step, "train_loss": round(loss_sum / max(loss_count, 1), 5)}
    if dev_corpus is not None and ctx.is_main:
        entry.update(evaluate(model, dev_corpus, vocab, settings))
    elif dev_corpus is None:
        entry["dev_perplexity"] = None
    ctx.barrier()
    return entry


def _append_log(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log entries written after the checkpoint being resumed (they will be written again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill while it was appended
        if entry["step"] <= step:
            kept.append(line)
    atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8"))


def load_checkpoint(output_dir: str | Path) -> tuple[BiLMLanguageModel, Vocabulary, PretrainConfig]:
    """The language model (with its softmax) of a run's latest checkpoint, in eval mode, its vocabulary and config."""
    output = Path(output_dir)
    config_path = output / CONFIG_NAME
    checkpoint = output / CHECKPOINT_DIR / MODEL_CHECKPOINT
    if not config_path.is_file() or not checkpoint.is_file():
        raise PretrainError(f"{output} is not a pretraining directory (expected {config_path} and {checkpoint})")
    config = PretrainConfig(**json.loads(config_path.read_text(encoding="utf-8")))
    settings = config.settings()
    vocab = Vocabulary.load(output / VOCAB_NAME)
    saved, _ = load_checkpoint_file(checkpoint)
    options = get_preset(config.preset).options
    if config.init_from is not None:
        options = ElmoOptions.from_dict(json.loads((Path(config.init_from) / "options.json").read_text()))
    model = BiLMLanguageModel(
        options,
        len(vocab),
        dropout=settings.dropout,
        softmax=settings.softmax,  # type: ignore[arg-type]
        n_negative_samples=settings.n_negative_samples,
    )
    model.load_state_dict(saved["model"])
    return model.eval(), vocab, config


def export_checkpoint(output_dir: str | Path, to: str | Path | None = None) -> tuple[Path, Path]:
    """Export the latest checkpoint of a run to ``options.json`` + ``weights.hdf5`` (in ``to`` or the run dir)."""
    output = Path(output_dir)
    model, vocab, config = load_checkpoint(output)
    manifest = json.loads((output / "data" / "train" / "manifest.json").read_text(encoding="utf-8"))
    keys = _training_option_keys(config.settings(), len(vocab), manifest["n_tokens"])
    target = Path(to) if to is not None else output
    paths = export_model(model, target, keys)
    if target != output:
        vocab.save(target / VOCAB_NAME)
    return paths


def evaluate_text(
    output_dir: str | Path, text: str | Path, max_tokens: int | None = None, encoding_errors: str = "strict"
) -> dict[str, float]:
    """Exact perplexities of a run's latest checkpoint on held-out ``text`` (tokenized as the run's text was)."""
    import tempfile

    model, vocab, config = load_checkpoint(output_dir)
    settings = replace(config.settings(), dev_max_tokens=max_tokens)
    tokenizer = SentenceTokenizer(config.lang, config.tokenizer)
    with tempfile.TemporaryDirectory() as directory:
        corpus = tokenize_corpus(text, directory, tokenizer, "evaluation text", encoding_errors=encoding_errors)
        return evaluate(model, corpus, vocab, settings)
