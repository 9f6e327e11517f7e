"""compat's own error types: every one names the file, field or cell it is about."""

from __future__ import annotations


class CompatError(Exception):
    """Base for errors compat reports to the user as one clear message (no traceback)."""


class MatrixError(CompatError):
    """One or more problems in a matrix file; ``problems`` holds each as 'file:line: field: message'."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class RegistryError(CompatError):
    """The package registry could not be read, or does not have what the matrix asks for."""


class EnvironmentBuildError(CompatError):
    """An environment could not be resolved or installed; the message carries the installer's own words."""
