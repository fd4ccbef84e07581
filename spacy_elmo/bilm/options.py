"""The hyper-parameters of a biLM, read from and written to bilm-tf's ``options.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ElmoOptionsError
from .config_reader import ConfigReader

MAX_CHARACTERS_PER_TOKEN = 50
SUPPORTED_ACTIVATIONS = ("relu", "tanh")
# Keys bilm-tf writes for training only; accepted and ignored at inference.
TRAINING_ONLY_KEYS = (
    "bidirectional",
    "dropout",
    "n_tokens_vocab",
    "batch_size",
    "unroll_steps",
    "n_negative_samples_batch",
    "all_clip_norm_val",
    "n_epochs",
    "n_train_tokens",
)


@dataclass(frozen=True)
class ElmoOptions:
    """Sizes of an ELMo biLM, as in bilm-tf's ``options.json``.

    ``filters`` holds ``(width, n_out)`` pairs; ``n_filters`` is their total.
    ``use_projection`` is whether a ``CNN_proj`` layer maps the ``n_filters``
    CNN features to ``projection_dim`` (bilm-tf omits it when they are equal).
    ``extra`` keeps unknown and training-only keys so a round trip loses nothing.
    """

    char_embedding_dim: int
    filters: tuple[tuple[int, int], ...]
    n_highway: int
    activation: str
    lstm_dim: int
    projection_dim: int
    n_layers: int
    cell_clip: float | None
    proj_clip: float | None
    use_skip_connections: bool
    n_characters: int = 262
    max_characters_per_token: int = MAX_CHARACTERS_PER_TOKEN
    use_projection: bool = True
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def n_filters(self) -> int:
        return sum(n_out for _, n_out in self.filters)

    @property
    def output_dim(self) -> int:
        """Width of each output layer: both directions, ``2 * projection_dim``."""
        return 2 * self.projection_dim

    @property
    def n_output_layers(self) -> int:
        """The token layer plus one layer per LSTM layer."""
        return self.n_layers + 1

    @classmethod
    def from_dict(cls, data: Any, source: str = "options") -> ElmoOptions:
        """Validate a parsed ``options.json``; ``source`` names it in errors."""

        reader = ConfigReader(data, source)
        fail, section, integer = reader.fail, reader.section, reader.integer

        lstm = section("lstm")
        cnn = section("char_cnn")
        embedding = cnn.get("embedding")
        if not isinstance(embedding, dict):
            raise fail("missing 'char_cnn.embedding' (an object with 'dim')")
        char_dim = integer(embedding, "dim", "char_cnn.embedding", 1)

        filters = reader.filters(cnn.get("filters"), "char_cnn.filters", MAX_CHARACTERS_PER_TOKEN)

        activation = cnn.get("activation", "relu")
        if activation not in SUPPORTED_ACTIVATIONS:
            raise fail(f"'char_cnn.activation' must be one of {SUPPORTED_ACTIVATIONS}, found {activation!r}")
        n_highway = cnn.get("n_highway") or 0
        if isinstance(n_highway, bool) or not isinstance(n_highway, int) or n_highway < 0:
            raise fail(f"'char_cnn.n_highway' must be an integer >= 0, found {n_highway!r}")
        n_characters = cnn.get("n_characters", 262)
        if n_characters not in (261, 262):
            raise fail(f"'char_cnn.n_characters' must be 261 (training) or 262 (inference), found {n_characters!r}")
        max_chars = cnn.get("max_characters_per_token", MAX_CHARACTERS_PER_TOKEN)
        if max_chars != MAX_CHARACTERS_PER_TOKEN:
            raise fail(
                f"'char_cnn.max_characters_per_token' must be {MAX_CHARACTERS_PER_TOKEN} "
                f"(the character encoding is fixed), found {max_chars!r}"
            )

        skip = lstm.get("use_skip_connections", False)
        if not isinstance(skip, bool):
            raise fail(f"'lstm.use_skip_connections' must be true or false, found {skip!r}")
        projection_dim = integer(lstm, "projection_dim", "lstm", 1)
        known = {"lstm", "char_cnn"}
        extra = tuple((k, v) for k, v in data.items() if k not in known)
        return cls(
            char_embedding_dim=char_dim,
            filters=filters,
            n_highway=n_highway,
            activation=activation,
            lstm_dim=integer(lstm, "dim", "lstm", 1),
            projection_dim=projection_dim,
            n_layers=integer(lstm, "n_layers", "lstm", 1),
            cell_clip=reader.clip(lstm, "cell_clip", "lstm"),
            proj_clip=reader.clip(lstm, "proj_clip", "lstm"),
            use_skip_connections=skip,
            n_characters=n_characters,
            max_characters_per_token=max_chars,
            use_projection=sum(n for _, n in filters) != projection_dim,
            extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``options.json`` layout bilm-tf and AllenNLP read."""
        data: dict[str, Any] = dict(self.extra)
        data["lstm"] = {
            "cell_clip": self.cell_clip if self.cell_clip is not None else 0,
            "use_skip_connections": self.use_skip_connections,
            "n_layers": self.n_layers,
            "proj_clip": self.proj_clip if self.proj_clip is not None else 0,
            "projection_dim": self.projection_dim,
            "dim": self.lstm_dim,
        }
        data["char_cnn"] = {
            "embedding": {"dim": self.char_embedding_dim},
            "filters": [list(f) for f in self.filters],
            "n_highway": self.n_highway,
            "n_characters": self.n_characters,
            "max_characters_per_token": self.max_characters_per_token,
            "activation": self.activation,
        }
        return data


def read_options(path: str | Path) -> ElmoOptions:
    """Read and validate an ``options.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise ElmoOptionsError(f"options file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ElmoOptionsError(f"{path}: not a readable JSON options file ({err})") from None
    return ElmoOptions.from_dict(data, source=str(path))
