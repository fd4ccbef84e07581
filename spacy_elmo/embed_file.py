"""Embedding a whitespace-tokenized text file into HDF5, as AllenNLP's ``elmo`` command and
bilm-tf's ``dump_bilm_embeddings`` do: one dataset per input line, named by its 0-based line number.

Lines end at LF, CRLF or a lone CR, and a UTF-8 byte order mark is not part of the first token (as a
text editor reads the file). The output appears complete or not at all: it is written to a temporary
file beside it, which a failure, Ctrl-C or (with ``exit_cleanly_on_sigterm``) SIGTERM removes, and
which the next run for the same output removes if a SIGKILL left it behind.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
from tqdm import tqdm

from .bilm.model import ElmoBiLM
from .bilm.weights import atomic_write, remove_stale_temp_files
from .errors import ElmoError
from .text_lines import TextEncodingError, iter_text_lines

LayerChoice = Literal["all", "top", "average"]
LAYER_CHOICES: tuple[str, ...] = ("all", "top", "average")
# Lines per embed_sentences call in reset mode; sorting by length happens within.
RESET_CHUNK_BATCHES = 16
PROGRESS_MIN_LINES = 200


class InputFileError(ElmoError):
    """The input text file is missing or unreadable."""


class OutputPathError(ElmoError):
    """The output file cannot be written where it was asked for."""


class Terminated(BaseException):
    """SIGTERM arrived while ``exit_cleanly_on_sigterm`` was active."""


def read_tokenized_lines(path: str | Path) -> list[list[str]]:
    """One whitespace-tokenized sentence per line; an empty line is an empty sentence."""
    path = Path(path)
    try:
        return [line.split() for line in iter_text_lines(path)]
    except OSError as err:
        raise InputFileError(f"cannot read input file {path}: {err.strerror or err}") from None
    except TextEncodingError as err:
        raise InputFileError(str(err)) from None


def check_output_path(output_file: str | Path) -> Path:
    """``output_file`` as a Path, if its directory exists (it is not created) and it is not a directory."""
    output = Path(output_file)
    parent = output.parent
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {output}: the directory {parent} does not exist (create it first)")
    if output.is_dir():
        raise OutputPathError(f"cannot write {output}: it is a directory")
    return output


@contextmanager
def exit_cleanly_on_sigterm() -> Iterator[None]:
    """While active (in the main thread), SIGTERM unwinds the stack like Ctrl-C does, so temporary
    files are removed, and then ends the process with SIGTERM's default action (status -15 / 143)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise SystemExit(128 + signal.SIGTERM) from None  # only if SIGTERM is blocked
    finally:
        # None: a handler installed from C, which Python cannot reinstate; the default is the closest.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


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
    complete, so a failure leaves no partial output. Temporary files of earlier runs for the same
    output whose process is gone (killed with SIGKILL) are removed first. The output's directory
    must exist.
    """
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {LAYER_CHOICES}, found {layers!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, found {batch_size}")
    output = check_output_path(output_file)
    sentences = read_tokenized_lines(input_file)
    for stale in remove_stale_temp_files(output):
        print(f"removed {stale}, left by an embed run that was killed", file=sys.stderr)
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

    atomic_write(output, write)
    return len(sentences)
