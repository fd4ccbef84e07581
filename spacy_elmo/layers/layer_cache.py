"""A bounded LRU cache of a frozen biLM's outputs, one entry per run unit (sentence or window).

In ``reset`` mode a unit's biLM layers depend only on its words, and a frozen biLM never
changes, so when training a downstream component for several epochs every unit after the
first epoch can be read back instead of recomputed. The budget counts tokens, so memory is
at most ``max_tokens * (n_layers + 1) * 2P * 4`` bytes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

UnitKey = tuple[str, ...]


class LayerCache:
    """Maps a unit's words to its layers ``(n_layers + 1, n_tokens, 2P)``, least recently used out first."""

    def __init__(self, max_tokens: int) -> None:
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be at least 0, found {max_tokens}")
        self.max_tokens = max_tokens
        self.n_tokens = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[UnitKey, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: UnitKey) -> torch.Tensor | None:
        layers = self._entries.get(key)
        if layers is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return layers

    def put(self, key: UnitKey, layers: torch.Tensor) -> None:
        """Store ``layers`` (kept as given: pass a tensor that owns its memory, not a view of a batch)."""
        if len(key) > self.max_tokens or key in self._entries:
            return
        self._entries[key] = layers
        self.n_tokens += len(key)
        while self.n_tokens > self.max_tokens:
            old_key, _ = self._entries.popitem(last=False)
            self.n_tokens -= len(old_key)

    def clear(self) -> None:
        self._entries.clear()
        self.n_tokens = 0
