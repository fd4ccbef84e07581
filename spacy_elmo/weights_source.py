"""Where a biLM's files come from: the ``weights`` and ``options`` settings.

``weights`` is one of:

- ``None`` / ``""``: the bundled default model (``DEFAULT_MODEL``), if installed;
- a **catalog name** (``spacy_elmo.catalog``: ``small``, ``medium``, ``original``, ``original-5.5b``,
  ``pubmed``): the published model, downloaded once from its publisher, or from the same relative
  paths below ``$SPACY_ELMO_MIRROR``; its options are checked against the catalog's architecture;
- the name of a **bundled** model: ``spacy_elmo/models/<name>/``;
- a **directory** holding an options file (``options.json``, or one published ``*_options.json``)
  and exactly one ``.hdf5`` weight file, or an ELMoForManyLangs model directory (``config.json``,
  ``encoder.pkl``, ...; ``bilm.efml``);
- a local **weight file** (``.hdf5``): its options are ``options``, else found by the published
  naming (``X_weights*.hdf5`` next to ``X_options.json``), else ``options.json`` beside it;
- a local **archive** (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``, e.g. an NLPL repository zip of
  ``model.hdf5`` + ``options.json``): unpacked once into the cache;
- an ``http(s)://`` **URL** of such an archive or of a weight file. A weight file's options come
  from ``options``, else from the same folder by the published naming, else ``options.json``
  there. A ``#sha256=<hex>`` fragment is checked against the download.

``options`` (default None) is the path or URL of the options file, for AllenNLP's habit of giving
the two files separately; ``weights`` then names the weight file (or a directory holding it).

Downloads go to the cache (``$SPACY_ELMO_CACHE``, else ``~/.cache/spacy_elmo``): with a progress
bar, once (a file lock serializes concurrent first loads), SHA-256 recorded at the first download
and checked on every later use, unpacked archive members checked before use, and a damaged copy
fetched again; see ``download_cache``. ``check_weights_setting`` validates a setting without any
download, so that a component can refuse a bad value when it is created.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import urldefrag, urlsplit

from .bilm.efml import is_efml_directory
from .bilm.options import read_options
from .catalog import CATALOG, FORMAT_BILM_TF, FORMAT_EFML, MIRROR_ENV, CatalogEntry, get_entry, mirror_base
from .download_cache import (
    ARCHIVE_SUFFIXES,
    CACHE_ENV,
    cache_dir,
    cached_archive,
    cached_file,
    copy_tree_atomic,
    entry_dir,
    is_cached,
    local_archive,
    locked,
    sha256_of,
)
from .errors import ElmoDownloadError, ElmoWeightsError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "BUNDLED_MODELS_DIR",
    "CACHE_ENV",
    "DEFAULT_MODEL",
    "ModelFiles",
    "WeightFiles",
    "bundled_models",
    "cache_dir",
    "cached_entry_dir",
    "check_weights_setting",
    "describe_mirror",
    "download_model",
    "download_weights",
    "fetch_entry",
    "find_weight_pair",
    "parse_url",
    "resolve_model",
    "resolve_weights",
    "sha256_of",
]

DEFAULT_MODEL = "en_elmo_small_v4"
BUNDLED_MODELS_DIR = Path(__file__).parent / "models"
SETTING = "weights"
OPTIONS_SETTING = "options"
WEIGHT_SUFFIXES = (".hdf5", ".h5")


class WeightFiles(NamedTuple):
    options_file: Path
    weight_file: Path


@dataclass(frozen=True)
class ModelFiles:
    """A resolved model: its ``format`` (``catalog.FORMAT_BILM_TF``, ...) and where its files are.

    ``directory`` holds the model's files; ``options_file`` and ``weight_file`` are set for the
    bilm-tf format. ``entry`` is the catalog entry it came from, if any.
    """

    format: str
    directory: Path
    options_file: Path | None = None
    weight_file: Path | None = None
    entry: CatalogEntry | None = None

    def weight_files(self) -> WeightFiles:
        if self.format != FORMAT_BILM_TF or self.options_file is None or self.weight_file is None:
            raise ElmoWeightsError(f"the model in {self.directory} is in the '{self.format}' format, not bilm-tf")
        return WeightFiles(self.options_file, self.weight_file)


def _fail(message: str, setting: str = SETTING) -> ElmoWeightsError:
    return ElmoWeightsError(f"elmo setting '{setting}': {message}")


def bundled_models() -> list[str]:
    """Names of the models installed under ``spacy_elmo/models/``."""
    if not BUNDLED_MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_MODELS_DIR.iterdir() if (p / "options.json").is_file())


def _names_hint() -> str:
    bundled = ", ".join(bundled_models()) or "none installed"
    return f"catalog models: {', '.join(CATALOG)}; bundled models: {bundled}"


def _text(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _looks_like_url(text: str) -> bool:
    return "://" in text or text.lower().startswith(("http:", "https:"))


def _expected_sha256(fragment: str, url: str, setting: str) -> str | None:
    if not fragment:
        return None
    key, _, value = fragment.partition("=")
    value = value.strip().lower()
    if key != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise _fail(f"URL fragment '#{fragment}' of {url} must be '#sha256=' and 64 hex digits", setting)
    return value


class ParsedURL(NamedTuple):
    url: str  # without the fragment
    expected_sha256: str | None
    name: str  # the file name at the end of the path


def parse_url(text: str, setting: str = SETTING) -> ParsedURL:
    """Check an http(s) URL's syntax (no network); raises ``ElmoWeightsError`` naming ``setting``."""
    count = len(re.findall(r"https?://", text, flags=re.IGNORECASE))
    if count > 1:
        raise _fail(
            f"{text!r} holds {count} URLs; give the weight file's URL in 'weights' and the options file's URL "
            "in 'options' (or use a catalog name)",
            setting,
        )
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise _fail(f"{text!r} is not a valid URL: it contains whitespace or control characters", setting)
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise _fail(f"{text!r}: only http:// and https:// URLs are supported (give local files as paths)", setting)
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise _fail(f"{text!r} is not a valid URL: bad port", setting) from None
    if not parts.hostname:
        raise _fail(f"{text!r} is not a valid URL: it has no host", setting)
    bare, fragment = urldefrag(text)
    expected = _expected_sha256(fragment, text, setting)
    name = PurePosixPath(parts.path).name
    if not name:
        raise _fail(f"URL {text} does not name a file (an archive or a .hdf5 weight file)", setting)
    return ParsedURL(bare, expected, name)


