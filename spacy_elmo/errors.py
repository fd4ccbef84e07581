"""Errors raised for bad ELMo files and settings.

Every error names what is wrong and where (file, dataset or setting), so that
no bare ``KeyError`` or h5py traceback reaches the user.
"""

from __future__ import annotations


class ElmoError(ValueError):
    """Base class of all spacy_elmo errors about user input."""


class ElmoOptionsError(ElmoError):
    """An ``options.json`` file is missing, unreadable or holds unsupported values."""


class ElmoWeightsError(ElmoError):
    """A weight file is missing, unreadable, or disagrees with its options."""


class ElmoDownloadError(ElmoWeightsError):
    """A download failed: ``url`` names what was fetched, ``status`` the HTTP status (None if there was none)."""

    def __init__(self, message: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ElmoPerformanceWarning(UserWarning):
    """A setting that works but is known to be slow on this machine."""
