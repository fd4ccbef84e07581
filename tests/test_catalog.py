"""Published models by name, AllenNLP's two-URL habit, the download command, and their errors.

A local mirror of AllenNLP's layout on 127.0.0.1 serves a random-weight model of the Small
architecture under the published folder and file names; nothing else is reachable.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo import ElmoDownloadError, ElmoError, ElmoOptionsError, ElmoWeightsError, load_bilm
from spacy_elmo.bilm import ElmoBiLM, save_bilm
from spacy_elmo.bilm.options import ElmoOptions
from spacy_elmo.bilm.weights import weight_entries
from spacy_elmo.catalog import CATALOG, Remote
from spacy_elmo.cli import main
from spacy_elmo.weights_source import resolve_weights

from .conftest import random_model_files
from .elmo_helpers import FIXTURE_DIR, copy_fixture_weights, make_nlp
from .http_helpers import Server, serve

ROOT = Path(__file__).parent.parent
FOLDER = "2x1024_128_2048cnn_1xhighway"
OPTIONS_NAME = f"elmo_{FOLDER}_options.json"
WEIGHTS_NAME = f"elmo_{FOLDER}_weights.hdf5"
TEXT = "The bank of the river flooded ."


@pytest.fixture(scope="module")
def mirror_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AllenNLP's layout with a random-weight Small model (13.6M parameters, 54 MB), built once."""
    root = tmp_path_factory.mktemp("mirror")
    folder = root / FOLDER
    torch.manual_seed(3)
    model = ElmoBiLM(ElmoOptions.from_dict(CATALOG["small"].architecture.options_dict()))  # its own random init
    options, weights = save_bilm(model, folder)
    options.rename(folder / OPTIONS_NAME)
    weights.rename(folder / WEIGHTS_NAME)
    (root / "elsewhere").symlink_to(folder)  # the same files at a URL the catalog does not know
    return root


@pytest.fixture(scope="module")
def expected_tensor(mirror_dir: Path) -> np.ndarray:
    """``doc.tensor`` of TEXT from the same files in a local directory (published names)."""
    return make_nlp(mirror_dir / FOLDER)(TEXT).tensor.copy()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("SPACY_ELMO_CACHE", str(directory))
    return directory


@pytest.fixture
def mirror(mirror_dir: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> Iterator[Server]:
    with serve(mirror_dir) as server:
        monkeypatch.setenv("SPACY_ELMO_MIRROR", server.base + "/")
        yield server


def small_urls(base: str) -> tuple[str, str]:
    return f"{base}/{FOLDER}/{OPTIONS_NAME}", f"{base}/{FOLDER}/{WEIGHTS_NAME}"


def data_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix != ".lock")


# ---- the catalog itself ----


def test_catalog_entries_are_the_published_models() -> None:
    assert list(CATALOG)[:5] == ["small", "medium", "original", "original-5.5b", "pubmed"]
    assert all(name.startswith("efml-") for name in list(CATALOG)[5:])  # tests/test_efml_component.py
    base = "https://s3-us-west-2.amazonaws.com/allennlp/models/elmo"
    small = CATALOG["small"]
    assert small.files is not None
    expected = [f"{base}/{FOLDER}/{OPTIONS_NAME}", f"{base}/{FOLDER}/{WEIGHTS_NAME}"]
    assert [r.canonical_url for r in small.files] == expected
    big = CATALOG["original-5.5b"].files
    assert big is not None and big[1].canonical_url == (
        f"{base}/2x4096_512_2048cnn_2xhighway_5.5B/elmo_2x4096_512_2048cnn_2xhighway_5.5B_weights.hdf5"
    )
    pubmed = CATALOG["pubmed"].files
    assert pubmed is not None and pubmed[1].path == (
        "contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_weights_PubMed_only.hdf5"
    )
    for entry in list(CATALOG.values())[:5]:
        assert entry.format == "bilm-tf" and entry.training_data and entry.license
        # The published parameter counts are what the architecture's datasets hold.
        options = ElmoOptions.from_dict(entry.architecture.options_dict())
        assert sum(math.prod(e.shape) for e in weight_entries(options)) == entry.parameters


