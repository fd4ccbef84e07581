"""``download NAME`` and ``models``: the catalog of published models and the download cache."""

from __future__ import annotations

import argparse
from typing import Any


def add_download_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``download`` subcommand to an argparse ``subparsers`` object."""
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
    parser.set_defaults(func=run_download)
    return parser


def run_download(args: argparse.Namespace) -> int:
    from ..weights_source import download_model

    print(download_model(args.name, args.to, progress=not args.quiet))
    return 0


def add_models_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``models`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "models", help="list the published models by name, and which are cached", description=run_models.__doc__
    )
    parser.set_defaults(func=run_models)
    return parser


def run_models(args: argparse.Namespace) -> int:
    """List the catalog of published models (usable by name in 'weights') and what is in the cache."""
    from ..catalog import CATALOG
    from ..weights_source import bundled_models, cache_dir, cached_entry_dir, describe_mirror

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
