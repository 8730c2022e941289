"""How a deletion and an opaque directory are written down: the one definition of each form.

A layer tar (OCI image layer format, as Docker writes it) says "deleted" with an empty
entry `.wh.<name>` and "opaque" (hide everything the layers below hold here) with
`.wh..wh..opq`. A driver's own layer directory stores the same facts in its union
filesystem's form:

- aufs keeps those `.wh.` files as they are; any other `.wh..wh.<x>` name is aufs'
  bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`, copy-up temporaries) and never content;
- overlayfs uses a character device 0/0 for a whiteout and the xattr
  `trusted.overlay.opaque=y` (`user.overlay.opaque` on unprivileged mounts) for an opaque
  directory, and keeps its own bookkeeping in `trusted.overlay.*` / `user.overlay.*`;
- a full-filesystem layer (vfs, btrfs, devmapper, a mounted union) stores no marks at
  all: a whiteout is applied by deleting.

Each form is a `WhiteoutFormat` object (`DELETE`, `AUFS`, `OVERLAY`); the archive code
asks it what to do instead of branching on a format name, so a new form is one class.
"""

from __future__ import annotations

import errno
import os
import stat
from abc import ABC, abstractmethod
from typing import ClassVar, Protocol

PREFIX = ".wh."
META_PREFIX = ".wh..wh."
OPAQUE = ".wh..wh..opq"

PREFIX_B = PREFIX.encode()
META_PREFIX_B = META_PREFIX.encode()
OPAQUE_B = OPAQUE.encode()

# aufs' whiteouts and opaque markers are empty regular files with this mode
MARKER_MODE = 0o600

OVERLAY_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


def whiteout_path(path: str) -> str:
    """The OCI whiteout entry that deletes `path` ("a/b" -> "a/.wh.b")."""
    head, sep, tail = path.rpartition("/")
    return f"{head}{sep}{PREFIX}{tail}"


def is_whiteout_name(name: str) -> bool:
    """Whether a layer tar entry's last component is one of the `.wh.` names (a
    whiteout, the opaque marker or aufs bookkeeping): never a file of the layer."""
    return name.startswith(PREFIX)


def is_bookkeeping(name: str) -> bool:
    """aufs' own `.wh..wh.<x>` names other than the opaque marker: never layer content."""
    return name.startswith(META_PREFIX) and name != OPAQUE


def target(name: str) -> str | None:
    """The name a `.wh.<name>` entry deletes; None for anything else (the opaque marker,
    bookkeeping, an ordinary name)."""
    if not name.startswith(PREFIX) or name.startswith(META_PREFIX):
        return None
    return name[len(PREFIX) :]


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """overlayfs' whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def has_overlay_opaque_xattr(path: str) -> bool:
    """Whether directory `path` carries overlayfs' opaque mark."""
    for key in OVERLAY_OPAQUE_XATTRS:
        try:
            if os.getxattr(path, key, follow_symlinks=False) == b"y":
                return True
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                raise
    return False


class WhiteoutSink(Protocol):
    """What applying a layer tar offers a format to record one `.wh.` entry with; every
    call is journaled by the applier, so a failed apply undoes it."""

    def delete(self, parent: str, name: str) -> None:
        """Remove `name` from `parent` if both exist."""

    def clear(self, parent: str, name: str) -> None:
        """Make sure `parent` exists and holds no `name`."""

    def write_marker(self, parent: str, marker: str) -> None:
        """Write the tar entry itself, as an empty file named `marker`, into `parent`."""

    def make_device_whiteout(self, parent: str, name: str) -> None:
        """Create a character device 0/0 named `name` in `parent` (owned as the entry)."""

    def set_opaque_xattr(self, parent: str, key: str) -> None:
        """Set xattr `key` = "y" on directory `parent`."""


