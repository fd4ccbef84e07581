"""Named pretraining configurations, from ``tiny`` (tests) to bilm-tf's ``original``.

A preset fixes the model sizes (``ElmoOptions``) and the training hyper-parameters; the command line can
override the training ones. ``small``, ``medium`` and ``original`` are the sizes of the official ELMo
models (13.6M, 28.0M and 93.6M exported parameters); ``mini`` is the size of the bundled ``en_elmo_small``
and ``en_elmo_small_v2``/``_v3`` (about 3M exported parameters, 12 MB), sized for a CPU; ``ptb``'s forward LM with
its 10k-word softmax has 4.6M parameters, about the size of Kim et al. 2016's LSTM-Char-Small (5M), for the
Penn Treebank benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..bilm.options import ElmoOptions
from ..errors import ElmoError

OFFICIAL_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))


class PresetError(ElmoError):
    """An unknown preset name or a bad training setting."""


@dataclass(frozen=True)
class TrainingSettings:
    """Everything about training except the model sizes; defaults are bilm-tf's where it has one."""

    batch_size: int = 128
    unroll_steps: int = 20
    dropout: float = 0.1
    # Not in bilm-tf: the share of rows per batch that restart at a sentence start from a zero state.
    state_reset_probability: float = 0.1
    softmax: str = "sampled"
    n_negative_samples: int = 8192
    max_vocab_size: int | None = None
    min_count: int = 1
    learning_rate: float = 0.2
    initial_accumulator: float = 1.0
    clip_norm: float = 10.0
    max_steps: int = 1_000_000
    eval_every: int = 1250
    checkpoint_every: int = 1250
    dev_max_tokens: int | None = 100_000
    eval_batch_size: int = 256


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    options: ElmoOptions
    training: TrainingSettings = field(default_factory=TrainingSettings)


def _options(
    filters: tuple[tuple[int, int], ...],
    char_dim: int,
    n_highway: int,
    cell: int,
    projection: int,
    n_layers: int = 2,
    clip: float | None = 3.0,
) -> ElmoOptions:
    return ElmoOptions(
        char_embedding_dim=char_dim,
        filters=filters,
        n_highway=n_highway,
        activation="relu",
        lstm_dim=cell,
        projection_dim=projection,
        n_layers=n_layers,
        cell_clip=clip,
        proj_clip=clip,
        use_skip_connections=True,
        use_projection=sum(n for _, n in filters) != projection,
    )


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "tiny",
            "for tests: P=16, C=32, 32 filters; hundreds of steps per minute on one core",
            _options(((1, 8), (2, 8), (3, 16)), char_dim=4, n_highway=1, cell=32, projection=16),
            TrainingSettings(
                batch_size=8,
                unroll_steps=10,
                n_negative_samples=64,
                max_vocab_size=5_000,
                max_steps=200,
                eval_every=50,
                checkpoint_every=50,
                dev_max_tokens=2_000,
                eval_batch_size=16,
            ),
        ),
        Preset(
            "mini",
            "the bundled en_elmo_small(_v2, _v3): P=128, C=512, 512 filters, 1 highway (3.0M parameters, 12 MB)",
            _options(
                ((1, 32), (2, 32), (3, 64), (4, 128), (5, 128), (6, 128)),
                char_dim=16,
                n_highway=1,
                cell=512,
                projection=128,
            ),
            TrainingSettings(
                batch_size=64,
                unroll_steps=20,
                n_negative_samples=1024,
                max_vocab_size=30_000,
                max_steps=20_000,
                eval_every=500,
                checkpoint_every=250,
                dev_max_tokens=20_000,
                eval_batch_size=64,
            ),
        ),
        Preset(
            "ptb",
            "Penn Treebank benchmark, ~5M parameters with the 10k softmax (Kim et al. 2016 LSTM-Char-Small size)",
            _options(
                ((1, 25), (2, 50), (3, 75), (4, 100), (5, 125), (6, 150)),
                char_dim=15,
                n_highway=1,
                cell=512,
                projection=200,
            ),
            TrainingSettings(
                batch_size=20,
                unroll_steps=35,
                dropout=0.5,
                softmax="full",
                max_vocab_size=None,
                max_steps=30_000,
                eval_every=1000,
                checkpoint_every=500,
                dev_max_tokens=None,
                eval_batch_size=20,
            ),
        ),
        Preset(
            "small",
            "the official Small sizes: P=128, C=1024, 2048 filters, 1 highway (13.6M exported parameters)",
            _options(OFFICIAL_FILTERS, char_dim=16, n_highway=1, cell=1024, projection=128),
        ),
        Preset(
            "medium",
            "the official Medium sizes: P=256, C=2048, 2048 filters, 1 highway (28.0M exported parameters)",
            _options(OFFICIAL_FILTERS, char_dim=16, n_highway=1, cell=2048, projection=256),
        ),
        Preset(
            "original",
            "bilm-tf's Original: P=512, C=4096, 2048 filters, 2 highway (93.6M exported parameters)",
            _options(OFFICIAL_FILTERS, char_dim=16, n_highway=2, cell=4096, projection=512),
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def override_training(settings: TrainingSettings, overrides: dict[str, Any]) -> TrainingSettings:
    """Replace the settings given (``None`` values are ignored) and check the result."""
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    positive = ("batch_size", "unroll_steps", "n_negative_samples", "max_steps", "eval_every", "checkpoint_every")
    for name in positive:
        if getattr(settings, name) < 1:
            raise PresetError(f"{name} must be at least 1, found {getattr(settings, name)}")
    if not 0.0 <= settings.state_reset_probability <= 1.0:
        raise PresetError(f"state_reset_probability must be in [0, 1], found {settings.state_reset_probability}")
    if not 0.0 <= settings.dropout < 1.0:
        raise PresetError(f"dropout must be in [0, 1), found {settings.dropout}")
    if settings.softmax not in ("sampled", "adaptive", "full"):
        raise PresetError(f"softmax must be sampled, adaptive or full, found {settings.softmax!r}")
    if settings.learning_rate <= 0 or settings.clip_norm <= 0:
        raise PresetError("learning_rate and clip_norm must be positive")
    return settings