def test_mirror_replaces_the_publishers_base(monkeypatch: pytest.MonkeyPatch) -> None:
    remote = CATALOG["small"].files[1]  # type: ignore[index]
    monkeypatch.delenv("SPACY_ELMO_MIRROR", raising=False)
    assert remote.url() == remote.canonical_url
    monkeypatch.setenv("SPACY_ELMO_MIRROR", "http://127.0.0.1:9/elmo/")
    assert remote.url() == f"http://127.0.0.1:9/elmo/{FOLDER}/{WEIGHTS_NAME}"
    nlpl = Remote("nlpl", "11/136.zip")
    assert nlpl.canonical_url == "http://vectors.nlpl.eu/repository/11/136.zip"
    assert nlpl.url() == "http://127.0.0.1:9/elmo/nlpl/11/136.zip"


# ---- every form gives the same vectors ----


def test_every_form_gives_the_tensor_of_the_local_directory(
    mirror: Server, mirror_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expected_tensor: np.ndarray
) -> None:
    options_url, weights_url = small_urls(mirror.base)
    elsewhere = f"{mirror.base}/elsewhere/{WEIGHTS_NAME}"
    forms: list[tuple[dict[str, str], list[str]]] = [
        ({"weights": "small"}, [f"/{FOLDER}/{OPTIONS_NAME}", f"/{FOLDER}/{WEIGHTS_NAME}"]),
        ({"weights": weights_url, "options": options_url}, [f"/{FOLDER}/{WEIGHTS_NAME}", f"/{FOLDER}/{OPTIONS_NAME}"]),
        # the catalog's URL is recognised as the catalog model (its options checked against the architecture)
        ({"weights": weights_url}, [f"/{FOLDER}/{OPTIONS_NAME}", f"/{FOLDER}/{WEIGHTS_NAME}"]),
        # elsewhere, X_weights.hdf5 finds X_options.json beside it
        ({"weights": elsewhere}, [f"/elsewhere/{WEIGHTS_NAME}", f"/elsewhere/{OPTIONS_NAME}"]),
    ]
    for k, (config, requests) in enumerate(forms):
        monkeypatch.setenv("SPACY_ELMO_CACHE", str(tmp_path / f"cache{k}"))  # an empty cache for each form
        mirror.requests.clear()
        doc = make_nlp(**config)(TEXT)  # type: ignore[arg-type]
        np.testing.assert_array_equal(doc.tensor, expected_tensor, err_msg=str(config))
        assert mirror.requests == requests
        # The Python API, from the same cache: no request.
        model = load_bilm(config["weights"], options=config.get("options"))
        assert model.options.lstm_dim == 1024 and mirror.requests == requests
    assert load_bilm(options_url, weights_url).options.projection_dim == 128
    # The options and weights as local files.
    local = mirror_dir / FOLDER
    doc = make_nlp(local / WEIGHTS_NAME, options=str(local / OPTIONS_NAME))(TEXT)
    np.testing.assert_array_equal(doc.tensor, expected_tensor)
    np.testing.assert_array_equal(make_nlp(local / WEIGHTS_NAME)(TEXT).tensor, expected_tensor)


def test_n_characters_261_works_as_262(tmp_path: Path) -> None:
    directory = copy_fixture_weights(tmp_path / "w")
    options = json.loads((directory / "options.json").read_text())
    options["char_cnn"]["n_characters"] = 261  # bilm-tf's training value
    (directory / "options.json").write_text(json.dumps(options))
    expected = make_nlp(copy_fixture_weights(tmp_path / "ref"))(TEXT).tensor
    np.testing.assert_array_equal(make_nlp(directory)(TEXT).tensor, expected)


