"""Typed errors. Every message says what was expected, what was received, and what to do.

The CLI turns any :class:`MedannotError` into a one-line message and exit code 2.
"""

from __future__ import annotations

from pathlib import Path


class MedannotError(Exception):
    """Base class of every error medannot raises on purpose.

    Args:
        message: What went wrong and what to do about it.
        path: The file or folder concerned, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputError(MedannotError, ValueError):
    """An input file or value is unreadable, truncated, empty or of the wrong kind."""


class GeometryError(InputError):
    """Image geometry is inconsistent: grids differ, slices missing or duplicated, orientation mixed."""


class ConfigError(MedannotError, ValueError):
    """A configuration file or option is invalid."""


class ModelError(MedannotError, LookupError):
    """A model name or bundle is unknown, incomplete or does not match the input."""


class OutputError(MedannotError, OSError):
    """An output could not be written."""


class PacsError(MedannotError, ConnectionError):
    """A PACS (DICOMweb server) is unreachable, times out, refuses access or answers with an error."""
