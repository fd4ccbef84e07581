"""Pretraining data: streaming tokenization into shards, the word vocabulary, and LM batches.

Raw text (a file or a directory of files, one paragraph or sentence per line) is tokenized with spaCy's
tokenizer for the language, split into sentences by spaCy's rule-based sentencizer, and written once as
shards of at most ``shard_sentences`` lines of space-joined tokens. Training streams the shards: an epoch
visits them in a seeded random order and each shard's sentences in a seeded random order, so memory holds
one shard at a time and the position in the stream is three integers (epoch, shard, sentence).

Batches follow bilm-tf's ``_get_batch``: every sentence becomes ``<S> w_1 ... w_n </S>`` (reversed for the
backward LM), inputs are its tokens but the last and targets the tokens but the first, and each of the
``batch_size`` rows is a stream of such pairs cut into windows of ``unroll_steps``: a sentence that does not
fit continues in the same row of the next batch, so the LSTM state can be carried across batches.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bilm.chars import BOS_TOKEN, EOS_TOKEN, MAX_WORD_LENGTH, word_to_char_ids
from ..errors import ElmoError
from ..text_lines import EncodingErrors, TextEncodingError, iter_text_lines

UNK_TOKEN = "<UNK>"
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
BOS_ID, EOS_ID, UNK_ID = 0, 1, 2
DEFAULT_SHARD_SENTENCES = 20_000
# Targets of padded positions in evaluation batches.
IGNORE_TARGET = -100


class PretrainDataError(ElmoError):
    """Training or dev text is missing, unreadable or empty."""


def text_files(path: str | Path, what: str = "training text") -> list[Path]:
    """The files of ``path``: the file itself, or every non-hidden file under a directory, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts))
        if not files:
            raise PretrainDataError(f"{what} directory {path} holds no files")
        return files
    raise PretrainDataError(f"{what} not found: {path}")


class SentenceTokenizer:
    """Lines of raw text to sentences of tokens.

    ``mode="spacy"``: ``spacy.blank(lang)``'s tokenizer (the tokens the spaCy component later sees) and the
    rule-based sentencizer; whitespace tokens are dropped. ``mode="whitespace"``: the line is already
    tokenized (e.g. the Penn Treebank LM text) and is one sentence.
    """

    def __init__(self, lang: str = "en", mode: str = "spacy", batch_size: int = 256) -> None:
        if mode not in ("spacy", "whitespace"):
            raise PretrainDataError(f"tokenizer must be 'spacy' or 'whitespace', found {mode!r}")
        self.lang = lang
        self.mode = mode
        self.batch_size = batch_size
        self._nlp = None
        if mode == "spacy":
            import spacy

            try:
                self._nlp = spacy.blank(lang)
            except ImportError as err:
                raise PretrainDataError(f"spaCy has no language {lang!r}: {err}") from None
            self._nlp.add_pipe("sentencizer")

    def __call__(self, lines: Iterable[str]) -> Iterator[list[str]]:
        lines = (line.strip() for line in lines)
        lines = (line for line in lines if line)
        if self._nlp is None:
            for line in lines:
                yield line.split()
            return
        for doc in self._nlp.pipe(lines, batch_size=self.batch_size):
            for sentence in doc.sents:
                tokens = [token.text for token in sentence if not token.is_space]
                if tokens:
                    yield tokens


ENCODING_HINT = "; pass --encoding-errors replace to read such bytes as U+FFFD"


def read_lines(files: list[Path], encoding_errors: EncodingErrors = "strict") -> Iterator[str]:
    """The lines of every file (LF, CRLF or CR line ends; a UTF-8 BOM dropped).

    ``encoding_errors="strict"``: a byte that is not UTF-8 raises ``PretrainDataError`` naming the file,
    line and byte; ``"replace"`` reads it as U+FFFD.
    """
    for file in files:
        try:
            yield from iter_text_lines(file, encoding_errors, hint=ENCODING_HINT)
        except OSError as err:
            raise PretrainDataError(f"cannot read {file}: {err}") from None
        except TextEncodingError as err:
            raise PretrainDataError(str(err)) from None


