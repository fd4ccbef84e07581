"""Small hand-annotated training sets for the component tests and the CLI check.

Entities are given by their text; ``ner_examples`` finds the character offsets.
"""

from __future__ import annotations

from pathlib import Path

from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example

NER_DATA: list[tuple[str, list[tuple[str, str]]]] = [
    ("Angela Merkel visited Paris on Monday.", [("Angela Merkel", "PERSON"), ("Paris", "GPE")]),
    ("Apple opened a new office in London.", [("Apple", "ORG"), ("London", "GPE")]),
    ("Barack Obama was born in Hawaii.", [("Barack Obama", "PERSON"), ("Hawaii", "GPE")]),
    ("Google bought a startup from Berlin.", [("Google", "ORG"), ("Berlin", "GPE")]),
    ("Marie Curie worked in Warsaw and Paris.", [("Marie Curie", "PERSON"), ("Warsaw", "GPE"), ("Paris", "GPE")]),
    ("Microsoft hired engineers in Seattle.", [("Microsoft", "ORG"), ("Seattle", "GPE")]),
    ("Serena Williams won the final in Melbourne.", [("Serena Williams", "PERSON"), ("Melbourne", "GPE")]),
    ("The United Nations met in Geneva.", [("United Nations", "ORG"), ("Geneva", "GPE")]),
    ("Elon Musk said Tesla will build cars in Texas.", [("Elon Musk", "PERSON"), ("Tesla", "ORG"), ("Texas", "GPE")]),
    ("Amazon delivers packages across Germany.", [("Amazon", "ORG"), ("Germany", "GPE")]),
    ("Nelson Mandela was released in Cape Town.", [("Nelson Mandela", "PERSON"), ("Cape Town", "GPE")]),
    ("Toyota builds trucks in Japan.", [("Toyota", "ORG"), ("Japan", "GPE")]),
    ("Albert Einstein lectured in Princeton.", [("Albert Einstein", "PERSON"), ("Princeton", "GPE")]),
    ("Samsung sells phones in Korea and India.", [("Samsung", "ORG"), ("Korea", "GPE"), ("India", "GPE")]),
    ("Frida Kahlo painted in Mexico City.", [("Frida Kahlo", "PERSON"), ("Mexico City", "GPE")]),
    ("Netflix streams films to Canada.", [("Netflix", "ORG"), ("Canada", "GPE")]),
    ("Lionel Messi moved to Miami.", [("Lionel Messi", "PERSON"), ("Miami", "GPE")]),
    ("Siemens makes trains in Munich.", [("Siemens", "ORG"), ("Munich", "GPE")]),
    ("Ada Lovelace was born in London.", [("Ada Lovelace", "PERSON"), ("London", "GPE")]),
    ("IBM has a research lab in Zurich.", [("IBM", "ORG"), ("Zurich", "GPE")]),
    ("Pablo Picasso lived in Barcelona.", [("Pablo Picasso", "PERSON"), ("Barcelona", "GPE")]),
    ("Nokia was founded in Finland.", [("Nokia", "ORG"), ("Finland", "GPE")]),
    ("Greta Thunberg spoke in Stockholm.", [("Greta Thunberg", "PERSON"), ("Stockholm", "GPE")]),
    ("Boeing assembles planes near Chicago.", [("Boeing", "ORG"), ("Chicago", "GPE")]),
    ("Yesterday it rained all day.", []),
    ("The meeting was moved to next week.", []),
    ("She bought bread and milk.", []),
    ("Winston Churchill spoke to Parliament in London.", [("Winston Churchill", "PERSON"), ("London", "GPE")]),
    ("Intel opened a factory in Ireland.", [("Intel", "ORG"), ("Ireland", "GPE")]),
    ("Leo Tolstoy wrote novels in Russia.", [("Leo Tolstoy", "PERSON"), ("Russia", "GPE")]),
    ("Spotify grew fast in Sweden.", [("Spotify", "ORG"), ("Sweden", "GPE")]),
    ("Jane Austen lived in Bath.", [("Jane Austen", "PERSON"), ("Bath", "GPE")]),
]

TEXTCAT_DATA: list[tuple[str, str]] = [
    ("I loved this film, it was wonderful.", "POSITIVE"),
    ("What a great and happy day.", "POSITIVE"),
    ("The food was excellent and the staff were kind.", "POSITIVE"),
    ("This is the best book I have read.", "POSITIVE"),
    ("A delightful, charming and funny show.", "POSITIVE"),
    ("I really enjoyed the concert.", "POSITIVE"),
    ("The hotel was clean and lovely.", "POSITIVE"),
    ("Brilliant acting and a beautiful story.", "POSITIVE"),
    ("We had a fantastic holiday.", "POSITIVE"),
    ("The new phone works perfectly.", "POSITIVE"),
    ("I hated this film, it was awful.", "NEGATIVE"),
    ("What a terrible and sad day.", "NEGATIVE"),
    ("The food was cold and the staff were rude.", "NEGATIVE"),
    ("This is the worst book I have read.", "NEGATIVE"),
    ("A boring, dull and stupid show.", "NEGATIVE"),
    ("I really disliked the concert.", "NEGATIVE"),
    ("The hotel was dirty and noisy.", "NEGATIVE"),
    ("Poor acting and a pointless story.", "NEGATIVE"),
    ("We had a miserable holiday.", "NEGATIVE"),
    ("The new phone broke after a day.", "NEGATIVE"),
]


def ner_examples(nlp: Language) -> list[Example]:
    examples = []
    for text, entities in NER_DATA:
        spans = []
        for entity, label in entities:
            start = text.index(entity)
            spans.append((start, start + len(entity), label))
        examples.append(Example.from_dict(nlp.make_doc(text), {"entities": spans}))
    return examples


def textcat_examples(nlp: Language) -> list[Example]:
    labels = sorted({label for _, label in TEXTCAT_DATA})
    return [
        Example.from_dict(nlp.make_doc(text), {"cats": {name: float(name == label) for name in labels}})
        for text, label in TEXTCAT_DATA
    ]


def write_docbin(examples: list[Example], path: Path) -> Path:
    docs: list[Doc] = [eg.reference for eg in examples]
    DocBin(docs=docs).to_disk(path)
    return path
