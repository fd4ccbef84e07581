"""The cache of a frozen biLM's unit outputs: bounded, exact, and used only where it is valid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from spacy.tokens import Doc

from spacy_elmo import ElmoError
from spacy_elmo.layers.bilm_model import get_layer_cache
from spacy_elmo.layers.layer_cache import LayerCache

from ..elmo_helpers import make_nlp

SENTENCES = [
    ["The", "cat", "sat", "on", "the", "mat", "."],
    ["Dogs", "bark", "."],
    ["A", "longer", "sentence", "with", "more", "words", "in", "it", "."],
]


def test_layer_cache_evicts_least_recently_used_by_token_budget() -> None:
    cache = LayerCache(max_tokens=5)
    cache.put(("a", "b"), torch.zeros(3, 2, 4))
    cache.put(("c", "d"), torch.ones(3, 2, 4))
    assert cache.get(("a", "b")) is not None  # now ("c", "d") is the least recently used
    cache.put(("e", "f"), torch.full((3, 2, 4), 2.0))
    assert cache.n_tokens == 4 and len(cache) == 2
    assert cache.get(("c", "d")) is None
    assert float(cache.get(("e", "f"))[0, 0, 0]) == 2.0
    cache.put(tuple("abcdefg"), torch.zeros(3, 7, 4))  # longer than the whole budget: not kept
    assert len(cache) == 2 and cache.hits == 2 and cache.misses == 1
    cache.clear()
    assert len(cache) == 0 and cache.n_tokens == 0
    with pytest.raises(ValueError, match="max_tokens"):
        LayerCache(-1)


def test_cached_vectors_equal_uncached_and_the_second_pass_runs_nothing(weights_dir: Path) -> None:
    plain = make_nlp(weights_dir)
    cached = make_nlp(weights_dir, cache_tokens=1000)
    docs = [Doc(plain.vocab, words=words) for words in SENTENCES]
    expected = [doc._.elmo["layers"] for doc in plain.pipe(docs)]
    first = [doc._.elmo["layers"] for doc in cached.pipe([Doc(cached.vocab, words=w) for w in SENTENCES])]
    model = cached.get_pipe("elmo").model
    cache = get_layer_cache(model)
    assert cache is not None and len(cache) == 3 and cache.n_tokens == 19 and cache.hits == 0

    calls = []
    handle = model.shims[0]._model.register_forward_hook(lambda *args: calls.append(1))
    second = [doc._.elmo["layers"] for doc in cached.pipe([Doc(cached.vocab, words=w) for w in SENTENCES])]
    handle.remove()
    assert calls == [] and cache.hits == 3
    for want, got_first, got_second in zip(expected, first, second, strict=True):
        np.testing.assert_allclose(got_first, want, atol=1e-6)
        assert np.array_equal(got_first, got_second)


def test_cache_mixes_hits_and_misses_across_windows(weights_dir: Path) -> None:
    words = [f"w{i % 13}" for i in range(57)]
    plain = make_nlp(weights_dir, window_size=20, window_overlap=6, max_batch_tokens=40)
    cached = make_nlp(weights_dir, window_size=20, window_overlap=6, max_batch_tokens=40, cache_tokens=30)
    expected = plain(Doc(plain.vocab, words=words))._.elmo["layers"]
    for _ in range(2):  # the budget holds only one window: every pass mixes evictions and runs
        got = cached(Doc(cached.vocab, words=words))._.elmo["layers"]
        np.testing.assert_allclose(got, expected, atol=1e-6)
    assert get_layer_cache(cached.get_pipe("elmo").model).n_tokens <= 30


@pytest.mark.parametrize("setting", [{"frozen": False}, {"state": "stateful"}, {"cache_tokens": 0}])
def test_no_cache_where_outputs_can_change(weights_dir: Path, setting: dict[str, object]) -> None:
    nlp = make_nlp(weights_dir, **{"cache_tokens": 100, **setting})
    nlp("The cat sat .")
    assert get_layer_cache(nlp.get_pipe("elmo").model) is None


def test_cache_is_cleared_when_the_weights_are_replaced(weights_dir: Path, tmp_path: Path) -> None:
    nlp = make_nlp(weights_dir, cache_tokens=100)
    nlp("The cat sat .")
    model = nlp.get_pipe("elmo").model
    assert len(get_layer_cache(model)) == 1
    nlp.get_pipe("elmo").to_disk(tmp_path / "elmo")
    nlp.get_pipe("elmo").from_disk(tmp_path / "elmo")
    assert len(get_layer_cache(model)) == 0


def test_negative_cache_tokens_is_an_error_naming_the_setting(weights_dir: Path) -> None:
    with pytest.raises(ElmoError, match="'cache_tokens'"):
        make_nlp(weights_dir, cache_tokens=-5)


def test_the_cache_belongs_to_the_model_is_not_saved_and_not_copied(weights_dir: Path) -> None:
    nlp = make_nlp(weights_dir, cache_tokens=100)
    nlp("The cat sat .")
    model = nlp.get_pipe("elmo").model
    assert len(get_layer_cache(model)) == 1
    assert all("runtime" not in attrs and "settings" not in attrs for attrs in model.to_dict()["attrs"])
    copy = model.copy()
    assert get_layer_cache(copy) is None  # nothing installed yet: the copy starts empty
    copy.predict([Doc(nlp.vocab, words=SENTENCES[0])])
    assert len(get_layer_cache(copy)) == 1 and len(get_layer_cache(model)) == 1
    assert get_layer_cache(copy) is not get_layer_cache(model)
