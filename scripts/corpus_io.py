"""Writing split corpora: atomic .spacy files plus a JSON summary of each split."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from spacy.tokens import Doc, DocBin


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temp file next to `path`, then rename, so `path` is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def doc_summary(docs: Sequence[Doc]) -> dict[str, object]:
    """Counts that describe a split: docs, tokens, entities per label, documents per category."""
    summary: dict[str, object] = {"docs": len(docs), "tokens": sum(len(doc) for doc in docs)}
    entities = Counter(ent.label_ for doc in docs for ent in doc.ents)
    if entities:
        summary["entities"] = sum(entities.values())
        summary["entities_per_label"] = dict(sorted(entities.items()))
    categories = Counter(max(doc.cats, key=doc.cats.__getitem__) for doc in docs if doc.cats)
    if categories:
        summary["docs_per_category"] = dict(sorted(categories.items()))
    return summary


def write_splits(splits: dict[str, list[Doc]], output_dir: Path, source: dict[str, object]) -> dict[str, object]:
    """Write <output_dir>/<split>.spacy for each split and <output_dir>/splits.json; return the summary."""
    summary: dict[str, object] = {"source": source}
    for name, docs in splits.items():
        write_atomic_bytes(output_dir / f"{name}.spacy", DocBin(docs=docs, store_user_data=False).to_bytes())
        summary[name] = doc_summary(docs)
    write_atomic_bytes(output_dir / "splits.json", (json.dumps(summary, indent=2) + "\n").encode("utf8"))
    return summary