def _options_file_message(text: str) -> str:
    return (
        f"'{text}' is an options file; give the weight file (.hdf5) in 'weights' and this file in 'options' "
        f"(or use a catalog name: {', '.join(CATALOG)})"
    )


def _check_options_value(options: str, check_paths: bool) -> None:
    if _looks_like_url(options):
        parsed = parse_url(options, OPTIONS_SETTING)
        if not parsed.name.endswith(".json"):
            raise _fail(f"URL {options} should name a .json options file", OPTIONS_SETTING)
        return
    if check_paths:
        path = Path(options).expanduser()
        if not path.is_file():
            raise _fail(f"options file not found: '{options}'", OPTIONS_SETTING)


def check_weights_setting(
    weights: str | os.PathLike[str] | None,
    options: str | os.PathLike[str] | None = None,
    *,
    check_paths: bool = True,
) -> None:
    """Refuse a bad ``weights`` / ``options`` value without downloading or reading anything.

    ``check_paths=False`` skips what depends on this machine's files (local paths, installed
    bundled models), e.g. while spaCy builds a saved pipeline whose weights were saved with it.
    """
    text, opts = _text(weights), _text(options)
    if opts is not None:
        _check_options_value(opts, check_paths)
    if text is None:
        if opts is not None:
            raise _fail("'options' is set but 'weights' is not: give the weight file's path or URL in 'weights'")
        if check_paths and DEFAULT_MODEL not in bundled_models():
            raise _fail(
                f"no weights given and the bundled default model '{DEFAULT_MODEL}' is not installed. Set "
                f"'{SETTING}' (e.g. nlp.add_pipe('elmo', config={{'weights': 'original'}}), or [components.elmo] "
                f"weights / --paths.elmo in a training config) to a catalog name ({', '.join(CATALOG)}), a "
                "directory with options.json and one .hdf5 weight file, or an http(s) URL of such files"
            )
        return
    if _looks_like_url(text):
        name = parse_url(text).name.lower()
        if name.endswith(".json"):
            raise _fail(_options_file_message(text))
        if not name.endswith(ARCHIVE_SUFFIXES + WEIGHT_SUFFIXES):
            raise _fail(f"URL {text} must end in one of {', '.join(ARCHIVE_SUFFIXES)} or .hdf5")
        if opts is not None and name.endswith(ARCHIVE_SUFFIXES):
            raise _fail(f"'options' applies to a weight file, but {text} is an archive (it holds its own options)")
        return
    if get_entry(text) is not None or text in bundled_models():
        if opts is not None:
            raise _fail(f"'{text}' is a model name, which comes with its options: leave 'options' unset")
        return
    if not check_paths:
        return
    path = Path(text).expanduser()
    if not path.exists():
        raise _fail(f"'{text}' is not a model name, an existing directory or file, or an http(s) URL ({_names_hint()})")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".json"):
            raise _fail(_options_file_message(text))
        if not name.endswith(ARCHIVE_SUFFIXES + WEIGHT_SUFFIXES):
            raise _fail(
                f"'{text}' is a file, but not a .hdf5 weight file or an archive ({', '.join(ARCHIVE_SUFFIXES)}); "
                "give the directory that holds options.json and the .hdf5 weight file"
            )
        if opts is not None and name.endswith(ARCHIVE_SUFFIXES):
            raise _fail(f"'options' applies to a weight file, but '{text}' is an archive (it holds its own options)")


