"""Errors the CLI reports as one clear line (no traceback) and exit code 2."""


class FacesketchError(Exception):
    """Base class: a problem with the user's input, files or environment, not a bug."""


class ConfigError(FacesketchError):
    """The configuration is invalid; the message names the key."""


class DataError(FacesketchError):
    """A data file is missing, unreadable or inconsistent; the message names it."""


class UnsafeArchiveError(DataError):
    """An archive entry would land outside the extraction folder or is a link."""


class WeightsError(FacesketchError):
    """A pretrained weights file is missing, corrupt or of the wrong kind."""
