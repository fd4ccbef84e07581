"""Published pretrained ELMo models, selectable by name in the ``weights`` setting.

Each ``CatalogEntry`` says where a model's files are published (a pair of files or one
archive, each a ``Remote``: a host key and a path below it), in which ``format`` they are,
and what is known about the model. Nothing here is a checksum or a byte size that someone
verified: the publishers give none. Downloads are checked against ``architecture`` instead,
and their SHA-256 is recorded at the first download (see ``weights_source``).

Mirrors: ``$SPACY_ELMO_MIRROR`` replaces every host with one base URL. Below it, AllenNLP's
files keep their relative paths (``$SPACY_ELMO_MIRROR/2x1024_128_2048cnn_1xhighway/...``), and
NLPL repository archives live under ``$SPACY_ELMO_MIRROR/nlpl/<repository-number>/<id>.zip``.

Adding a model is adding an entry to ``CATALOG``; a new ``format`` also needs a loader
(``spacy_elmo.loading``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .efml_models import EFML_MODELS
from .errors import ElmoOptionsError, ElmoWeightsError

MIRROR_ENV = "SPACY_ELMO_MIRROR"
FORMAT_BILM_TF = "bilm-tf"
# ELMoForManyLangs (HIT-SCIR): a model directory with dictionaries and PyTorch state dicts (bilm.efml).
FORMAT_EFML = "efml"


@dataclass(frozen=True)
class Host:
    """A publisher's base URL and where its files sit below ``$SPACY_ELMO_MIRROR``."""

    base_url: str
    mirror_prefix: str  # "" (the mirror's root) or a folder, e.g. "nlpl"


HOSTS: dict[str, Host] = {
    "allennlp": Host("https://s3-us-west-2.amazonaws.com/allennlp/models/elmo", ""),
    "nlpl": Host("http://vectors.nlpl.eu/repository", "nlpl"),
}


def mirror_base() -> str | None:
    """``$SPACY_ELMO_MIRROR`` without a trailing slash, or None when unset."""
    value = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    if not value:
        return None
    if not value.lower().startswith(("http://", "https://", "file://")):
        raise ElmoWeightsError(
            f"{MIRROR_ENV}={value!r} must be a base URL: http://..., https://... or file:///path/to/mirror"
        )
    return value


@dataclass(frozen=True)
class Remote:
    """A published file: ``host`` (a key of ``HOSTS``) and its ``path`` below the host's base URL."""

    host: str
    path: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def canonical_url(self) -> str:
        """The publisher's URL (also the key of the cached copy, whichever mirror served it)."""
        return f"{HOSTS[self.host].base_url}/{self.path}"

    def url(self) -> str:
        """Where to download it from: the publisher, or the same path below ``$SPACY_ELMO_MIRROR``."""
        mirror = mirror_base()
        if mirror is None:
            return self.canonical_url
        prefix = HOSTS[self.host].mirror_prefix
        return f"{mirror}/{prefix}/{self.path}" if prefix else f"{mirror}/{self.path}"


@dataclass(frozen=True)
class Architecture:
    """The sizes that identify a bilm-tf model; checked against a downloaded ``options.json``."""

    lstm_dim: int
    projection_dim: int
    n_highway: int
    n_layers: int = 2
    n_filters: int = 2048
    char_embedding_dim: int = 16
    # The published char CNN of every AllenNLP model (docs: elmo-format.md, section 15).
    filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))

    @property
    def output_dim(self) -> int:
        return 2 * self.projection_dim

    def options_dict(self) -> dict[str, Any]:
        """A full ``options.json`` of this architecture, as AllenNLP publishes it."""
        return {
            "lstm": {
                "use_skip_connections": True,
                "projection_dim": self.projection_dim,
                "cell_clip": 3,
                "proj_clip": 3,
                "dim": self.lstm_dim,
                "n_layers": self.n_layers,
            },
            "char_cnn": {
                "activation": "relu",
                "filters": [list(f) for f in self.filters],
                "n_highway": self.n_highway,
                "embedding": {"dim": self.char_embedding_dim},
                "n_characters": 262,
                "max_characters_per_token": 50,
            },
        }

    def differences(self, options: Any) -> list[str]:
        """How ``options`` (an ``ElmoOptions``) differs from this architecture; empty when it matches."""
        found = {
            "lstm.dim": options.lstm_dim,
            "lstm.projection_dim": options.projection_dim,
            "lstm.n_layers": options.n_layers,
            "char_cnn.n_highway": options.n_highway,
            "char_cnn filters (total)": options.n_filters,
            "char_cnn.embedding.dim": options.char_embedding_dim,
        }
        expected = {
            "lstm.dim": self.lstm_dim,
            "lstm.projection_dim": self.projection_dim,
            "lstm.n_layers": self.n_layers,
            "char_cnn.n_highway": self.n_highway,
            "char_cnn filters (total)": self.n_filters,
            "char_cnn.embedding.dim": self.char_embedding_dim,
        }
        return [f"{key} is {found[key]}, expected {expected[key]}" for key in expected if found[key] != expected[key]]

    def check(self, options: Any, source: str) -> None:
        """Raise ``ElmoOptionsError`` naming ``source`` when ``options`` is not this architecture."""
        wrong = self.differences(options)
        if wrong:
            raise ElmoOptionsError(f"{source}: not the published architecture ({'; '.join(wrong)})")


