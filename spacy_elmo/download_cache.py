"""The download cache: files fetched once, verified on every use, never half-written.

Layout below ``cache_dir()`` (``$SPACY_ELMO_CACHE``, else ``~/.cache/spacy_elmo``), one *entry* per
model, named by a hash of its key (the URL it is published at)::

    <key>.lock                 a file lock: concurrent first loads download once
    <key>/files/<name>         downloaded files (a weight file and its options keep their names)
    <key>/archive/<name>       a downloaded archive
    <key>/unpacked/...         what the archive holds
    <key>/records/<name>.json  per file: its URL, SHA-256, size and mtime

A downloaded file's SHA-256 is recorded once and checked on every use (a full hash). Unpacked
files are checked by size and mtime, and hashed in full when either changed (extraction sets
every mtime to a moment before the record, so any later write shows). A file that fails its
check is fetched again (or re-extracted from the verified archive) with the warning
"cached copy of URL was damaged; fetched again". Downloads and extractions go to temporary
names and are renamed into place when complete and verified, so an interrupted download or a
checksum mismatch leaves the previous verified copy, or nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ElmoDownloadError, ElmoWeightsError

CACHE_ENV = "SPACY_ELMO_CACHE"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
DOWNLOAD_HINT = (
    "Check the network, or set SPACY_ELMO_MIRROR to a server holding the same files (for air-gapped sites), "
    "or download the files by other means and give their local directory in 'weights'"
)
BLOCK = 1 << 20


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spacy_elmo")


def entry_dir(key: str) -> Path:
    """The cache entry of ``key`` (a URL, or ``file://`` + a local archive's absolute path)."""
    return cache_dir() / hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def damaged_warning(url: str) -> None:
    warnings.warn(f"[spacy_elmo] cached copy of {url} was damaged; fetched again", UserWarning, stacklevel=3)


@contextmanager
def locked(entry: Path) -> Iterator[None]:
    """Hold ``entry``'s file lock; removes what killed processes left half-written in it."""
    from filelock import FileLock

    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry.with_name(entry.name + ".lock"))):
        if entry.is_dir():
            # Holding the lock, no other process is writing here: temporary names are stale.
            for stale in [*entry.rglob(".*.part"), *entry.glob(".unpacked.*")]:
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
        yield


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_record(path: Path, data: dict[str, Any]) -> None:
    """Write via a temporary file and rename: readers never see half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
    os.replace(tmp_name, path)


def _fail(message: str, url: str, status: int | None = None) -> ElmoDownloadError:
    return ElmoDownloadError(f"{message}. {DOWNLOAD_HINT}.", url, status)


def download(url: str, directory: Path, name: str, *, progress: bool = True) -> tuple[Path, str]:
    """Fetch ``url`` into a temporary file in ``directory``; returns it and its SHA-256.

    The caller renames it into place or deletes it. Raises ``ElmoDownloadError`` naming the URL
    (no file left behind) for HTTP errors, network errors and a body shorter than announced.
    """
    from tqdm import tqdm

    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=f"spacy_elmo: {name}", leave=False, disable=not progress
            ) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise _fail(f"download of {url} was cut short: {received} of {total} bytes", url)
        return tmp, digest.hexdigest()
    except ElmoDownloadError:
        tmp.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as err:
        tmp.unlink(missing_ok=True)
        raise _fail(f"could not download {url}: HTTP {err.code} {err.reason}", url, err.code) from None
    except http.client.IncompleteRead as err:
        tmp.unlink(missing_ok=True)
        raise _fail(f"download of {url} was cut short: {received + len(err.partial)} bytes received", url) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise _fail(f"could not download {url}: {reason}", url) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached_file(
    url: str,
    target: Path,
    *,
    key: str | None = None,
    expected: str | None = None,
    check: Callable[[Path], None] | None = None,
    progress: bool = True,
) -> Path:
    """``target`` holding ``url``'s content: the cached copy if it verifies, else a fresh download.

    Call inside ``locked``. ``key``: what the record names (default ``url``; a catalog file's
    publisher URL when a mirror serves it). ``expected``: a SHA-256 the content must have (a
    mismatch raises and keeps any verified copy). ``check``: validates a new download before it
    replaces anything (raises to refuse it).
    """
    key = key or url
    record_path = target.parent.parent / "records" / f"{target.name}.json"
    record = _read_record(record_path)
    damaged = False
    if record is not None and record.get("key") == key and target.is_file():
        actual = sha256_of(target)
        if actual == record.get("sha256"):
            if expected is None or expected == actual:
                return target
        else:
            damaged = True
    tmp, actual = download(url, target.parent, target.name, progress=progress)
    try:
        if expected is not None and actual != expected:
            raise ElmoWeightsError(f"checksum mismatch for {url}: expected sha256 {expected}, downloaded {actual}")
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    stat = target.stat()
    _write_record(record_path, {"key": key, "url": url, "sha256": actual, "size": stat.st_size})
    if damaged:
        damaged_warning(url)
    return target


def is_cached(target: Path, key: str) -> bool:
    """Whether ``target`` was downloaded for ``key`` and still has its recorded size (no hashing)."""
    record = _read_record(target.parent.parent / "records" / f"{target.name}.json")
    return (
        record is not None
        and record.get("key") == key
        and target.is_file()
        and target.stat().st_size == record.get("size")
    )


# ---- archives ----


def _unsafe(name: str) -> bool:
    """Absolute (``/x``, ``C:/x``, ``\\x``) or parent-relative (``..``) member paths."""
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    return normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":") or ".." in path.parts


def _extract(archive: Path, destination: Path, source: str) -> None:
    """Unpack into a temporary directory, then move it into place (no partial result)."""
    tmp = Path(tempfile.mkdtemp(prefix=".unpacked.", dir=destination.parent))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                names = zipped.namelist()
                for name in names:
                    if _unsafe(name):
                        raise ElmoWeightsError(f"archive {source} has an unsafe member path '{name}'; nothing unpacked")
                zipped.extractall(tmp)
        else:
            with tarfile.open(archive) as tarred:
                for member in tarred.getmembers():
                    if _unsafe(member.name) or ((member.issym() or member.islnk()) and _unsafe(member.linkname)):
                        raise ElmoWeightsError(
                            f"archive {source} has an unsafe member path '{member.name}'; nothing unpacked"
                        )
                tarred.extractall(tmp, filter="data")
        # A moment before the record is written: any later write to a file changes its mtime.
        moment = time.time() - 2
        for path in tmp.rglob("*"):
            if path.is_file():
                os.utime(path, (moment, moment))
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(tmp, destination)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ElmoWeightsError(f"cannot unpack archive {source}: {err}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _tree_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def _verify_tree(root: Path, files: dict[str, Any]) -> bool:
    """Every recorded file present and unchanged, and no other file: size + mtime, else a full hash."""
    on_disk = _tree_files(root)
    if set(on_disk) != set(files):
        return False
    for relative, path in on_disk.items():
        expected = files[relative]
        stat = path.stat()
        if stat.st_size != expected.get("size"):
            return False
        if stat.st_mtime_ns != expected.get("mtime_ns") and sha256_of(path) != expected.get("sha256"):
            return False
    return True


def unpacked(archive: Path, archive_sha256: str, entry: Path, source: str) -> Path:
    """``entry/unpacked``: ``archive``'s content, verified, re-extracted when damaged. Call inside ``locked``."""
    entry.mkdir(parents=True, exist_ok=True)
    destination = entry / "unpacked"
    record_path = entry / "records" / "unpacked.json"
    record = _read_record(record_path)
    damaged = False
    if record is not None and record.get("archive_sha256") == archive_sha256 and destination.is_dir():
        if _verify_tree(destination, record.get("files") or {}):
            return destination
        damaged = True
    _extract(archive, destination, source)
    files = {}
    for relative, path in _tree_files(destination).items():
        stat = path.stat()
        files[relative] = {"sha256": sha256_of(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _write_record(record_path, {"archive_sha256": archive_sha256, "files": files})
    if damaged:
        damaged_warning(source)
    return destination


def cached_archive(url: str, *, key: str | None = None, expected: str | None = None, progress: bool = True) -> Path:
    """Download (once) and unpack an archive URL; returns the verified unpacked directory."""
    key = key or url
    entry = entry_dir(key)
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name
    with locked(entry):
        archive = cached_file(url, entry / "archive" / name, key=key, expected=expected, progress=progress)
        record = _read_record(entry / "records" / f"{name}.json")
        assert record is not None  # cached_file wrote it
        return unpacked(archive, record["sha256"], entry, url)


def local_archive(path: Path) -> Path:
    """Unpack a local archive into the cache (once per content); returns the verified unpacked directory."""
    path = path.resolve()
    entry = entry_dir(f"file://{path}")
    with locked(entry):
        try:
            archive_sha256 = sha256_of(path)
        except OSError as err:
            raise ElmoWeightsError(f"cannot read archive {path}: {err}") from None
        return unpacked(path, archive_sha256, entry, str(path))


def copy_tree_atomic(files: list[Path], destination: Path) -> Path:
    """Copy ``files`` into ``destination`` (created); each appears complete or not at all."""
    destination.mkdir(parents=True, exist_ok=True)
    for source in files:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{source.name}.", suffix=".part", dir=destination)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp_name)
            os.replace(tmp_name, destination / source.name)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    return destination