# ---- the commands ----


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_download_command_then_a_second_process_offline(
    mirror_dir: Path, cache: Path, tmp_path: Path, expected_tensor: np.ndarray
) -> None:
    env = {**os.environ, "SPACY_ELMO_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    with serve(mirror_dir) as server:
        env["SPACY_ELMO_MIRROR"] = server.base
        result = subprocess.run(
            [sys.executable, "-m", "spacy_elmo", "download", "small", "--to", str(tmp_path / "copy")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert sorted(set(server.requests)) == [f"/{FOLDER}/{OPTIONS_NAME}", f"/{FOLDER}/{WEIGHTS_NAME}"]
    assert Path(result.stdout.strip()) == tmp_path / "copy"
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == [OPTIONS_NAME, WEIGHTS_NAME]
    # The server is gone: a new process loads "small" from the cache.
    code = (
        "import numpy, spacy, spacy_elmo\n"
        "nlp = spacy.blank('en'); nlp.add_pipe('elmo', config={'weights': 'small'})\n"
        f"numpy.save({str(tmp_path / 'tensor.npy')!r}, nlp({TEXT!r}).tensor)\n"
    )
    offline = _python(code, env)
    assert offline.returncode == 0, offline.stderr
    # Another process may run other BLAS kernels: equal up to float rounding.
    np.testing.assert_allclose(np.load(tmp_path / "tensor.npy"), expected_tensor, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(make_nlp(tmp_path / "copy")(TEXT).tensor, expected_tensor)


def test_models_lists_the_catalog_and_what_is_cached(
    mirror: Server, capsys: pytest.CaptureFixture[str], cache: Path
) -> None:
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    for name in CATALOG:
        assert f"\n{name} " in listing
    assert "13.6M" in listing and "374 MB" in listing and "1B Word Benchmark" in listing
    assert str(cache) not in listing.split("cache:")[0]  # nothing cached yet
    assert main(["download", "small", "--quiet"]) == 0
    directory = Path(capsys.readouterr().out.strip())
    assert sorted(p.name for p in directory.iterdir()) == [OPTIONS_NAME, WEIGHTS_NAME]
    assert main(["models"]) == 0
    small_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("small "))
    assert small_line.endswith(str(directory))


def test_embed_with_weights_by_name(mirror: Server, tmp_path: Path, expected_tensor: np.ndarray) -> None:
    source = tmp_path / "in.txt"
    source.write_text(TEXT + "\n", encoding="utf-8")
    assert main(["embed", str(source), str(tmp_path / "a.hdf5"), "--weights", "small", "--quiet"]) == 0
    options_url, weights_url = small_urls(mirror.base)
    two = ["--options-file", options_url, "--weight-file", weights_url, "--quiet"]
    assert main(["embed", str(source), str(tmp_path / "b.hdf5"), *two]) == 0
    with h5py.File(tmp_path / "a.hdf5", "r") as a, h5py.File(tmp_path / "b.hdf5", "r") as b:
        np.testing.assert_array_equal(a["0"][()], b["0"][()])
        np.testing.assert_allclose(a["0"][()].mean(axis=0), expected_tensor, rtol=1e-5, atol=1e-6)
    assert main(["embed", str(source), str(tmp_path / "c.hdf5"), "--options-file", options_url]) == 1


# ---- bad input: errors at add_pipe, naming the setting ----


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"weights": "huge"}, r"'huge' is not a model name.*catalog models: small, medium, original, original-5\.5b"),
        ({"weights": "/no/such/dir"}, r"setting 'weights': '/no/such/dir' is not a model name"),
        ({"weights": "http://"}, r"not a valid URL: it has no host"),
        ({"weights": "https://example.org:99999/x.hdf5"}, r"not a valid URL: bad port"),
        ({"weights": "ftp://example.org/x.hdf5"}, r"only http:// and https:// URLs"),
        ({"weights": "http://a.org/x_options.json http://a.org/x_weights.hdf5"}, r"holds 2 URLs.*'options'"),
        ({"weights": "http://a.org/x_options.json,http://a.org/x_weights.hdf5"}, r"holds 2 URLs"),
        ({"weights": "http://a.org/x_options.json"}, r"is an options file; give the weight file"),
        ({"weights": "http://a.org/model.bin"}, r"must end in one of"),
        ({"weights": "small", "options": "http://a.org/o.json"}, r"model name.*leave 'options' unset"),
        ({"options": "http://a.org/o.json"}, r"'options' is set but 'weights' is not"),
        ({"weights": "http://a.org/w.hdf5", "options": "/no/options.json"}, r"setting 'options': options file not"),
    ],
)
def test_bad_weights_fail_at_add_pipe(config: dict[str, str], message: str) -> None:
    import spacy

    nlp = spacy.blank("en")
    with pytest.raises(ElmoWeightsError, match=message):
        nlp.add_pipe("elmo", config=config)


