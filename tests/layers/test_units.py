"""Cutting Docs into units and packing units into batches (``layers/units.py``)."""

from __future__ import annotations

import pytest
import spacy
from spacy.tokens import Doc

from spacy_elmo import ElmoError
from spacy_elmo.layers.units import DocUnits, Unit, pack_batches, window_units


def test_batches_respect_the_token_budget() -> None:
    units = [Unit(i, 0, n, 0, n) for i, n in enumerate([5, 50, 3, 20, 20, 1, 49])]
    batches = pack_batches(units, max_batch_tokens=100, keep_order=False)
    assert sorted(u.doc_index for b in batches for u in b) == list(range(7))
    for batch in batches:
        assert len(batch) * max(u.end - u.start for u in batch) <= 100
    in_order = pack_batches(units, max_batch_tokens=100, keep_order=True)
    assert [u.doc_index for b in in_order for u in b] == list(range(7))


def test_windows_tile_the_doc_and_sentences_are_units() -> None:
    units = list(window_units(0, 0, 57, 20, 6))
    assert [i for u in units for i in range(u.core_start, u.core_end)] == list(range(57))
    assert all(u.end - u.start <= 20 for u in units) and units[0] == Unit(0, 0, 20, 0, 17)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("The dog barked . The cat slept .")
    assert [(u.start, u.end) for u in DocUnits(200, 50)(3, doc)] == [(0, 4), (4, 8)]
    assert list(DocUnits(200, 50)(0, Doc(nlp.vocab, words=[]))) == []


@pytest.mark.parametrize(("size", "overlap", "message"), [(0, 0, "'window_size'"), (10, 6, "'window_overlap'")])
def test_bad_window_settings_name_the_setting(size: int, overlap: int, message: str) -> None:
    with pytest.raises(ElmoError, match=message):
        DocUnits(size, overlap)
