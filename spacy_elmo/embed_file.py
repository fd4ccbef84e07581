"""Embedding a whitespace-tokenized text file into HDF5, as AllenNLP's ``elmo`` command and
bilm-tf's ``dump_bilm_embeddings`` do: one dataset per input line, named by its 0-based line number."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
from tqdm import tqdm

from .bilm.model import ElmoBiLM
from .bilm.weights import atomic_write
from .errors import ElmoError

LayerChoice = Literal["all", "top", "average"]
LAYER_CHOICES: tuple[str, ...] = ("all", "top", "average")
# Lines per embed_sentences call in reset mode; sorting by length happens within.
RESET_CHUNK_BATCHES = 16
PROGRESS_MIN_LINES = 200


class InputFileError(ElmoError):
    """The input text file is missing or unreadable."""


def read_tokenized_lines(path: str | Path) -> list[list[str]]:
    """One whitespace-tokenized sentence per line; an empty line is an empty sentence."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputFileError(f"cannot read input file {path}: {err.strerror or err}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    sentences = []
    for number, raw in enumerate(lines):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputFileError(f"{path}, line {number + 1}: not valid UTF-8 (byte {err.start} of the line)") from None
        sentences.append(text.split())
    return sentences


def select_layers(layers: np.ndarray, choice: LayerChoice) -> np.ndarray:
    """``(L, n, D)`` to ``(L, n, D)`` for ``all``, ``(n, D)`` for ``top`` and ``average``."""
    if choice == "all":
        return layers
    if choice == "top":
        return layers[-1]
    return layers.mean(axis=0, dtype=np.float32)


def _batches(n_sentences: int, model: ElmoBiLM, batch_size: int) -> Iterator[tuple[int, int]]:
    # Stateful: chunk sizes are multiples of batch_size, so line i*N + r stays in row r.
    step = batch_size if model.state == "stateful" else batch_size * RESET_CHUNK_BATCHES
    for start in range(0, n_sentences, step):
        yield start, min(start + step, n_sentences)


def embed_file(
    model: ElmoBiLM,
    input_file: str | Path,
    output_file: str | Path,
    *,
    batch_size: int = 64,
    layers: LayerChoice = "all",
    progress: bool | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Embed every line of ``input_file`` into ``output_file``; returns the number of lines.

    The output is written to a temporary file and moved into place only when
    complete, so a failure leaves no partial output.
    """
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {LAYER_CHOICES}, found {layers!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, found {batch_size}")
    sentences = read_tokenized_lines(input_file)
    show = len(sentences) >= PROGRESS_MIN_LINES if progress is None else progress

    def write(tmp: Path) -> None:
        with (
            h5py.File(tmp, "w") as handle,
            tqdm(total=len(sentences), unit="line", file=sys.stderr, disable=not show) as bar,
        ):
            for start, end in _batches(len(sentences), model, batch_size):
                vectors = model.embed_sentences(sentences[start:end], batch_size=batch_size)
                for offset, array in enumerate(vectors):
                    handle.create_dataset(str(start + offset), data=select_layers(array, layers))
                bar.update(end - start)
                if on_progress is not None:
                    on_progress(end)

    atomic_write(Path(output_file), write)
    return len(sentences)