def _is_options_name(name: str) -> bool:
    return name == "options.json" or name.endswith("_options.json")


def _options_in(directory: Path) -> Path | None:
    """``options.json``, else the one published ``*_options.json``; None if there is none."""
    if (directory / "options.json").is_file():
        return directory / "options.json"
    found = sorted(p for p in directory.glob("*_options.json") if p.is_file())
    if len(found) > 1:
        raise _fail(f"directory '{directory}' holds several options files ({', '.join(p.name for p in found)})")
    return found[0] if found else None


def _single_weight_file(directory: Path) -> Path:
    hdf5_files = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if len(hdf5_files) != 1:
        found = ", ".join(p.name for p in hdf5_files) or "none"
        raise _fail(f"directory '{directory}' must hold exactly one .hdf5 weight file, found {found}")
    return hdf5_files[0]


def find_weight_pair(directory: Path, options_file: Path | None = None) -> WeightFiles:
    """The options file (``options_file``, else found in ``directory``) and the single ``.hdf5`` file there."""
    if options_file is None:
        options_file = _options_in(directory)
        if options_file is None:
            raise _fail(
                f"directory '{directory}' has no options.json (nor a published *_options.json); "
                "give the options file in 'options'"
            )
    return WeightFiles(options_file, _single_weight_file(directory))


def _sibling_options_names(weight_name: str) -> list[str]:
    """Options file names to try beside a weight file.

    ``X_options.json`` for ``X_weights*.hdf5`` (the published naming), then ``options.json``.
    """
    stem, found, _ = weight_name.rpartition("_weights")
    names = [f"{stem}_options.json"] if found and stem else []
    return [*names, "options.json"]


def _efml_model_in(root: Path, source: str, entry: CatalogEntry | None = None) -> ModelFiles:
    """The one ELMoForManyLangs model directory in ``root`` (``root`` itself or below it)."""
    folders = sorted({p.parent for p in root.rglob("encoder.pkl") if is_efml_directory(p.parent)})
    if len(folders) != 1:
        raise _fail(f"{source} must hold exactly one ELMoForManyLangs model directory, found {len(folders)}")
    return ModelFiles(FORMAT_EFML, folders[0], entry=entry)


def _model_in_tree(root: Path, source: str, entry: CatalogEntry | None = None) -> ModelFiles:
    """A bilm-tf model somewhere in an unpacked archive: the one folder with an options file
    (else the one ELMoForManyLangs model directory)."""
    folders = sorted({p.parent for p in root.rglob("*.json") if _is_options_name(p.name)})
    if not folders and any(is_efml_directory(p.parent) for p in root.rglob("encoder.pkl")):
        return _efml_model_in(root, source, entry)
    if len(folders) != 1:
        raise _fail(f"archive {source} must hold exactly one options.json (or *_options.json), found {len(folders)}")
    pair = find_weight_pair(folders[0])
    return ModelFiles(FORMAT_BILM_TF, folders[0], pair.options_file, pair.weight_file, entry)


