"""Command line: ``python -m spacy_elmo COMMAND ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .bilm.cpu_matmul import PRECISIONS
from .bilm.model import STATE_MODES
from .errors import ElmoError
from .pretrain.cli import add_evaluate_parser, add_export_parser, add_pretrain_parser


def _add_embed_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed a whitespace-tokenized text file into HDF5",
        description=(
            "Embed INPUT (one whitespace-tokenized sentence per line) into OUTPUT (HDF5, one dataset per "
            "line named by its 0-based line number), as AllenNLP's `elmo` command writes."
        ),
    )
    parser.add_argument("input", help="text file, one tokenized sentence per line")
    parser.add_argument("output", help="HDF5 file to write")
    parser.add_argument(
        "--weights",
        help="the model: an ELMoForManyLangs model directory, a directory with options.json and one .hdf5 "
        "file, a bundled model name or a URL (as the component's 'weights' setting); or give both "
        "--options-file and --weight-file",
    )
    parser.add_argument("--options-file", help="options.json of the biLM (with --weight-file)")
    parser.add_argument("--weight-file", help="HDF5 weights of the biLM (with --options-file)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default 64)")
    parser.add_argument(
        "--layers",
        choices=("all", "top", "average"),
        default="all",
        help="all: (3, n, 2P); top: (n, 2P); average: (n, 2P) mean of the layers (default all)",
    )
    parser.add_argument(
        "--state",
        choices=STATE_MODES,
        default="reset",
        help="reset: every sentence from a zero state (default); stateful: AllenNLP/bilm-tf behaviour, "
        "line i*N+r runs in batch row r and continues row r's state",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32: exact (default); int8: faster, about 2%% relative change per vector; bf16: for CPUs with "
        "AVX512-BF16 or AMX (see bench/RESULTS.md)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from .bilm.weights import load_bilm
    from .embed_file import embed_file

    if args.batch_size < 1:
        raise ElmoError(f"--batch-size must be at least 1, found {args.batch_size}")
    pair = (args.options_file, args.weight_file)
    if args.weights is not None:
        if pair != (None, None):
            raise ElmoError("give either --weights or --options-file and --weight-file, not both")
        model = load_bilm(args.weights, state=args.state, precision=args.precision)
    elif None in pair:
        raise ElmoError("give --weights, or both --options-file and --weight-file")
    else:
        model = load_bilm(args.options_file, args.weight_file, state=args.state, precision=args.precision)
    count = embed_file(
        model,
        args.input,
        args.output,
        batch_size=args.batch_size,
        layers=args.layers,
        progress=False if args.quiet else None,
    )
    print(f"wrote {count} sentences to {args.output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_elmo", description="ELMo for spaCy")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_embed_parser(subparsers)
    add_pretrain_parser(subparsers)
    add_export_parser(subparsers)
    add_evaluate_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ElmoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
