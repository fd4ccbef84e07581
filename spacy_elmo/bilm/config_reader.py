"""Checked reading of a parsed JSON model config (bilm-tf ``options.json``, ELMoForManyLangs network configs).

Every failure is an ``ElmoOptionsError`` that names the file (``source``) and the key.
"""

from __future__ import annotations

from typing import Any

from ..errors import ElmoOptionsError


class ConfigReader:
    """Reads values out of ``data`` (a parsed JSON object), refusing anything of the wrong type or range."""

    def __init__(self, data: Any, source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, message: str) -> ElmoOptionsError:
        return ElmoOptionsError(f"{self.source}: {message}")

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name) if isinstance(self.data, dict) else None
        if not isinstance(value, dict):
            raise self.fail(f"missing the '{name}' section (an object)")
        return value

    def integer(self, section: dict[str, Any], key: str, where: str, minimum: int) -> int:
        if key not in section:
            raise self.fail(f"missing '{where}.{key}'")
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"'{where}.{key}' must be an integer >= {minimum}, found {value!r}")
        return value

    def clip(self, section: dict[str, Any], key: str, where: str) -> float | None:
        """A clipping bound: ``None`` for absent, null or 0 (no clipping)."""
        value = section.get(key)
        if value is None or value == 0:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self.fail(f"'{where}.{key}' must be a positive number, 0 or null, found {value!r}")
        return float(value)

    def filters(self, raw: Any, where: str, max_width: int) -> tuple[tuple[int, int], ...]:
        """A non-empty list of ``[width, n_out]`` pairs of positive integers, each width at most ``max_width``."""
        if not isinstance(raw, list) or not raw:
            raise self.fail(f"'{where}' must be a non-empty list of [width, n_out], found {raw!r}")
        filters = []
        for k, pair in enumerate(raw):
            ok = (
                isinstance(pair, (list, tuple))
                and len(pair) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
            )
            if not ok:
                raise self.fail(f"'{where}[{k}]' must be [width, n_out] with positive integers, found {pair!r}")
            if pair[0] > max_width:
                raise self.fail(f"'{where}[{k}]' has width {pair[0]}, wider than {max_width} characters")
            filters.append((int(pair[0]), int(pair[1])))
        return tuple(filters)
