"""Resolving the ``weights`` setting: bundled names, directories, and URLs served from 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from spacy_elmo import ElmoWeightsError
from spacy_elmo.weights_source import resolve_weights

from ..elmo_helpers import FIXTURE_DIR, copy_fixture_weights, make_nlp


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        QuietHandler.requests.append(self.path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "served"``; yields (base URL, directory)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    QuietHandler.requests = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("SPACY_ELMO_CACHE", str(directory))
    return directory


def make_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(FIXTURE_DIR / "options.json", arcname="small_elmo/options.json")
        tar.add(FIXTURE_DIR / "lm_weights.hdf5", arcname="small_elmo/lm_weights.hdf5")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_directory(tmp_path: Path) -> None:
    directory = copy_fixture_weights(tmp_path / "w")
    files = resolve_weights(str(directory))
    assert files.options_file == directory / "options.json"
    assert files.weight_file == directory / "lm_weights.hdf5"


def test_directory_errors(tmp_path: Path) -> None:
    directory = copy_fixture_weights(tmp_path / "w")
    (directory / "second.hdf5").write_bytes(b"")
    with pytest.raises(ElmoWeightsError, match=r"exactly one \.hdf5 weight file, found lm_weights\.hdf5, second\.hdf5"):
        resolve_weights(str(directory))
    with pytest.raises(ElmoWeightsError, match="is an options file; give the weight file"):
        resolve_weights(str(directory / "options.json"))
    with pytest.raises(ElmoWeightsError, match=r"is a file, but not a \.hdf5 weight file or an archive"):
        resolve_weights(str(FIXTURE_DIR / "NOTICE"))
    with pytest.raises(ElmoWeightsError, match=r"not a model name.*catalog models: small, medium, original"):
        resolve_weights("en_elmo_huge")


def test_bundled_model_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    first, second, third, default = (
        copy_fixture_weights(models / name)
        for name in ("en_elmo_small", "en_elmo_small_v2", "en_elmo_small_v3", "en_elmo_small_v4")
    )
    for bundled in (first, second, third, default):
        (bundled / "lm_weights.hdf5").rename(bundled / "weights.hdf5")
    monkeypatch.setattr("spacy_elmo.weights_source.BUNDLED_MODELS_DIR", models)
    assert resolve_weights("en_elmo_small").weight_file == first / "weights.hdf5"
    assert resolve_weights("en_elmo_small_v2").weight_file == second / "weights.hdf5"
    assert resolve_weights("en_elmo_small_v3").weight_file == third / "weights.hdf5"
    # omitted weights: the bundled default, en_elmo_small_v4 since 0.4
    assert resolve_weights(None).weight_file == default / "weights.hdf5"
    assert make_nlp("")("default model").tensor.shape == (2, 32)


def test_archive_url_is_downloaded_once_and_checked(server: tuple[str, Path], cache: Path, tmp_path: Path) -> None:
    base, served = server
    archive = make_tar(served / "small_elmo.tar.gz")
    url = f"{base}/small_elmo.tar.gz#sha256={sha256(archive)}"
    nlp = make_nlp(url)
    doc = nlp("Downloaded weights work .")
    expected = make_nlp(copy_fixture_weights(tmp_path / "local"))("Downloaded weights work .")
    np.testing.assert_array_equal(doc.tensor, expected.tensor)
    assert QuietHandler.requests == ["/small_elmo.tar.gz"]
    files = resolve_weights(url)
    assert QuietHandler.requests == ["/small_elmo.tar.gz"]  # cached: no second request
    assert str(files.weight_file).startswith(str(cache))
    assert not list(cache.rglob("*.part"))


def test_hdf5_url_fetches_the_sibling_options(server: tuple[str, Path], cache: Path) -> None:
    base, served = server
    copy_fixture_weights(served)
    files = resolve_weights(f"{base}/lm_weights.hdf5")
    # lm_weights.hdf5 -> lm_options.json by the published naming (404 here), then options.json
    assert list(dict.fromkeys(QuietHandler.requests)) == ["/lm_weights.hdf5", "/lm_options.json", "/options.json"]
    assert files.weight_file.read_bytes() == (FIXTURE_DIR / "lm_weights.hdf5").read_bytes()
    assert files.options_file.read_bytes() == (FIXTURE_DIR / "options.json").read_bytes()


def test_checksum_mismatch_leaves_nothing_behind(server: tuple[str, Path], cache: Path) -> None:
    base, served = server
    make_tar(served / "small_elmo.tar.gz")
    with pytest.raises(ElmoWeightsError, match="checksum mismatch"):
        resolve_weights(f"{base}/small_elmo.tar.gz#sha256={'0' * 64}")
    assert not [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock"]  # lock files hold no data


def test_corrupted_cache_is_downloaded_again(server: tuple[str, Path], cache: Path) -> None:
    base, served = server
    copy_fixture_weights(served)
    files = resolve_weights(f"{base}/lm_weights.hdf5")
    files.weight_file.write_bytes(b"damaged")
    QuietHandler.requests = []
    with pytest.warns(UserWarning, match=r"cached copy of .*/lm_weights\.hdf5 was damaged; fetched again"):
        files = resolve_weights(f"{base}/lm_weights.hdf5")
    assert "/lm_weights.hdf5" in QuietHandler.requests
    assert files.weight_file.read_bytes() == (FIXTURE_DIR / "lm_weights.hdf5").read_bytes()


def test_url_errors(server: tuple[str, Path], cache: Path) -> None:
    base, served = server
    with pytest.raises(ElmoWeightsError, match=r"setting 'weights': could not download .*missing\.tar\.gz"):
        resolve_weights(f"{base}/missing.tar.gz")
    with pytest.raises(ElmoWeightsError, match="must end in one of"):
        resolve_weights(f"{base}/weights.bin")
    with pytest.raises(ElmoWeightsError, match="must be '#sha256='"):
        resolve_weights(f"{base}/x.tar.gz#md5=abc")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("../escape/options.json", "{}")
    (served / "evil.zip").write_bytes(buffer.getvalue())
    with pytest.raises(ElmoWeightsError, match="unsafe member path"):
        resolve_weights(f"{base}/evil.zip")
