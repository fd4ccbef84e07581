"""Tokens to ELMo character ids (bilm-tf's ``UnicodeCharsVocabulary`` scheme).

Each token becomes 50 ids: begin-of-word, up to 48 UTF-8 bytes, end-of-word,
then in-token padding, all shifted by +1 so that id 0 is free for padding
*tokens* (positions past the end of a sentence).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

MAX_WORD_LENGTH = 50
MAX_WORD_BYTES = MAX_WORD_LENGTH - 2

# The raw alphabet: bytes 0..255, then these markers; all ids are stored +1.
BOS_CHAR = 256
EOS_CHAR = 257
BOW_CHAR = 258
EOW_CHAR = 259
PAD_CHAR = 260
N_RAW_CHARACTERS = 261
# Rows of the character embedding including the all-zero row for id 0.
N_CHARACTER_IDS = N_RAW_CHARACTERS + 1

BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"


def _marker_ids(marker: int) -> np.ndarray:
    ids = np.full(MAX_WORD_LENGTH, PAD_CHAR, dtype=np.int64)
    ids[0], ids[1], ids[2] = BOW_CHAR, marker, EOW_CHAR
    return ids + 1


BOS_IDS = _marker_ids(BOS_CHAR)
EOS_IDS = _marker_ids(EOS_CHAR)
BOS_IDS.setflags(write=False)
EOS_IDS.setflags(write=False)


@lru_cache(maxsize=200_000)
def word_to_char_ids(word: str) -> np.ndarray:
    """The 50 character ids of one token, shape ``(50,)``, int64, read-only.

    Bytes beyond the 48th are cut (even inside a multi-byte character); text
    that cannot be UTF-8 encoded (lone surrogates) is dropped, as in bilm-tf.
    The literal strings ``<S>`` and ``</S>`` map to the sentence markers.
    """
    if word == BOS_TOKEN:
        return BOS_IDS
    if word == EOS_TOKEN:
        return EOS_IDS
    encoded = word.encode("utf-8", "ignore")[:MAX_WORD_BYTES]
    ids = np.full(MAX_WORD_LENGTH, PAD_CHAR + 1, dtype=np.int64)
    ids[0] = BOW_CHAR + 1
    ids[1 : len(encoded) + 1] = np.frombuffer(encoded, dtype=np.uint8).astype(np.int64) + 1
    ids[len(encoded) + 1] = EOW_CHAR + 1
    ids.setflags(write=False)
    return ids


def batch_to_char_ids(sentences: Sequence[Sequence[str]]) -> torch.Tensor:
    """Character ids of a batch of tokenized sentences, without boundary tokens.

    Returns a LongTensor of shape ``(batch, max_len, 50)``; positions past a
    sentence's end are all zeros. ``max_len`` is 0 when every sentence is empty.
    """
    max_len = max((len(s) for s in sentences), default=0)
    ids = np.zeros((len(sentences), max_len, MAX_WORD_LENGTH), dtype=np.int64)
    for row, sentence in enumerate(sentences):
        for col, token in enumerate(sentence):
            ids[row, col] = word_to_char_ids(token)
    return torch.from_numpy(ids)
