"""Errors of the data stage; each message names the file and line, or the source, that caused it."""


class DataError(ValueError):
    """Input data cannot be prepared (bad file, bad row, nothing left to train on)."""


class LicenseBlocked(DataError):
    """A source's license is not allowed by the configured policy."""


class ValidationFailed(DataError):
    """A great-expectations expectation failed on the prepared rows."""