def _fingerprint(files: list[Path], tokenizer: SentenceTokenizer, encoding_errors: str = "strict") -> str:
    # Shards read with "replace" may hold U+FFFD for bad bytes: a strict run must not reuse them.
    mode = f"{tokenizer.mode}:{tokenizer.lang}" + (":replace" if encoding_errors == "replace" else "")
    digest = hashlib.sha256(mode.encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class TokenizedCorpus:
    """Shards of tokenized sentences (one per line, tokens joined by a space) and their word counts."""

    shards: tuple[Path, ...]
    n_sentences: int
    n_tokens: int
    counts: dict[str, int]

    def iter_sentences(self) -> Iterator[list[str]]:
        for shard in self.shards:
            yield from read_shard(shard)


def read_shard(shard: Path) -> list[list[str]]:
    with shard.open(encoding="utf-8") as handle:
        return [line.split(" ") for line in handle.read().split("\n") if line]


def tokenize_corpus(
    source: str | Path,
    directory: str | Path,
    tokenizer: SentenceTokenizer,
    what: str = "training text",
    shard_sentences: int = DEFAULT_SHARD_SENTENCES,
    progress: bool = False,
    encoding_errors: EncodingErrors = "strict",
) -> TokenizedCorpus:
    """Tokenize ``source`` into shards under ``directory`` once; later calls reuse them.

    The manifest (``manifest.json``) records the source files' sizes and times; a change re-tokenizes.
    Raises ``PretrainDataError`` if the text is missing, not UTF-8 (unless ``encoding_errors="replace"``)
    or holds no tokens.
    """
    files = text_files(source, what)
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    fingerprint = _fingerprint(files, tokenizer, encoding_errors)
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("fingerprint") == fingerprint:
            return TokenizedCorpus(
                tuple(directory / name for name in manifest["shards"]),
                manifest["n_sentences"],
                manifest["n_tokens"],
                manifest["counts"],
            )
    directory.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    shards: list[str] = []
    n_sentences = n_tokens = 0
    buffer: list[str] = []

    def flush() -> None:
        name = f"shard-{len(shards):05d}.txt"
        tmp = directory / f".{name}.tmp"
        tmp.write_text("\n".join(buffer) + "\n", encoding="utf-8")
        os.replace(tmp, directory / name)
        shards.append(name)
        buffer.clear()

    sentences = tokenizer(read_lines(files, encoding_errors))
    if progress:
        from tqdm import tqdm

        sentences = tqdm(sentences, desc=f"tokenizing {what}", unit=" sentences", mininterval=2.0)
    for tokens in sentences:
        counts.update(tokens)
        n_sentences += 1
        n_tokens += len(tokens)
        buffer.append(" ".join(tokens))
        if len(buffer) >= shard_sentences:
            flush()
    if buffer:
        flush()
    if n_tokens == 0:
        raise PretrainDataError(f"{what} {source} holds no tokens (empty or whitespace-only)")
    manifest = {
        "fingerprint": fingerprint,
        "shards": shards,
        "n_sentences": n_sentences,
        "n_tokens": n_tokens,
        "counts": dict(counts),
    }
    tmp = directory / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest), encoding="utf-8")
    os.replace(tmp, manifest_path)
    return TokenizedCorpus(tuple(directory / name for name in shards), n_sentences, n_tokens, dict(counts))


