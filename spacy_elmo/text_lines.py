"""Lines of a UTF-8 text file as a text editor shows them.

A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (Python's universal newlines; old Mac files use CR
only), and a UTF-8 byte order mark at the start of the file is not text. Bytes that are not UTF-8 are an
error naming the line and the byte, unless ``errors="replace"`` turns them into U+FFFD.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from .errors import ElmoError

BOM = b"\xef\xbb\xbf"
EncodingErrors = Literal["strict", "replace"]
ENCODING_ERRORS: tuple[str, ...] = ("strict", "replace")


class TextEncodingError(ElmoError):
    """A text file holds bytes that are not UTF-8."""


def iter_text_lines(path: str | Path, errors: EncodingErrors = "strict", hint: str = "") -> Iterator[str]:
    """Every line of ``path`` without its line end; a final line end does not start an empty line.

    Reads the file a ``\\n``-terminated piece at a time, so memory holds one line (CR-only files are
    one piece). Raises ``TextEncodingError`` (``errors="strict"``) naming the 1-based line and the
    0-based byte within it; ``hint`` is appended to that message. ``OSError`` is left to the caller.
    """
    if errors not in ENCODING_ERRORS:
        raise ValueError(f"errors must be one of {ENCODING_ERRORS}, found {errors!r}")
    number = 0
    first = True
    with Path(path).open("rb") as handle:
        for piece in handle:
            if first:
                first = False
                if piece.startswith(BOM):
                    piece = piece[len(BOM) :]
            # A piece ends at "\n" (or the end of the file); a CR before it belongs to that line end,
            # any other CR ends a line of its own.
            if piece.endswith(b"\n"):
                piece = piece[:-1]
            if piece.endswith(b"\r"):
                piece = piece[:-1]
            for raw in piece.split(b"\r"):
                number += 1
                try:
                    yield raw.decode("utf-8", errors)
                except UnicodeDecodeError as err:
                    message = f"{path}, line {number}: not valid UTF-8 (byte {err.start} of the line)"
                    raise TextEncodingError(message + hint) from None
