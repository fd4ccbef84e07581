"""Command line: ``python -m spacy_elmo COMMAND ...`` and the ``spacy-elmo`` script.

One module per group of commands; they import nothing of each other or of this package module:

- ``embed``: a text file into HDF5 (``cli/embed.py``);
- ``download``, ``models``: published models and the cache (``cli/models.py``);
- ``pretrain``, ``export-pretrained``, ``evaluate-pretrained``: training a biLM (``cli/pretrain.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import ElmoError
from .embed import add_embed_parser
from .models import add_download_parser, add_models_parser
from .pretrain import add_evaluate_parser, add_export_parser, add_pretrain_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_elmo", description="ELMo for spaCy")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_embed_parser(subparsers)
    add_download_parser(subparsers)
    add_models_parser(subparsers)
    add_pretrain_parser(subparsers)
    add_export_parser(subparsers)
    add_evaluate_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an ``ElmoError`` is printed as ``error: ...`` with exit status 1."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ElmoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
