"""Where a biLM's files come from: the component's ``weights`` setting.

``weights`` is one of:

- ``None`` / ``""``: the bundled default model (``DEFAULT_MODEL``), if installed;
- the name of a bundled model: ``spacy_elmo/models/<name>/`` (``options.json`` + ``weights.hdf5``);
- a directory holding ``options.json`` and exactly one ``.hdf5`` weight file;
- an ELMoForManyLangs model directory (``config.json``, ``encoder.pkl``, ...; see ``bilm.efml``);
- ``efml-<code>``: an ELMoForManyLangs model by language (``efml_models``), downloaded as below;
- an ``http(s)://`` URL of an archive (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``) holding such a pair
  or an ELMoForManyLangs model directory, or of a ``.hdf5`` file whose ``options.json`` sits next to
  it. It is downloaded once into the cache directory (``$SPACY_ELMO_CACHE``, else
  ``~/.cache/spacy_elmo``) with a progress bar.
  A ``#sha256=<hex>`` fragment is checked against the download; in every case the SHA-256 of the
  download is recorded and re-checked whenever the cached copy is used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urldefrag, urlsplit

from .bilm.efml import is_efml_directory
from .efml_models import efml_url, is_efml_name
from .errors import ElmoWeightsError

DEFAULT_MODEL = "en_elmo_small"
BUNDLED_MODELS_DIR = Path(__file__).parent / "models"
CACHE_ENV = "SPACY_ELMO_CACHE"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
SETTING = "weights"


class WeightFiles(NamedTuple):
    options_file: Path
    weight_file: Path


class EfmlFiles(NamedTuple):
    """An ELMoForManyLangs model directory (``bilm.efml.load_efml`` reads it)."""

    directory: Path


def _fail(message: str) -> ElmoWeightsError:
    return ElmoWeightsError(f"elmo setting '{SETTING}': {message}")


def bundled_models() -> list[str]:
    """Names of the models installed under ``spacy_elmo/models/``."""
    if not BUNDLED_MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_MODELS_DIR.iterdir() if (p / "options.json").is_file())


def resolve_weights(weights: str | os.PathLike[str] | None) -> WeightFiles | EfmlFiles:
    """The ``options.json`` and weight file, or the ELMoForManyLangs directory, that ``weights``
    names (see the module docstring)."""
    if weights is None or str(weights).strip() == "":
        if DEFAULT_MODEL in bundled_models():
            return find_weight_pair(BUNDLED_MODELS_DIR / DEFAULT_MODEL)
        raise _fail(
            f"no weights given and the bundled default model '{DEFAULT_MODEL}' is not installed. Set '{SETTING}' "
            "(e.g. nlp.add_pipe('elmo', config={'weights': ...}), or [components.elmo] weights / --paths.elmo "
            "in a training config) to a bundled model name, a directory with options.json and one .hdf5 "
            "weight file, or an http(s) URL of such files"
        )
    text = str(weights)
    if text.startswith(("http://", "https://")):
        return download_weights(text)
    if text in bundled_models():
        return find_weight_pair(BUNDLED_MODELS_DIR / text)
    path = Path(text).expanduser()
    if is_efml_name(text) and not path.exists():
        return download_weights(efml_url(text))
    if not path.exists():
        names = ", ".join(bundled_models()) or "none installed"
        raise _fail(f"'{text}' is neither an existing directory nor a bundled model name (bundled: {names})")
    if not path.is_dir():
        raise _fail(f"'{text}' is a file; give the directory that holds options.json and the .hdf5 weight file")
    if is_efml_directory(path):
        return EfmlFiles(path)
    return find_weight_pair(path)


def find_weight_pair(directory: Path) -> WeightFiles:
    """``options.json`` and the single ``.hdf5`` file in ``directory``."""
    options_file = directory / "options.json"
    if not options_file.is_file():
        raise _fail(f"directory '{directory}' has no options.json")
    hdf5_files = sorted(p for p in directory.iterdir() if p.suffix in (".hdf5", ".h5") and p.is_file())
    if len(hdf5_files) != 1:
        found = ", ".join(p.name for p in hdf5_files) or "none"
        raise _fail(f"directory '{directory}' must hold exactly one .hdf5 weight file, found {found}")
    return WeightFiles(options_file, hdf5_files[0])


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spacy_elmo")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_sha256(fragment: str, url: str) -> str | None:
    if not fragment:
        return None
    key, _, value = fragment.partition("=")
    value = value.strip().lower()
    if key != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise _fail(f"URL fragment '#{fragment}' of {url} must be '#sha256=' and 64 hex digits")
    return value


def _fetch(url: str, target: Path) -> None:
    """Download ``url`` to ``target`` (via a temporary file) with a tqdm progress bar."""
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"spacy_elmo: {target.name}", leave=False) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        raise _fail(f"could not download {url}: {err}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so concurrent readers (n_process workers) never see half a file."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp_name, path)


def _cached_download(url: str, target: Path, expected: str | None) -> Path:
    """``target`` holding ``url``'s content, downloaded unless a verified copy exists."""
    record = target.with_name(target.name + ".sha256")
    if target.is_file() and record.is_file():
        recorded = record.read_text(encoding="utf-8").strip()
        if sha256_of(target) == recorded and expected in (None, recorded):
            return target
    _fetch(url, target)
    actual = sha256_of(target)
    if expected is not None and actual != expected:
        target.unlink(missing_ok=True)
        raise _fail(f"checksum mismatch for {url}: expected sha256 {expected}, downloaded {actual}")
    _write_text_atomic(record, actual + "\n")
    return target


