"""Units: the spans of a Doc that the biLM runs as one sentence each, and their packing into batches.

A *unit splitter* maps a Doc to its units. The default, ``spacy-elmo.doc_units.v1``
(``DocUnits``), uses sentences when the Doc has sentence boundaries, otherwise overlapping
windows of at most ``window_size`` tokens (each token takes its vectors from the window where
it has the most context). Any callable ``(doc_index, doc) -> Iterable[Unit]`` registered in
spaCy's ``misc`` registry can take its place, as spacy-transformers' span getters do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from spacy.tokens import Doc

from ..errors import ElmoError


class Unit(NamedTuple):
    """A span of one Doc run through the biLM as one sentence.

    Tokens ``[start, end)`` are run; the vectors of ``[core_start, core_end)`` are kept.
    The cores of a Doc's units must tile the Doc exactly.
    """

    doc_index: int
    start: int
    end: int
    core_start: int
    core_end: int


UnitSplitter = Callable[[int, Doc], Iterable[Unit]]


def window_units(doc_index: int, start: int, end: int, size: int, overlap: int) -> Iterator[Unit]:
    """Overlapping windows over ``[start, end)`` whose cores tile it exactly.

    Consecutive windows share ``overlap`` tokens; the first half of the shared part is
    kept from the earlier window and the rest from the later one.
    """
    if end - start <= size:
        yield Unit(doc_index, start, end, start, end)
        return
    stride = size - overlap
    half = overlap // 2
    window_start = start
    core_start = start
    while True:
        window_end = min(window_start + size, end)
        if window_end == end:
            yield Unit(doc_index, window_start, end, core_start, end)
            return
        core_end = window_start + stride + half
        yield Unit(doc_index, window_start, window_end, core_start, core_end)
        window_start += stride
        core_start = core_end


@dataclass(frozen=True)
class DocUnits:
    """Sentences when the Doc has sentence boundaries (windowed if too long), else windows."""

    window_size: int
    window_overlap: int

    def __post_init__(self) -> None:
        for name in ("window_size", "window_overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ElmoError(f"elmo setting '{name}' must be an integer, found {value!r}")
        if self.window_size < 1:
            raise ElmoError(f"elmo setting 'window_size' must be at least 1, found {self.window_size}")
        if not 0 <= self.window_overlap <= self.window_size // 2:
            raise ElmoError(
                f"elmo setting 'window_overlap' must be between 0 and window_size // 2 = {self.window_size // 2}, "
                f"found {self.window_overlap}"
            )

    @property
    def max_length(self) -> int:
        """The longest unit this splitter makes."""
        return self.window_size

    def __call__(self, doc_index: int, doc: Doc) -> Iterator[Unit]:
        if len(doc) == 0:
            return
        if doc.has_annotation("SENT_START"):
            for sent in doc.sents:
                yield from window_units(doc_index, sent.start, sent.end, self.window_size, self.window_overlap)
        else:
            yield from window_units(doc_index, 0, len(doc), self.window_size, self.window_overlap)


def doc_units(doc_index: int, doc: Doc, size: int, overlap: int) -> Iterator[Unit]:
    """``DocUnits(size, overlap)`` applied to one Doc."""
    return DocUnits(size, overlap)(doc_index, doc)


def pack_batches(units: Sequence[Unit], max_batch_tokens: int, keep_order: bool) -> list[list[Unit]]:
    """Group units into batches of at most ``max_batch_tokens`` padded tokens.

    Sorted longest first unless ``keep_order`` (stateful mode, where rows carry state).
    A unit longer than the budget makes a batch of its own.
    """
    ordered = list(units) if keep_order else sorted(units, key=lambda u: u.start - u.end)
    batches: list[list[Unit]] = []
    current: list[Unit] = []
    longest = 0
    for unit in ordered:
        length = unit.end - unit.start
        if current and (len(current) + 1) * max(longest, length) > max_batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(unit)
        longest = max(longest, length)
    if current:
        batches.append(current)
    return batches
