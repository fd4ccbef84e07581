"""Word-sense separation of 'bank' (by a river vs for money) in the vectors a user gets.

For each model given (a bundled name, a catalog name or a directory), a blank English pipeline with the
``elmo`` component embeds eight sentences, four with each sense of 'bank', and prints:

- the README example: 'bank' in "I sat by the bank of the river." vs "I deposited money at the bank.";
- the mean cosine of 'bank' between sentences of the same sense, across the two senses, and their
  difference (the separation: higher means the vectors tell the senses apart).

Usage: python scripts/word_sense.py en_elmo_small [DIR_OR_NAME ...]
"""

from __future__ import annotations

import argparse
import itertools

import numpy
import spacy

RIVER = (
    "I sat by the bank of the river.",
    "We had a picnic on the bank of the river.",
    "The boat drifted towards the muddy bank.",
    "Reeds grew thick along the east bank of the stream.",
)
MONEY = (
    "I deposited money at the bank.",
    "The bank raised its interest rates again.",
    "She opened a savings account at the bank.",
    "He went to the bank to ask for a loan.",
)


def bank_vector(nlp: spacy.Language, text: str) -> numpy.ndarray:
    doc = nlp(text)
    return next(token.vector for token in doc if token.lower_ == "bank")


def cosine(a: numpy.ndarray, b: numpy.ndarray) -> float:
    return float(a @ b / (numpy.linalg.norm(a) * numpy.linalg.norm(b)))


def mean_cosine(pairs: list[tuple[numpy.ndarray, numpy.ndarray]]) -> float:
    return float(numpy.mean([cosine(a, b) for a, b in pairs]))


def measure(weights: str) -> dict[str, float]:
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": {"weights": weights}})
    river = [bank_vector(nlp, text) for text in RIVER]
    money = [bank_vector(nlp, text) for text in MONEY]
    same = mean_cosine(list(itertools.combinations(river, 2)) + list(itertools.combinations(money, 2)))
    across = mean_cosine(list(itertools.product(river, money)))
    return {
        "readme_pair": cosine(river[0], money[0]),
        "same_sense": same,
        "across_senses": across,
        "separation": same - across,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+", help="bundled or catalog model names, or model directories")
    args = parser.parse_args()
    print("| model | README pair (river vs money) | same sense | across senses | separation |")
    print("|---|---|---|---|---|")
    for weights in args.weights:
        m = measure(weights)
        print(
            f"| {weights} | {m['readme_pair']:.3f} | {m['same_sense']:.3f} | {m['across_senses']:.3f} "
            f"| {m['separation']:.3f} |"
        )


if __name__ == "__main__":
    main()