def _extract(archive: Path, destination: Path) -> None:
    """Unpack into a temporary directory, then move it into place (no partial result)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for name in zipped.namelist():
                    if name.startswith("/") or ".." in Path(name).parts:
                        raise _fail(f"archive {archive.name} has an unsafe member path '{name}'")
                zipped.extractall(tmp)
        else:
            with tarfile.open(archive) as tarred:
                tarred.extractall(tmp, filter="data")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(tmp, destination)
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _fail(f"cannot unpack {archive}: {err}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pair_in_tree(root: Path, url: str) -> WeightFiles | EfmlFiles:
    candidates = [p.parent for p in root.rglob("options.json")]
    if not candidates:
        efml = sorted({p.parent for p in root.rglob("encoder.pkl") if is_efml_directory(p.parent)})
        if len(efml) == 1:
            return EfmlFiles(efml[0])
    if len(candidates) != 1:
        raise _fail(
            f"archive from {url} must hold exactly one options.json (or one ELMoForManyLangs model directory), "
            f"found {len(candidates)}"
        )
    return find_weight_pair(candidates[0])


def download_weights(url: str) -> WeightFiles | EfmlFiles:
    """Fetch an archive or a ``.hdf5`` + sibling ``options.json`` into the cache (once)."""
    bare_url, fragment = urldefrag(url)
    expected = _expected_sha256(fragment, url)
    name = Path(urlsplit(bare_url).path).name
    if not name:
        raise _fail(f"URL {url} does not name a file (an archive or a .hdf5 file)")
    entry = cache_dir() / hashlib.sha256(bare_url.encode("utf-8")).hexdigest()[:16]
    if name.endswith(ARCHIVE_SUFFIXES):
        archive = _cached_download(bare_url, entry / name, expected)
        unpacked = entry / "unpacked"
        stamp = entry / "unpacked.sha256"
        archive_hash = (entry / (name + ".sha256")).read_text(encoding="utf-8").strip()
        if not (unpacked.is_dir() and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == archive_hash):
            _extract(archive, unpacked)
            _write_text_atomic(stamp, archive_hash + "\n")
        return _pair_in_tree(unpacked, url)
    if name.endswith((".hdf5", ".h5")):
        weight_file = _cached_download(bare_url, entry / "files" / name, expected)
        options_url = bare_url.rsplit("/", 1)[0] + "/options.json"
        options_file = _cached_download(options_url, entry / "files" / "options.json", None)
        return WeightFiles(options_file, weight_file)
    raise _fail(f"URL {url} must end in one of {', '.join(ARCHIVE_SUFFIXES)} or .hdf5")