class WhiteoutFormat(ABC):
    """One way a layer directory stores whiteouts and opaque directories."""

    name: ClassVar[str]
    # xattrs that are the format's bookkeeping, never exported nor compared as content
    private_xattrs: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return f"<whiteout format {self.name}>"

    # -- applying a layer tar --------------------------------------------------------

    @abstractmethod
    def apply_whiteout(self, sink: WhiteoutSink, parent: str, name: str, marker: str) -> None:
        """Record that the tar entry `parent/marker` (`.wh.<name>`) deletes `name`."""

    def apply_opaque(self, sink: WhiteoutSink, parent: str, marker: str) -> None:  # noqa: B027 -- most store nothing
        """Record that `parent` is opaque (its old entries are already hidden)."""

    # -- reading a layer directory ---------------------------------------------------

    @abstractmethod
    def hides(self, name: str, st: os.stat_result) -> str | None:
        """The name directory entry `name` deletes when it is a stored whiteout, else None."""

    def skipped(self, name: str) -> bool:
        """Whether the entry is the format's own bookkeeping (neither content nor a mark)."""
        return False

    @abstractmethod
    def is_opaque(self, path: str) -> bool:
        """Whether directory `path` hides everything below it."""

    def marks_are_entries(self) -> bool:
        """Whether the stored marks are `.wh.` files that export writes as they are
        (aufs); otherwise export writes a synthesized `.wh.` entry for each (overlay)."""
        return False


class _Delete(WhiteoutFormat):
    """A full-filesystem layer: a whiteout deletes, nothing is stored."""

    name = "delete"

    def apply_whiteout(self, sink: WhiteoutSink, parent: str, name: str, marker: str) -> None:
        sink.delete(parent, name)

    def hides(self, name: str, st: os.stat_result) -> str | None:
        return None

    def is_opaque(self, path: str) -> bool:
        return False


class _Aufs(WhiteoutFormat):
    """aufs branches: the `.wh.` files of the tar, kept as they are."""

    name = "aufs"

    def apply_whiteout(self, sink: WhiteoutSink, parent: str, name: str, marker: str) -> None:
        sink.clear(parent, name)
        sink.write_marker(parent, marker)

    def apply_opaque(self, sink: WhiteoutSink, parent: str, marker: str) -> None:
        sink.write_marker(parent, marker)

    def hides(self, name: str, st: os.stat_result) -> str | None:
        return target(name)

    def skipped(self, name: str) -> bool:
        return is_bookkeeping(name)

    def is_opaque(self, path: str) -> bool:
        return os.path.lexists(os.path.join(path, OPAQUE))

    def marks_are_entries(self) -> bool:
        return True


class _Overlay(WhiteoutFormat):
    """overlayfs upper directories: 0/0 devices and the opaque xattr."""

    name = "overlay"
    private_xattrs = OVERLAY_XATTR_PREFIXES

    def apply_whiteout(self, sink: WhiteoutSink, parent: str, name: str, marker: str) -> None:
        sink.clear(parent, name)
        sink.make_device_whiteout(parent, name)

    def apply_opaque(self, sink: WhiteoutSink, parent: str, marker: str) -> None:
        sink.set_opaque_xattr(parent, OVERLAY_OPAQUE_XATTRS[0])

    def hides(self, name: str, st: os.stat_result) -> str | None:
        return name if is_overlay_whiteout(st) else None

    def is_opaque(self, path: str) -> bool:
        return has_overlay_opaque_xattr(path)


DELETE: WhiteoutFormat = _Delete()
AUFS: WhiteoutFormat = _Aufs()
OVERLAY: WhiteoutFormat = _Overlay()
FORMATS: dict[str, WhiteoutFormat] = {f.name: f for f in (DELETE, OVERLAY, AUFS)}


def format_of(value: str | WhiteoutFormat) -> WhiteoutFormat:
    """The format object for a format or its name ("delete", "overlay", "aufs")."""
    if isinstance(value, WhiteoutFormat):
        return value
    try:
        return FORMATS[value]
    except (KeyError, TypeError):
        raise ValueError(f"whiteouts must be one of {tuple(FORMATS)}, not {value!r}") from None
