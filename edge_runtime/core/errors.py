"""Errors a user can act on.

Every error the toolkit raises on purpose is a :class:`FerError`; its message
says what was wrong, the offending value and how to fix it. The command-line
entry points turn it into one line on stderr and a non-zero exit code.
"""


class FerError(Exception):
    """A problem the user can fix: bad input, a missing file, a failed check."""


class DataError(FerError):
    """The dataset (CSV or image folders) is missing, malformed or incomplete."""


class ModelError(FerError):
    """A model file is missing, unreadable or does not fit the expected contract."""


class ConfigError(FerError):
    """A configuration value is invalid."""
