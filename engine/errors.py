"""Typed engine errors: a caller (CLI, API, tests) can tell what went wrong without a traceback.

Every error a job raises becomes status 1 and one line on the job's stderr; Python callers
that run a job with `check=True` get the typed exception itself.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every engine error; `status` is the exit status a job reports for it."""

    status = 1


class NoSuchJob(EngineError):
    """A job was named that no handler is registered for (like a shell's 'command not found')."""

    status = 127

    def __init__(self, name: str) -> None:
        super().__init__(f"no such job: {name}")
        self.name = name


class UsageError(EngineError):
    """The job's arguments are wrong (missing, extra, malformed)."""

    status = 2


class NoSuchImage(EngineError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no such image: {ref}")
        self.ref = ref


class NoSuchContainer(EngineError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no such container: {ref}")
        self.ref = ref


class NoSuchExec(EngineError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no such exec instance: {ref}")
        self.ref = ref


class Conflict(EngineError):
    """The request contradicts the current state (a name taken, an ambiguous prefix...)."""


class InvalidReference(EngineError):
    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"invalid reference {ref!r}: {reason}")
        self.ref = ref
        self.reason = reason


class ImageInUse(Conflict):
    """rmi of an image that a container or a child image still needs."""


class InvalidArchive(EngineError):
    """An image archive is malformed, incomplete, or fails digest verification."""


class EngineLocked(EngineError):
    """Another engine process holds the root's lock."""

    def __init__(self, root: str, detail: str = "") -> None:
        msg = f"engine root {root} is in use by another strata process"
        super().__init__(msg + (f" ({detail})" if detail else ""))
        self.root = root


class NoSpace(EngineError):
    """A filesystem ran out of space, inodes or quota; `mountpoint` names it."""

    def __init__(self, message: str, mountpoint: str) -> None:
        super().__init__(message)
        self.mountpoint = mountpoint


class ExecError(EngineError):
    """The execdriver could not do what was asked; the message says what and why."""

    status = 125


class RuntimeNotSupported(ExecError):
    """The chosen execdriver or OCI runtime cannot run on this host; `reason` says why."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} cannot be used here: {reason}")
        self.what = what
        self.reason = reason


class ContainerStartError(EngineError):
    """The container's command could not be started; `status` is Docker's (126 or 127)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RegistryError(EngineError):
    """The registry refused a request or answered with something we cannot use."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class DigestMismatch(RegistryError):
    """A manifest or blob the registry sent does not hash to the digest it was asked by."""


class NoSuchVolume(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such volume: {name}")
        self.name = name


class RefusedOption(UsageError):
    """A create/run option strata cannot honour or a value it refuses; Docker's status 125."""

    status = 125


class NoSuchNetwork(EngineError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no such network: {ref}")
        self.ref = ref


class NetworkError(EngineError):
    """The networkdriver could not set up or tear down a network (netlink, nftables)."""