def _architecture_check(entry: CatalogEntry, url: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        if entry.architecture is not None:
            entry.architecture.check(read_options(path), f"options of catalog model '{entry.name}' from {url}")

    return check


def _entry_for_url(url: str) -> CatalogEntry | None:
    """The catalog entry whose weight file or archive is published (or mirrored) at ``url``."""
    for entry in CATALOG.values():
        main = entry.files[1] if entry.files is not None else entry.archive
        assert main is not None
        if url in (main.canonical_url, main.url()):
            return entry
    return None


def fetch_entry(entry: CatalogEntry, *, progress: bool = True) -> ModelFiles:
    """Download (once) and verify a catalog model; returns its cached files."""
    if entry.files is not None:
        options_remote, weights_remote = entry.files
        key = weights_remote.canonical_url
        entry_path = entry_dir(key)
        files = entry_path / "files"
        check = _architecture_check(entry, options_remote.url())
        with locked(entry_path):
            options_file = cached_file(
                options_remote.url(),
                files / options_remote.name,
                key=options_remote.canonical_url,
                check=check,
                progress=progress,
            )
            check(options_file)
            weight_file = cached_file(weights_remote.url(), files / weights_remote.name, key=key, progress=progress)
        return ModelFiles(entry.format, files, options_file, weight_file, entry)
    assert entry.archive is not None
    root = cached_archive(entry.archive.url(), key=entry.archive.canonical_url, progress=progress)
    if entry.format == FORMAT_EFML:
        return _efml_model_in(root, entry.archive.url(), entry)
    if entry.format != FORMAT_BILM_TF:
        return ModelFiles(entry.format, root, entry=entry)
    model = _model_in_tree(root, entry.archive.url(), entry)
    assert model.options_file is not None
    _architecture_check(entry, entry.archive.url())(model.options_file)
    return model


def cached_entry_dir(entry: CatalogEntry) -> Path | None:
    """The directory of ``entry``'s cached files if all are in the cache (sizes only; nothing hashed)."""
    if entry.files is not None:
        entry_path = entry_dir(entry.files[1].canonical_url)
        files = entry_path / "files"
        ok = all(is_cached(files / remote.name, remote.canonical_url) for remote in entry.files)
        return files if ok else None
    assert entry.archive is not None
    entry_path = entry_dir(entry.archive.canonical_url)
    archive_ok = is_cached(entry_path / "archive" / entry.archive.name, entry.archive.canonical_url)
    return entry_path / "unpacked" if archive_ok and (entry_path / "unpacked").is_dir() else None


def _fetch_options_url(options: str, directory: Path, progress: bool) -> Path:
    parsed = parse_url(options, OPTIONS_SETTING)
    target = directory / parsed.name
    for stale in directory.glob("*.json") if directory.is_dir() else []:
        if stale != target:
            stale.unlink(missing_ok=True)
    return cached_file(parsed.url, target, expected=parsed.expected_sha256, progress=progress)


def _weights_url(parsed: ParsedURL, options: str | None, progress: bool) -> ModelFiles:
    entry_path = entry_dir(parsed.url)
    files = entry_path / "files"
    with locked(entry_path):
        weight_file = cached_file(parsed.url, files / parsed.name, expected=parsed.expected_sha256, progress=progress)
        if options is not None and _looks_like_url(options):
            options_file = _fetch_options_url(options, files, progress)
        elif options is not None:
            options_file = Path(options).expanduser()
        else:
            folder = parsed.url.rsplit("/", 1)[0]
            candidates = [(f"{folder}/{name}", files / name) for name in _sibling_options_names(parsed.name)]
            cached = [(url, target) for url, target in candidates if is_cached(target, url)]
            options_file = None
            tried = []
            for url, target in cached or candidates:
                try:
                    options_file = cached_file(url, target, progress=progress)
                    break
                except ElmoDownloadError as err:
                    if err.status != 404:
                        raise
                    tried.append(url)
            if options_file is None:
                raise _fail(
                    f"no options file found next to {parsed.url} (tried {', '.join(tried)}: HTTP 404); "
                    "give its URL or path in 'options'"
                )
    return ModelFiles(FORMAT_BILM_TF, files, options_file, weight_file)


def _local_weight_file(path: Path, options: str | None) -> ModelFiles:
    if options is not None:
        options_file = Path(options).expanduser()
    else:
        found = [path.parent / n for n in _sibling_options_names(path.name) if (path.parent / n).is_file()]
        if not found:
            tried = ", ".join(_sibling_options_names(path.name))
            raise _fail(f"no options file beside '{path}' (looked for {tried}); give it in 'options'")
        options_file = found[0]
    return ModelFiles(FORMAT_BILM_TF, path.parent, options_file, path)


def resolve_model(
    weights: str | os.PathLike[str] | None,
    options: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> ModelFiles:
    """The files that ``weights`` (and ``options``) name, downloading what is not cached."""
    try:
        return _resolve_model(weights, options, progress)
    except ElmoDownloadError as err:
        raise ElmoDownloadError(f"elmo setting '{SETTING}': {err}", err.url, err.status) from None


def _resolve_model(
    weights: str | os.PathLike[str] | None, options: str | os.PathLike[str] | None, progress: bool
) -> ModelFiles:
    check_weights_setting(weights, options)
    text, opts = _text(weights), _text(options)
    if text is None:
        return _directory_model(BUNDLED_MODELS_DIR / DEFAULT_MODEL, None)
    if _looks_like_url(text):
        parsed = parse_url(text)
        entry = _entry_for_url(parsed.url)
        if entry is not None and opts is None and parsed.expected_sha256 is None:
            return fetch_entry(entry, progress=progress)
        if parsed.name.lower().endswith(ARCHIVE_SUFFIXES):
            root = cached_archive(parsed.url, expected=parsed.expected_sha256, progress=progress)
            return _model_in_tree(root, text)
        return _weights_url(parsed, opts, progress)
    entry = get_entry(text)
    if entry is not None:
        return fetch_entry(entry, progress=progress)
    if text in bundled_models():
        return _directory_model(BUNDLED_MODELS_DIR / text, None)
    path = Path(text).expanduser()
    if path.is_dir():
        return _directory_model(path, opts)
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return _model_in_tree(local_archive(path), str(path))
    return _local_weight_file(path, opts)


def model_in_directory(directory: Path) -> ModelFiles:
    """The model a local directory holds (a saved component's, say), by the same rules as ``weights``."""
    return _directory_model(directory, None)


def _directory_model(directory: Path, options: str | None) -> ModelFiles:
    if options is None and is_efml_directory(directory):
        return ModelFiles(FORMAT_EFML, directory)
    options_file = None
    if options is not None:
        options_file = Path(options).expanduser() if not _looks_like_url(options) else None
        if options_file is None:
            entry_path = entry_dir(parse_url(options, OPTIONS_SETTING).url)
            with locked(entry_path):
                options_file = _fetch_options_url(options, entry_path / "files", True)
    pair = find_weight_pair(directory, options_file)
    return ModelFiles(FORMAT_BILM_TF, directory, pair.options_file, pair.weight_file)


def resolve_weights(
    weights: str | os.PathLike[str] | None, options: str | os.PathLike[str] | None = None
) -> WeightFiles:
    """The options file and weight file of a bilm-tf model that ``weights`` (and ``options``) name."""
    return resolve_model(weights, options).weight_files()


def download_weights(url: str) -> WeightFiles:
    """Fetch an archive or a ``.hdf5`` file (and its options) into the cache (once)."""
    return resolve_weights(url)


def download_model(name: str, to: str | os.PathLike[str] | None = None, *, progress: bool = True) -> Path:
    """Download catalog model ``name`` (once) and return the directory holding its files.

    With ``to``, the files are copied there as well (a directory ``weights`` accepts) and ``to`` is returned.
    """
    entry = get_entry(name)
    if entry is None:
        raise ElmoWeightsError(f"'{name}' is not a catalog model ({_names_hint()})")
    model = fetch_entry(entry, progress=progress)
    if to is None:
        return model.directory
    destination = Path(to).expanduser()
    if destination.exists() and not destination.is_dir():
        raise ElmoWeightsError(f"--to {destination}: exists and is not a directory")
    if model.options_file is not None and model.weight_file is not None:
        return copy_tree_atomic([model.options_file, model.weight_file], destination)
    if destination.exists() and any(destination.iterdir()):
        raise ElmoWeightsError(f"--to {destination}: not empty; give a new or empty directory")
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        shutil.copytree(model.directory, tmp, dirs_exist_ok=True)
        if destination.exists():
            destination.rmdir()
        os.replace(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination


def describe_mirror() -> str:
    mirror = mirror_base()
    return f"{MIRROR_ENV}={mirror}" if mirror else f"{MIRROR_ENV} unset (publishers' servers)"