class Vocabulary:
    """Word ids for the softmax: ``<S>``, ``</S>``, ``<UNK>`` first, then words by descending frequency.

    The frequency order is what the log-uniform (Zipfian) sampler of the sampled softmax assumes.
    Stored as bilm-tf's vocabulary file: one token per line.
    """

    def __init__(self, tokens: list[str]) -> None:
        if list(tokens[:3]) != list(SPECIAL_TOKENS):
            raise PretrainDataError(f"a vocabulary must start with {SPECIAL_TOKENS}, found {tokens[:3]}")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise PretrainDataError("the vocabulary lists a token twice")

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_counts(cls, counts: dict[str, int], max_size: int | None = None, min_count: int = 1) -> Vocabulary:
        """Most frequent words first (ties in string order, so the result is deterministic)."""
        words = [(-n, w) for w, n in counts.items() if n >= min_count and w not in SPECIAL_TOKENS]
        words.sort()
        if max_size is not None:
            words = words[: max(0, max_size - len(SPECIAL_TOKENS))]
        return cls([*SPECIAL_TOKENS, *(w for _, w in words)])

    def ids(self, tokens: Iterable[str]) -> list[int]:
        get = self.index.get
        return [get(token, UNK_ID) for token in tokens]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("\n".join(self.tokens) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise PretrainDataError(f"vocabulary file not found: {path}")
        return cls([line for line in path.read_text(encoding="utf-8").split("\n") if line])


class SentenceStream:
    """An endless, seeded, resumable stream of sentences over the shards, for one of ``world_size`` ranks.

    Epoch ``e`` visits the shards in the order of a permutation drawn from ``(seed, e)``; rank ``r`` takes
    sentences ``r, r + world_size, ...`` of each shard, in an order drawn from ``(seed, e, shard)``.
    """

    def __init__(
        self, shards: tuple[Path, ...], seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> None:
        if not shards:
            raise PretrainDataError("no shards to stream")
        self.shards = shards
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.shard_position = 0
        self.sentence_position = 0
        self._shard_order = self._order_shards()
        self._sentences: list[list[str]] | None = None

    def _order_shards(self) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.shards)))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards)).tolist()

    def _load_shard(self) -> list[list[str]]:
        shard = self._shard_order[self.shard_position]
        sentences = read_shard(self.shards[shard])[self.rank :: self.world_size]
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, shard]).permutation(len(sentences))
            sentences = [sentences[i] for i in order]
        return sentences

    def __next__(self) -> list[str]:
        empty_shards = 0
        while True:
            if self._sentences is None:
                self._sentences = self._load_shard()
            if self.sentence_position < len(self._sentences):
                sentence = self._sentences[self.sentence_position]
                self.sentence_position += 1
                return sentence
            if not self._sentences:
                empty_shards += 1
                if empty_shards > len(self.shards):
                    raise PretrainDataError(
                        f"rank {self.rank} of {self.world_size} gets no sentences: the corpus is too small"
                    )
            self._sentences = None
            self.sentence_position = 0
            self.shard_position += 1
            if self.shard_position == len(self.shards):
                self.shard_position = 0
                self.epoch += 1
                self._shard_order = self._order_shards()

    def __iter__(self) -> SentenceStream:
        return self

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "shard_position": self.shard_position, "sentence_position": self.sentence_position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]
        self.shard_position = state["shard_position"]
        self.sentence_position = state["sentence_position"]
        self._shard_order = self._order_shards()
        self._sentences = None


def sentence_pairs(tokens: list[str], vocab: Vocabulary, reverse: bool) -> tuple[list[str], list[int]]:
    """Input tokens and target ids of one sentence: ``<S> w.. </S>`` (reversed if ``reverse``) shifted by one."""
    words = [BOS_TOKEN, *tokens, EOS_TOKEN]
    if reverse:
        words.reverse()
    return words[:-1], vocab.ids(words[1:])


def char_ids_of(tokens: list[str]) -> np.ndarray:
    """``(len(tokens), 50)`` int64 character ids; an empty string is a padding token (all zeros)."""
    out = np.zeros((len(tokens), MAX_WORD_LENGTH), dtype=np.int64)
    for i, token in enumerate(tokens):
        if token:
            out[i] = word_to_char_ids(token)
    return out


class LMBatch:
    """One direction's batch: ``char_ids (B, T, 50)`` and ``targets (B, T)`` (``IGNORE_TARGET`` = none).

    ``reset (B,)`` bool, if given: rows that start a fresh sentence here and must start from a zero state.
    """

    def __init__(self, char_ids: torch.Tensor, targets: torch.Tensor, reset: torch.Tensor | None = None) -> None:
        self.char_ids = char_ids
        self.targets = targets
        self.reset = reset

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE_TARGET).sum())