def test_network_failures_name_the_url_and_leave_nothing(mirror: Server, cache: Path) -> None:
    _, weights_url = small_urls(mirror.base)
    for code in (403, 404):
        mirror.status[f"/{FOLDER}/{WEIGHTS_NAME}"] = code
        with pytest.raises(ElmoDownloadError, match=rf"{WEIGHTS_NAME}: HTTP {code}.*SPACY_ELMO_MIRROR") as info:
            resolve_weights("small")
        assert info.value.url == weights_url and info.value.status == code
    mirror.status.clear()
    mirror.truncate.add(f"/{FOLDER}/{WEIGHTS_NAME}")
    with pytest.raises(ElmoDownloadError, match=rf"download of {weights_url} was cut short"):
        resolve_weights("small")
    assert [p.name for p in data_files(cache) if p.suffix == ".hdf5" or p.suffix == ".part"] == []
    # No server at all.
    with pytest.raises(ElmoDownloadError, match=r"could not download http://127\.0\.0\.1:9/.*SPACY_ELMO_MIRROR"):
        resolve_weights("http://127.0.0.1:9/model_weights.hdf5")


def test_weights_url_without_options_beside_it(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "served").mkdir()
    shutil.copy(FIXTURE_DIR / "lm_weights.hdf5", tmp_path / "served" / "model_weights.hdf5")
    message = r"no options file found next to .*model_options\.json.*'options'"
    with serve(tmp_path / "served") as server, pytest.raises(ElmoWeightsError, match=message):
        resolve_weights(f"{server.base}/model_weights.hdf5")


