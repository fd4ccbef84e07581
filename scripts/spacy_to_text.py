"""Write the tokens of a .spacy corpus as plain text, one Doc per line, tokens separated by spaces.

The output is what `python -m spacy_elmo pretrain --tokenizer whitespace` reads, so a biLM can be fine-tuned on a
task's own training text (its labels are not used). Tokens with whitespace inside (rare: spaCy keeps runs of spaces
as tokens) are dropped, since the reader would split them. The file is written atomically.

Usage: python scripts/spacy_to_text.py corpus/wnut/train.spacy corpus/wnut/train.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import spacy
from corpus_io import write_atomic_bytes
from spacy.tokens import DocBin


def doc_lines(path: Path) -> list[str]:
    """One line per non-empty Doc of the .spacy file at `path`: its tokens joined by single spaces."""
    vocab = spacy.blank("en").vocab
    lines = []
    for doc in DocBin().from_disk(path).get_docs(vocab):
        words = [token.text for token in doc if token.text and not any(c.isspace() for c in token.text)]
        if words:
            lines.append(" ".join(words))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="a .spacy file")
    parser.add_argument("output", type=Path, help="the text file to write")
    args = parser.parse_args()
    if not args.corpus.is_file():
        print(f"error: {args.corpus} is not a file", file=sys.stderr)
        return 1
    lines = doc_lines(args.corpus)
    if not lines:
        print(f"error: {args.corpus} holds no tokens", file=sys.stderr)
        return 1
    write_atomic_bytes(args.output, ("\n".join(lines) + "\n").encode("utf8"))
    print(f"{args.output}: {len(lines):,} lines, {sum(len(line.split()) for line in lines):,} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