class LMBatcher:
    """Packs a sentence stream into ``batch_size`` rows of ``unroll_steps`` (input, target) pairs.

    A sentence left unfinished at the end of a window continues in the same row of the next batch.
    With ``reset_probability`` p, each row of each batch instead drops what is left of its sentence with
    probability p, starts a new sentence at the window start and is marked in ``LMBatch.reset``, so the
    model also learns to start from a zero state, as it does in use (each sentence or doc from zero).
    """

    def __init__(
        self,
        stream: SentenceStream,
        vocab: Vocabulary,
        batch_size: int,
        unroll_steps: int,
        reverse: bool,
        reset_probability: float = 0.0,
    ) -> None:
        self.stream = stream
        self.vocab = vocab
        self.batch_size = batch_size
        self.unroll_steps = unroll_steps
        self.reverse = reverse
        self.reset_probability = reset_probability
        self.batches_made = 0
        # Per row: the unconsumed input tokens and target ids of its current sentence.
        self.pending: list[tuple[list[str], list[int]]] = [([], []) for _ in range(batch_size)]

    def _resets(self) -> np.ndarray:
        if self.reset_probability <= 0.0:
            return np.zeros(self.batch_size, dtype=bool)
        rng = np.random.default_rng([self.stream.seed, self.stream.rank, self.batches_made])
        return rng.random(self.batch_size) < self.reset_probability

    def __next__(self) -> LMBatch:
        inputs: list[str] = []
        targets: list[int] = []
        resets = self._resets()
        self.batches_made += 1
        for row in range(self.batch_size):
            row_inputs: list[str] = []
            row_targets: list[int] = []
            pending_inputs, pending_targets = self.pending[row]
            if resets[row]:
                pending_inputs, pending_targets = [], []
            while len(row_inputs) < self.unroll_steps:
                if not pending_inputs:
                    pending_inputs, pending_targets = sentence_pairs(next(self.stream), self.vocab, self.reverse)
                take = self.unroll_steps - len(row_inputs)
                row_inputs += pending_inputs[:take]
                row_targets += pending_targets[:take]
                pending_inputs, pending_targets = pending_inputs[take:], pending_targets[take:]
            self.pending[row] = (pending_inputs, pending_targets)
            inputs += row_inputs
            targets += row_targets
        shape = (self.batch_size, self.unroll_steps)
        char_ids = torch.from_numpy(char_ids_of(inputs)).view(*shape, MAX_WORD_LENGTH)
        targets_tensor = torch.tensor(targets, dtype=torch.long).view(shape)
        return LMBatch(char_ids, targets_tensor, torch.from_numpy(resets))

    def __iter__(self) -> LMBatcher:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream.state_dict(),
            "pending": [list(map(list, p)) for p in self.pending],
            "batches_made": self.batches_made,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.batches_made = state.get("batches_made", 0)
        self.pending = [(list(inputs), list(targets)) for inputs, targets in state["pending"]]


def evaluation_batches(
    sentences: Iterable[list[str]],
    vocab: Vocabulary,
    batch_size: int,
    unroll_steps: int,
    reverse: bool,
    max_tokens: int | None = None,
) -> Iterator[LMBatch]:
    """Deterministic batches over (at most ``max_tokens`` targets of) held-out text, in order.

    The sentences are dealt out in order to ``batch_size`` contiguous rows of about equal length, each row
    starting at a sentence start (from a zero state, as the model is used later), and read in windows of
    ``unroll_steps`` with the state carried; short rows are padded and the padding's targets ignored.
    """
    pieces: list[tuple[list[str], list[int]]] = []
    n_targets = 0
    for tokens in sentences:
        sentence_inputs, sentence_targets = sentence_pairs(tokens, vocab, reverse)
        if max_tokens is not None and n_targets + len(sentence_targets) > max_tokens:
            keep = max_tokens - n_targets
            sentence_inputs, sentence_targets = sentence_inputs[:keep], sentence_targets[:keep]
        if sentence_targets:
            pieces.append((sentence_inputs, sentence_targets))
            n_targets += len(sentence_targets)
        if max_tokens is not None and n_targets >= max_tokens:
            break
    if not pieces:
        return
    batch_size = min(batch_size, len(pieces))
    row_inputs: list[list[str]] = [[] for _ in range(batch_size)]
    row_targets: list[list[int]] = [[] for _ in range(batch_size)]
    done = 0
    for piece_inputs, piece_targets in pieces:
        # Contiguous rows: move to the next row once this one holds its share of the targets.
        row = min(batch_size - 1, done * batch_size // n_targets)
        row_inputs[row] += piece_inputs
        row_targets[row] += piece_targets
        done += len(piece_targets)
    longest = max(len(targets) for targets in row_targets)
    n_windows = -(-longest // unroll_steps)
    padded = n_windows * unroll_steps
    targets_array = np.full((batch_size, padded), IGNORE_TARGET, dtype=np.int64)
    for row in range(batch_size):
        targets_array[row, : len(row_targets[row])] = row_targets[row]
        row_inputs[row] += [""] * (padded - len(row_inputs[row]))
    for window in range(n_windows):
        cut = slice(window * unroll_steps, (window + 1) * unroll_steps)
        window_inputs = [token for row in row_inputs for token in row[cut]]
        char_ids = torch.from_numpy(char_ids_of(window_inputs)).view(batch_size, unroll_steps, MAX_WORD_LENGTH)
        yield LMBatch(char_ids, torch.from_numpy(np.ascontiguousarray(targets_array[:, cut])))