@dataclass(frozen=True)
class CatalogEntry:
    """A published model.

    Exactly one of ``files`` (``(options, weights)``) and ``archive`` is set. ``size_bytes``
    is shown in listings only (never checked); None where nobody recorded it.
    """

    name: str
    description: str
    format: str
    training_data: str
    license: str
    parameters: int | None = None
    architecture: Architecture | None = None
    files: tuple[Remote, Remote] | None = None
    archive: Remote | None = None
    size_bytes: int | None = None
    homepage: str = ""

    def __post_init__(self) -> None:
        if (self.files is None) == (self.archive is None):
            raise ValueError(f"catalog entry {self.name!r}: set exactly one of files and archive")

    @property
    def remotes(self) -> tuple[Remote, ...]:
        return self.files if self.files is not None else (self.archive,)  # type: ignore[return-value]

    @property
    def approximate_size(self) -> int | None:
        """``size_bytes``, else 4 bytes a parameter (float32 HDF5), else None."""
        if self.size_bytes is not None:
            return self.size_bytes
        return 4 * self.parameters if self.parameters is not None else None


ALLENNLP_PAGE = "https://allennlp.org/elmo"
ALLENNLP_LICENSE = "Apache-2.0 (AllenNLP)"
BILLION_WORD = "1B Word Benchmark (news, about 800M tokens)"


def _allennlp_pair(folder: str, stem: str | None = None) -> tuple[Remote, Remote]:
    stem = stem or f"elmo_{folder}"
    return Remote("allennlp", f"{folder}/{stem}_options.json"), Remote("allennlp", f"{folder}/{stem}_weights.hdf5")


ORIGINAL = Architecture(lstm_dim=4096, projection_dim=512, n_highway=2)

CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="small",
            description="AllenNLP's Small ELMo: 2 x 1024-dim LSTM, 128-dim projections, output 256",
            format=FORMAT_BILM_TF,
            training_data=BILLION_WORD,
            license=ALLENNLP_LICENSE,
            parameters=13_593_296,
            architecture=Architecture(lstm_dim=1024, projection_dim=128, n_highway=1),
            files=_allennlp_pair("2x1024_128_2048cnn_1xhighway"),
            homepage=ALLENNLP_PAGE,
        ),
        CatalogEntry(
            name="medium",
            description="AllenNLP's Medium ELMo: 2 x 2048-dim LSTM, 256-dim projections, output 512",
            format=FORMAT_BILM_TF,
            training_data=BILLION_WORD,
            license=ALLENNLP_LICENSE,
            parameters=28_027_728,
            architecture=Architecture(lstm_dim=2048, projection_dim=256, n_highway=1),
            files=_allennlp_pair("2x2048_256_2048cnn_1xhighway"),
            homepage=ALLENNLP_PAGE,
        ),
        CatalogEntry(
            name="original",
            description="AllenNLP's Original ELMo (Peters et al. 2018): 2 x 4096-dim LSTM, output 1024",
            format=FORMAT_BILM_TF,
            training_data=BILLION_WORD,
            license=ALLENNLP_LICENSE,
            parameters=93_600_848,
            architecture=ORIGINAL,
            files=_allennlp_pair("2x4096_512_2048cnn_2xhighway"),
            # The one size on record (AllenNLP issue #1896); shown, not checked.
            size_bytes=374_434_792,
            homepage=ALLENNLP_PAGE,
        ),
        CatalogEntry(
            name="original-5.5b",
            description="AllenNLP's Original ELMo trained on 5.5B tokens; its best published English model",
            format=FORMAT_BILM_TF,
            training_data="Wikipedia 1.9B + WMT 2008-12 news 3.6B tokens",
            license=ALLENNLP_LICENSE,
            parameters=93_600_848,
            architecture=ORIGINAL,
            files=_allennlp_pair("2x4096_512_2048cnn_2xhighway_5.5B"),
            homepage=ALLENNLP_PAGE,
        ),
        CatalogEntry(
            name="pubmed",
            description="Contributed to AllenNLP: the Original architecture trained on biomedical text",
            format=FORMAT_BILM_TF,
            training_data="PubMed abstracts (biomedical)",
            license=ALLENNLP_LICENSE,
            parameters=93_600_848,
            architecture=ORIGINAL,
            files=(
                Remote("allennlp", "contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_options.json"),
                Remote("allennlp", "contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_weights_PubMed_only.hdf5"),
            ),
            homepage=ALLENNLP_PAGE,
        ),
    )
}

EFML_PAGE = "https://github.com/HIT-SCIR/ELMoForManyLangs"
EFML_LICENSE = "code MIT (ELMoForManyLangs); models: NLPL repository terms; cite Che et al. 2018"
# efml-<code>: their 44 models, zips in the NLPL repository 11 (see efml_models).
CATALOG.update(
    (
        model.name,
        CatalogEntry(
            name=model.name,
            description=f"ELMoForManyLangs {model.language} (HIT-SCIR): 2 x 4096-dim LSTM, output 1024",
            format=FORMAT_EFML,
            training_data=f"{model.language}: about 20M words (CoNLL 2018 raw text)",
            license=EFML_LICENSE,
            archive=Remote("nlpl", f"11/{model.nlpl_id}.zip"),
            homepage=EFML_PAGE,
        ),
    )
    for model in EFML_MODELS
)


def catalog_names() -> list[str]:
    return list(CATALOG)


def get_entry(name: str) -> CatalogEntry | None:
    """The entry called ``name`` (case-insensitive), or None."""
    return CATALOG.get(name.strip().lower())
