"""Errors of the execdrivers: a container process that cannot be started or controlled."""

from __future__ import annotations

from ..errors import EngineError


class ExecError(EngineError):
    """The execdriver could not do what was asked; the message says what and why."""

    status = 125


class RuntimeNotSupported(ExecError):
    """The chosen execdriver or OCI runtime cannot run on this host; `reason` says why."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} cannot be used here: {reason}")
        self.what = what
        self.reason = reason
