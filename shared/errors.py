"""Exceptions raised by the zoo. Every message names the problem and the fix."""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""


class UnknownModelError(ZooError, LookupError):
    """A model name that is not registered."""


class InvalidConfigError(ZooError, TypeError):
    """A keyword argument that the model's builder does not accept."""


class InputError(ZooError, ValueError):
    """A model input with the wrong shape or dtype."""


class CheckpointError(ZooError):
    """A checkpoint that cannot be read: truncated, corrupted or of an unknown format."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle checkpoint that would need to run code to load; refused, nothing in it ran."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys or shapes do not match the model after key mapping."""

    def __init__(self, message: str, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


class InvalidConfigFileError(InvalidConfigError, CheckpointError):
    """A ``config.json`` that is not valid JSON or does not follow the zoo's schema (a wrong type,
    an out-of-range value, an unknown version). Both a config error and a checkpoint error, so
    either ``except`` clause catches it."""


class WeightsIntegrityError(CheckpointError):
    """A weights file whose sha256 does not match the one registered for its source."""


class CheckpointValuesError(CheckpointError):
    """Weights the model cannot compute with: NaN/Inf, or integers where the model has floats."""


class PretrainedNotFoundError(ZooError, FileNotFoundError):
    """No weights could be found at any of the places the zoo looked."""


class DatasetError(ZooError, ValueError):
    """Data on disk or in memory that cannot be used: malformed, inconsistent or impossible."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that is empty, truncated or damaged."""


class ForeignCheckpointError(CheckpointError):
    """A file that is not a checkpoint of the kind asked for: random bytes, JSON, a zip or a pickle
    that torch.save did not write, a state dict where a training checkpoint was expected."""


class CheckpointFormatError(CheckpointError):
    """A checkpoint whose format number is unknown or newer than this code reads."""


class WriteError(ZooError, OSError):
    """A file or directory that could not be written: read-only, not permitted, or no space left.
    ``errno`` is the cause's (ENOSPC, EROFS, EACCES, ...)."""
