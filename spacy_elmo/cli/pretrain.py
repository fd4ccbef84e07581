"""Command line: ``pretrain TRAIN OUTPUT_DIR [...]``, ``export-pretrained OUTPUT_DIR [--to DIR]`` and
``evaluate-pretrained OUTPUT_DIR TEXT``.

``spacy_elmo.cli`` (``python -m spacy_elmo``, the ``spacy-elmo`` script) wires ``add_pretrain_parser``,
``add_export_parser`` and ``add_evaluate_parser`` in. The training itself is ``spacy_elmo.pretrain``,
imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ..pretrain.presets import PRESETS
from ..text_lines import ENCODING_ERRORS


def add_pretrain_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``pretrain`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain or fine-tune an ELMo biLM on raw text and export it (options.json + weights.hdf5)",
        description=(
            "Pretrain (or, with --init-from, fine-tune) a bidirectional ELMo language model on raw text, "
            "tokenized with spaCy's tokenizer for --lang. Runs alone or under `torchrun --nproc_per_node N` "
            "(DDP). OUTPUT_DIR gets options.json + weights.hdf5 (reference layout), vocab.txt, log.jsonl "
            "and checkpoints/."
        ),
    )
    parser.add_argument(
        "train",
        help="training text: a UTF-8 file or a directory of files, one paragraph per line (LF, CRLF or CR line ends)",
    )
    parser.add_argument(
        "output_dir",
        help="where checkpoints, the log and the exported model go: a new or empty directory, or with --resume "
        "a run's directory",
    )
    parser.add_argument(
        "--dev", default=None, help="held-out text (file or directory) for dev perplexity (default: none)"
    )
    parser.add_argument(
        "--preset", default="tiny", help=f"model and training sizes: {', '.join(PRESETS)} (default: %(default)s)"
    )
    parser.add_argument("--lang", default="en", help="spaCy language code of the tokenizer (default: %(default)s)")
    parser.add_argument(
        "--tokenizer",
        choices=("spacy", "whitespace"),
        default="spacy",
        help="spacy: sentences split by the sentencizer; whitespace: pre-tokenized, one sentence a line "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--encoding-errors",
        choices=ENCODING_ERRORS,
        default="strict",
        help="strict: text that is not UTF-8 is an error naming the line and byte; replace: read such bytes as "
        "U+FFFD (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, data order and sampling (default: %(default)s)"
    )
    parser.add_argument(
        "--init-from", default=None, help="fine-tune: a directory with options.json + *.hdf5 (default: none)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUTPUT_DIR's last checkpoint (default: a new run)"
    )
    _training_option(parser, "--max-steps", int, "max_steps", "training steps in all (a resumed run may raise it)")
    parser.add_argument(
        "--max-time",
        type=float,
        default=None,
        help="stop (checkpoint and export) after N minutes of this run (default: no limit)",
    )
    _training_option(parser, "--batch-size", int, "batch_size", "rows per process")
    _training_option(parser, "--unroll-steps", int, "unroll_steps", "tokens per row and step (truncated BPTT)")
    _training_option(parser, "--dropout", float, "dropout", "dropout rate")
    _training_option(
        parser,
        "--state-reset",
        float,
        "state_reset_probability",
        "share of rows per batch restarted at a sentence start from a zero LSTM state",
    )
    _training_option(parser, "--softmax", str, "softmax", "sampled, adaptive or full", ("sampled", "adaptive", "full"))
    _training_option(parser, "--negative-samples", int, "n_negative_samples", "negative samples of the sampled softmax")
    _training_option(parser, "--max-vocab-size", int, "max_vocab_size", "most frequent words in the softmax")
    _training_option(parser, "--min-count", int, "min_count", "fewest occurrences of a softmax word")
    _training_option(parser, "--learning-rate", float, "learning_rate", "Adagrad learning rate")
    _training_option(parser, "--clip-norm", float, "clip_norm", "global gradient norm clip")
    _training_option(parser, "--eval-every", int, "eval_every", "steps between evaluations (log.jsonl)")
    _training_option(parser, "--checkpoint-every", int, "checkpoint_every", "steps between checkpoints")
    _training_option(parser, "--dev-max-tokens", int, "dev_max_tokens", "dev targets evaluated (none: all)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per process (default: the cores per process)"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where to train (default: cuda where available, else cpu)",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="bfloat16: matrix products in bfloat16 (weights, optimiser, softmax and loss stay float32), faster on "
        "CPUs with AMX or AVX512-BF16; kept on --resume (default: float32)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: a progress bar)")
    parser.set_defaults(func=run_pretrain)
    return parser


def _preset_defaults(field: str) -> str:
    """``"tiny 8, mini 64, ptb 20, small/medium/original 128"``: the presets' values of a training setting."""
    by_value: dict[str, list[str]] = {}
    for name, preset in PRESETS.items():
        value = getattr(preset.training, field)
        by_value.setdefault("none" if value is None else str(value), []).append(name)
    if len(by_value) == 1:
        return f"{next(iter(by_value))} in every preset"
    return ", ".join(f"{'/'.join(names)} {value}" for value, names in by_value.items())


