"""Show what the demo pipeline (ELMo + NER trained on WNUT-16) does: entities and contextual similarity.

Usage: python scripts/demo_predict.py training/demo/model-best
The `elmo` component sets contextual token vectors and similarity hooks, so the same word in two contexts gets
two different vectors, and `doc.similarity` compares mean contextual vectors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Token

SENTENCES = [
    "Just landed in New York , heading to the Empire State Building with @john tonight !",
    "Watching the Lakers game at Staples Center , Kobe is on fire",
    "Apple just released the new iPhone and Samsung is not happy lol",
    "Listening to Taylor Swift on Spotify while reading Harry Potter in London",
]
SIMILARITY_PAIRS = [
    ("I deposited the cheque at the bank this morning .", "We had a picnic on the bank of the river ."),
    ("The stock market fell sharply after the report .", "Shares dropped on Wall Street after the news ."),
]


def first_token(doc: Doc, text: str) -> Token:
    return next(token for token in doc if token.lower_ == text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path, help="trained pipeline directory (model-best)")
    args = parser.parse_args()

    nlp: Language = spacy.load(args.model)
    print(f"pipeline: {nlp.pipe_names}")
    print("\nEntities (demo model, trained for a few hundred steps, so expect misses):")
    for doc in nlp.pipe(SENTENCES):
        entities = ", ".join(f"{ent.text} [{ent.label_}]" for ent in doc.ents) or "(none)"
        print(f"  {doc.text}\n    -> {entities}")

    print("\nContextual similarity (ELMo vectors via the elmo component's hooks):")
    money, river = nlp(SIMILARITY_PAIRS[0][0]), nlp(SIMILARITY_PAIRS[0][1])
    bank_money, bank_river = first_token(money, "bank"), first_token(river, "bank")
    print(f"  token vector width: {bank_money.vector.shape[0]}")
    print(f"  'bank' (money) vs 'bank' (river): {bank_money.similarity(bank_river):.3f}")
    print(f"  'bank' (money) vs 'cheque':       {bank_money.similarity(first_token(money, 'cheque')):.3f}")
    print(f"  'bank' (river) vs 'river':        {bank_river.similarity(first_token(river, 'river')):.3f}")
    for left, right in SIMILARITY_PAIRS:
        print(f"  doc similarity {nlp(left).similarity(nlp(right)):.3f}: {left!r} vs {right!r}")
    print(f"  doc similarity {money.similarity(river):.3f}: the two 'bank' sentences")


if __name__ == "__main__":
    main()
