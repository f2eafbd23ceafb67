"""The exceptions raq raises. The CLI turns each into one line and a non-zero exit."""

from __future__ import annotations


class RaqError(Exception):
    """Base class of every error raq reports to its user."""


class ConfigError(RaqError):
    """A configuration file or value is invalid (the message names the file and key)."""


class DatasetError(RaqError):
    """Questions could not be loaded (the message names the source and the field or line)."""


class ModelFileError(RaqError):
    """A GGUF file is missing, corrupt, or could not be fetched."""


class BackendError(RaqError):
    """A generation backend or server failed."""


class EndpointError(BackendError):
    """One of a served backend's base URLs failed: ``index``, its place in the list."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class JudgeError(RaqError):
    """The judge endpoint could not be reached or used."""


class RunDirError(RaqError):
    """A run directory is missing, incomplete, or does not match the configuration."""


def redact(text: str, secret: str) -> str:
    """``text`` with ``secret`` (an API key) masked, also where only its start is echoed."""
    if len(secret) >= 8 and secret != "not-needed":
        text = text.replace(secret, "***").replace(secret[:8], "***")
    return text


class JudgeCheckFailed(RaqError):
    """The judge's accuracy on judge-check's known-order answers is below ``judge.min_accuracy``."""