def _training_option(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: type,
    field: str,
    help_text: str,
    choices: Sequence[str] | None = None,
) -> None:
    """An override of the preset's training setting ``field``; its help shows every preset's default."""
    parser.add_argument(
        flag, type=kind, default=None, choices=choices, help=f"{help_text} (default: {_preset_defaults(field)})"
    )


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export-pretrained`` subcommand: latest checkpoint to options.json + weights.hdf5."""
    parser = subparsers.add_parser(
        "export-pretrained",
        help="export a pretraining run's latest checkpoint to options.json + weights.hdf5",
        description=(
            "Export the latest checkpoint of a pretraining run (OUTPUT_DIR/checkpoints/model.pt) as options.json + "
            "weights.hdf5 in the bilm-tf / AllenNLP layout (no softmax), e.g. of a run stopped before its end; "
            "with --to, vocab.txt is copied too. pretrain itself exports when it stops."
        ),
    )
    parser.add_argument("output_dir", help="the pretraining OUTPUT_DIR")
    parser.add_argument("--to", default=None, help="export into this directory (default: OUTPUT_DIR)")
    parser.set_defaults(func=run_export)
    return parser


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``evaluate-pretrained``: exact forward/backward perplexity of a run's checkpoint on a text."""
    parser = subparsers.add_parser(
        "evaluate-pretrained",
        help="perplexity of a pretraining run's latest checkpoint on held-out text",
        description=(
            "Exact (full-softmax) forward, backward and mean perplexity of a pretraining run's latest checkpoint "
            "on TEXT, tokenized as the run's training text was; prints one JSON object."
        ),
    )
    parser.add_argument("output_dir", help="the pretraining OUTPUT_DIR")
    parser.add_argument("text", help="held-out text: a UTF-8 file or a directory of files")
    parser.add_argument("--max-tokens", type=int, default=None, help="evaluate only the first N targets (default: all)")
    parser.add_argument(
        "--encoding-errors",
        choices=ENCODING_ERRORS,
        default="strict",
        help="strict: text that is not UTF-8 is an error; replace: read such bytes as U+FFFD (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.set_defaults(func=run_evaluate)
    return parser


def run_pretrain(args: argparse.Namespace) -> int:
    from ..pretrain.allocator import keep_freed_memory
    from ..pretrain.train import PretrainConfig, pretrain

    keep_freed_memory()  # this process is the training run's: each step reuses the last one's memory

    overrides = {
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "unroll_steps": args.unroll_steps,
        "dropout": args.dropout,
        "state_reset_probability": args.state_reset,
        "softmax": args.softmax,
        "n_negative_samples": args.negative_samples,
        "max_vocab_size": args.max_vocab_size,
        "min_count": args.min_count,
        "learning_rate": args.learning_rate,
        "clip_norm": args.clip_norm,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "dev_max_tokens": args.dev_max_tokens,
    }
    config = PretrainConfig(
        train=args.train,
        output_dir=args.output_dir,
        dev=args.dev,
        preset=args.preset,
        lang=args.lang,
        tokenizer=args.tokenizer,
        seed=args.seed,
        init_from=args.init_from,
        overrides={k: v for k, v in overrides.items() if v is not None},
        max_time_minutes=args.max_time,
        threads=args.threads,
        device=args.device,
        progress=not args.no_progress,
        encoding_errors=args.encoding_errors,
        precision=args.precision,
    )
    entry = pretrain(config, resume=args.resume)
    if entry:
        print(json.dumps(entry))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..pretrain.train import export_checkpoint

    options_file, weight_file = export_checkpoint(args.output_dir, args.to)
    print(f"exported {options_file} and {weight_file}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from ..pretrain.train import evaluate_text

    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(evaluate_text(args.output_dir, args.text, args.max_tokens, args.encoding_errors)))
    return 0
