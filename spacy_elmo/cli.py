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
            "Embed INPUT (one whitespace-tokenized sentence per line; LF, CRLF or CR line ends; UTF-8, a "
            "byte order mark is ignored) into OUTPUT (HDF5, one dataset per line named by its 0-based line "
            "number), as AllenNLP's `elmo` command writes. Ctrl-C, SIGTERM or an error leaves no partial "
            "output; a temporary file left by a SIGKILL is removed by the next run for the same OUTPUT."
        ),
    )
    parser.add_argument("input", help="text file, one tokenized sentence per line")
    parser.add_argument(
        "output",
        help="HDF5 file to write (its directory must exist); written to a temporary file and moved into place when "
        "complete",
    )
    parser.add_argument(
        "--weights",
        help="the biLM in one argument: a catalog name (see `models`), bundled name, directory (an "
        "ELMoForManyLangs model directory too), archive or URL",
    )
    parser.add_argument("--options-file", help="options.json of the biLM (path or URL)")
    parser.add_argument("--weight-file", help="HDF5 weights of the biLM (path or URL)")
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
    from .embed_file import check_output_path, embed_file, exit_cleanly_on_sigterm
    from .loading import load_bilm

    if args.batch_size < 1:
        raise ElmoError(f"--batch-size must be at least 1, found {args.batch_size}")
    if args.weights is not None and args.weight_file is not None:
        raise ElmoError("give either --weights or --weight-file, not both")
    if args.weights is None and (args.options_file is None or args.weight_file is None):
        raise ElmoError("give the biLM: --weights NAME|DIR|URL, or both --options-file and --weight-file")
    check_output_path(args.output)  # before the (slow) model load
    progress = not args.quiet
    with exit_cleanly_on_sigterm():
        if args.weights is not None:
            model = load_bilm(
                args.weights, options=args.options_file, state=args.state, precision=args.precision, progress=progress
            )
        else:
            model = load_bilm(
                args.options_file, args.weight_file, state=args.state, precision=args.precision, progress=progress
            )
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


def _add_download_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download a published model (see `models`) into the cache",
        description=(
            "Download catalog model NAME once into the cache ($SPACY_ELMO_CACHE, else ~/.cache/spacy_elmo), from its "
            "publisher or $SPACY_ELMO_MIRROR; verify it and print the directory holding its files."
        ),
    )
    parser.add_argument("name", help="catalog name, e.g. original")
    parser.add_argument("--to", help="also copy the files into this directory (a directory 'weights' accepts)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    from .weights_source import download_model

    print(download_model(args.name, args.to, progress=not args.quiet))
    return 0


def _add_models_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list the published models by name, and which are cached", description=_run_models.__doc__
    )
    parser.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    """List the catalog of published models (usable by name in 'weights') and what is in the cache."""
    from .catalog import CATALOG
    from .weights_source import bundled_models, cache_dir, cached_entry_dir, describe_mirror

    print(f"{'name':<14} {'params':>7} {'size':>8}  {'trained on':<48} cached")
    for entry in CATALOG.values():
        params = f"{entry.parameters / 1e6:.1f}M" if entry.parameters else "?"
        size = entry.approximate_size
        # "~": 4 bytes a parameter, where no size is on record
        size_text = "?" if size is None else f"{'' if entry.size_bytes else '~'}{size / 1e6:.0f} MB"
        cached = cached_entry_dir(entry)
        print(f"{entry.name:<14} {params:>7} {size_text:>8}  {entry.training_data[:48]:<48} {cached or '-'}")
    print(f"bundled: {', '.join(bundled_models()) or 'none'}")
    print(f"cache: {cache_dir()}; {describe_mirror()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_elmo", description="ELMo for spaCy")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_embed_parser(subparsers)
    _add_download_parser(subparsers)
    _add_models_parser(subparsers)
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
