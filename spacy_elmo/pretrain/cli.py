"""Command line: ``pretrain TRAIN OUTPUT_DIR [...]``, ``export-pretrained OUTPUT_DIR [--to DIR]`` and
``evaluate-pretrained OUTPUT_DIR TEXT``.

``spacy_elmo.cli`` (``python -m spacy_elmo``, the ``spacy-elmo`` script) wires ``add_pretrain_parser``,
``add_export_parser`` and ``add_evaluate_parser`` in; this module imports nothing of it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .presets import PRESETS


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
    parser.add_argument("train", help="training text: a file or a directory of files, one paragraph per line")
    parser.add_argument("output_dir", help="where checkpoints, the log and the exported model go")
    parser.add_argument("--dev", default=None, help="held-out text (file or directory) for dev perplexity")
    parser.add_argument("--preset", default="tiny", help=f"model and training sizes: {', '.join(PRESETS)}")
    parser.add_argument("--lang", default="en", help="spaCy language code of the tokenizer (default en)")
    parser.add_argument(
        "--tokenizer",
        choices=("spacy", "whitespace"),
        default="spacy",
        help="spacy (default; sentences split by the sentencizer) or whitespace (pre-tokenized, one sentence a line)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-from", default=None, help="fine-tune: a directory with options.json + *.hdf5")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR's last checkpoint")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--max-time", type=float, default=None, help="stop (checkpoint and export) after N minutes")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per process")
    parser.add_argument("--unroll-steps", type=int, default=None)
    parser.add_argument("--dropout", type=float, default=None)
    parser.add_argument(
        "--state-reset",
        type=float,
        default=None,
        help="share of rows per batch restarted at a sentence start from a zero LSTM state (default 0.1)",
    )
    parser.add_argument("--softmax", choices=("sampled", "adaptive", "full"), default=None)
    parser.add_argument("--negative-samples", type=int, default=None)
    parser.add_argument("--max-vocab-size", type=int, default=None)
    parser.add_argument("--min-count", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--clip-norm", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--dev-max-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_pretrain)
    return parser


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export-pretrained`` subcommand: latest checkpoint to options.json + weights.hdf5."""
    parser = subparsers.add_parser(
        "export-pretrained",
        help="export a pretraining run's latest checkpoint to options.json + weights.hdf5",
    )
    parser.add_argument("output_dir", help="the pretraining OUTPUT_DIR")
    parser.add_argument("--to", default=None, help="export into this directory (default: OUTPUT_DIR)")
    parser.set_defaults(func=run_export)
    return parser


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``evaluate-pretrained``: exact forward/backward perplexity of a run's checkpoint on a text."""
    parser = subparsers.add_parser(
        "evaluate-pretrained", help="perplexity of a pretraining run's latest checkpoint on held-out text"
    )
    parser.add_argument("output_dir", help="the pretraining OUTPUT_DIR")
    parser.add_argument("text", help="held-out text: a file or a directory of files")
    parser.add_argument("--max-tokens", type=int, default=None, help="evaluate only the first N targets")
    parser.add_argument("--threads", type=int, default=None)
    parser.set_defaults(func=run_evaluate)
    return parser


def run_pretrain(args: argparse.Namespace) -> int:
    from .train import PretrainConfig, pretrain

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
    )
    entry = pretrain(config, resume=args.resume)
    if entry:
        print(json.dumps(entry))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .train import export_checkpoint

    options_file, weight_file = export_checkpoint(args.output_dir, args.to)
    print(f"exported {options_file} and {weight_file}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .train import evaluate_text

    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(evaluate_text(args.output_dir, args.text, args.max_tokens)))
    return 0