def test_downloaded_options_must_match_the_catalog_architecture(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "wrong" / FOLDER
    options, weights = random_model_files(folder, CATALOG["small"].architecture.options_dict())
    data = json.loads(options.read_text())
    data["lstm"]["dim"] = 2048
    (folder / OPTIONS_NAME).write_text(json.dumps(data))
    weights.rename(folder / WEIGHTS_NAME)
    with serve(tmp_path / "wrong") as server:
        monkeypatch.setenv("SPACY_ELMO_MIRROR", server.base)
        message = r"not the published architecture \(lstm\.dim is 2048, expected 1024"
        with pytest.raises(ElmoOptionsError, match=message):
            resolve_weights("small")
        assert f"/{FOLDER}/{WEIGHTS_NAME}" not in server.requests
    assert not list(cache.rglob("*.json"))


# ---- the cache: damage, kills, locks ----


def test_corrupted_cached_copy_is_fetched_again(mirror: Server, expected_tensor: np.ndarray) -> None:
    files = resolve_weights("small")
    data = bytearray(files.weight_file.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # same size, other values
    files.weight_file.write_bytes(bytes(data))
    mirror.requests.clear()
    _, weights_url = small_urls(mirror.base)
    with pytest.warns(UserWarning, match=f"cached copy of {weights_url} was damaged; fetched again"):
        doc = make_nlp("small")(TEXT)
    np.testing.assert_array_equal(doc.tensor, expected_tensor)
    assert mirror.requests == [f"/{FOLDER}/{WEIGHTS_NAME}"]


@pytest.mark.slow
def test_killed_download_leaves_nothing_usable(mirror_dir: Path, cache: Path, expected_tensor: np.ndarray) -> None:
    env = {**os.environ, "SPACY_ELMO_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    with serve(mirror_dir) as server:
        env["SPACY_ELMO_MIRROR"] = server.base
        server.stall.add(f"/{FOLDER}/{WEIGHTS_NAME}")
        code = "from spacy_elmo.weights_source import resolve_weights; resolve_weights('small')"
        process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not [p for p in cache.rglob(".*.part") if p.stat().st_size > 0]:
                assert time.monotonic() < deadline and process.poll() is None, "the download never started"
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    # Half a file under a temporary name, no weight file and no record of one.
    assert not [p for p in cache.rglob(WEIGHTS_NAME)]
    assert not [p for p in cache.rglob(f"{WEIGHTS_NAME}.json")]
    with serve(mirror_dir) as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPACY_ELMO_MIRROR", server.base)
        np.testing.assert_array_equal(make_nlp("small")(TEXT).tensor, expected_tensor)
    assert not list(cache.rglob("*.part"))  # the next load removed the leftovers


# ---- archives: NLPL zips, damaged members, fragments, locks, unsafe paths ----


def nlpl_zip(path: Path) -> Path:
    """The NLPL repository layout: model.hdf5 + options.json + vocab.txt in a zip."""
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.write(FIXTURE_DIR / "lm_weights.hdf5", "model.hdf5")
        zipped.write(FIXTURE_DIR / "options.json", "options.json")
        zipped.writestr("vocab.txt", "<S>\n</S>\n<UNK>\nthe\n")
        zipped.writestr("meta.json", json.dumps({"id": 209}))
    return path


def test_nlpl_archive_by_url_and_by_local_path(tmp_path: Path, cache: Path) -> None:
    expected = make_nlp(copy_fixture_weights(tmp_path / "local"))(TEXT).tensor
    (tmp_path / "served").mkdir()
    archive = nlpl_zip(tmp_path / "served" / "209.zip")
    with serve(tmp_path / "served") as server:
        np.testing.assert_array_equal(make_nlp(f"{server.base}/209.zip")(TEXT).tensor, expected)
    np.testing.assert_array_equal(make_nlp(archive)(TEXT).tensor, expected)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tarred:
        tarred.add(FIXTURE_DIR / "lm_weights.hdf5", "m/model.hdf5")
        tarred.add(FIXTURE_DIR / "options.json", "m/options.json")
    np.testing.assert_array_equal(make_nlp(tmp_path / "model.tar.gz")(TEXT).tensor, expected)


def test_damaged_unpacked_file_is_extracted_again(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "served").mkdir()
    nlpl_zip(tmp_path / "served" / "209.zip")
    original = (FIXTURE_DIR / "lm_weights.hdf5").read_bytes()
    with serve(tmp_path / "served") as server:
        url = f"{server.base}/209.zip"
        files = resolve_weights(url)
        assert files.weight_file.name == "model.hdf5" and str(files.weight_file).startswith(str(cache))
        # Values overwritten in place (same size), then a truncated file: both are found and repaired.
        with h5py.File(files.weight_file, "r+") as handle:
            handle["char_embed"][0, 0] = 123.0
        for damage in ("values", "truncation"):
            if damage == "truncation":
                files.weight_file.write_bytes(original[: len(original) // 2])
            with pytest.warns(UserWarning, match=f"cached copy of {url} was damaged; fetched again"):
                again = resolve_weights(url)
            assert again.weight_file.read_bytes() == original
        assert server.requests == ["/209.zip"]  # re-extracted from the verified archive, not downloaded


def test_wrong_fragment_keeps_the_verified_copy(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "served").mkdir()
    archive = nlpl_zip(tmp_path / "served" / "209.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    with serve(tmp_path / "served") as server:
        url = f"{server.base}/209.zip"
        resolve_weights(f"{url}#sha256={digest}")
        before = data_files(cache)
        with pytest.raises(ElmoWeightsError, match=f"checksum mismatch for {url}: expected sha256 {'0' * 64}"):
            resolve_weights(f"{url}#sha256={'0' * 64}")
        assert data_files(cache) == before
        server.requests.clear()
        resolve_weights(url)
        resolve_weights(f"{url}#sha256={digest}")
        assert server.requests == []


def test_concurrent_first_loads_download_once(tmp_path: Path, cache: Path) -> None:
    import threading

    (tmp_path / "served").mkdir()
    nlpl_zip(tmp_path / "served" / "209.zip")
    results: list[object] = []
    with serve(tmp_path / "served") as server:
        server.delay = 0.3  # a window in which an unlocked second load would start its own download
        url = f"{server.base}/209.zip"

        def load() -> None:
            try:
                results.append(resolve_weights(url))
            except BaseException as err:
                results.append(err)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert server.requests == ["/209.zip"]
    assert len(results) == 4 and all(r == results[0] for r in results), results


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("member", ["/etc/elmo/options.json", "../escape/options.json", "a/../../options.json"])
def test_unsafe_member_paths_are_refused(tmp_path: Path, cache: Path, kind: str, member: str) -> None:
    archive = tmp_path / ("evil.zip" if kind == "zip" else "evil.tar")
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("options.json", "{}")
            zipped.writestr(member, "{}")
    else:
        with tarfile.open(archive, "w") as tarred:
            for name in ("options.json", member):  # TarInfo keeps the name as given (tarfile.add strips a "/")
                info = tarfile.TarInfo(name)
                info.size = 2
                tarred.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(ElmoWeightsError, match=f"unsafe member path '{member}'; nothing unpacked"):
        resolve_weights(str(archive))
    assert not [p for p in cache.rglob("*") if "unpacked" in p.name and p.name != "unpacked.json"]
    assert not (tmp_path / "escape").exists()


def test_saved_pipeline_loads_after_its_weights_are_gone(tmp_path: Path) -> None:
    """Early checks skip local paths when spaCy builds from a config: the saved weights are used."""
    import spacy

    weights = copy_fixture_weights(tmp_path / "w")
    nlp = make_nlp(weights)
    expected = nlp(TEXT).tensor
    nlp.to_disk(tmp_path / "p")
    shutil.rmtree(weights)
    np.testing.assert_array_equal(spacy.load(tmp_path / "p")(TEXT).tensor, expected)
    with pytest.raises(ElmoError, match="is not a model name"):
        make_nlp(weights)


def test_file_mirror_and_a_bad_mirror_value(
    mirror_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, expected_tensor: np.ndarray
) -> None:
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror_dir.as_uri())
    np.testing.assert_array_equal(make_nlp("small")(TEXT).tensor, expected_tensor)
    monkeypatch.setenv("SPACY_ELMO_MIRROR", "mirror.example.org/elmo")
    with pytest.raises(ElmoWeightsError, match=r"SPACY_ELMO_MIRROR='mirror\.example\.org/elmo' must be a base URL"):
        resolve_weights("medium")


def test_a_training_config_names_the_model(mirror: Server, expected_tensor: np.ndarray) -> None:
    """``--paths.elmo small``: built from a config (as ``spacy train`` does), fetched at ``initialize``."""
    import spacy
    from spacy.util import load_model_from_config

    blank = spacy.blank("en")
    blank.add_pipe("elmo")
    config = blank.config.copy()
    config["paths"] = {"elmo": "small"}
    config["components"]["elmo"]["weights"] = "${paths.elmo}"
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.get_pipe("elmo").cfg["weights"] == "small" and mirror.requests == []
    nlp.initialize()
    assert sorted(set(mirror.requests)) == [f"/{FOLDER}/{OPTIONS_NAME}", f"/{FOLDER}/{WEIGHTS_NAME}"]
    np.testing.assert_array_equal(nlp(TEXT).tensor, expected_tensor)
