"""Exception types. Every message says what is wrong, where (file, row, key) and how to fix it."""

from __future__ import annotations


class EvalkitError(Exception):
    """Base class for errors a user can act on (bad data, bad paths, bad configuration)."""


class DataError(EvalkitError):
    """A dataset file is missing, unreadable or malformed."""


class ModelLoadError(EvalkitError):
    """A model or adapter cannot be loaded (missing path, wrong base, no network, no CUDA)."""


class ConfigError(EvalkitError):
    """A configuration value (option, config file key) is invalid."""


class CacheError(EvalkitError):
    """The result cache cannot be used (a folder, under a file, read-only, another program's database)."""
