"""Apply a layer tar to a directory: OCI layer rules, confined to the root, all or nothing."""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
from collections.abc import Callable
from typing import IO

from .. import whiteouts as wh
from ..errors import DriverStateError, UnsafeArchive
from . import tarread
from .journal import JOURNAL_PREFIX, Journal
from .resolve import PATH_MAX, DirCache, clean_name, split
from .tarread import Entry, TarReader

log = logging.getLogger(__name__)

WHITEOUT_MODES = tuple(wh.FORMATS)

# errors that mean "this archive does not fit this tree" rather than "the disk failed"
_ARCHIVE_ERRNOS = {
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EXDEV,
    errno.EEXIST,
    errno.EPERM,
    errno.EINVAL,
    errno.EMLINK,
    errno.ENOTEMPTY,
}
_O_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


CopyUp = Callable[[str], list[str]]


def apply_layer(
    root: str,
    stream: IO[bytes],
    *,
    whiteouts: str | wh.WhiteoutFormat = wh.DELETE,
    allow_devices: bool = True,
    copy_up: CopyUp | None = None,
    owner: tuple[int, int] | None = None,
) -> int:
    """Extract the uncompressed layer tar `stream` into `root`; returns the bytes of
    regular-file data written (hard links not counted).

    `whiteouts` (a `graphdrivers.whiteouts` format, or its name) says how deletions are
    stored: `DELETE` applies them (a full filesystem view), `OVERLAY` stores them as
    overlayfs does in an upper directory, `AUFS` keeps the `.wh.` entries as files. Nothing is ever
    written outside `root`. On any error -- `UnsafeArchive` for a hostile or malformed
    archive, `OSError` for the disk -- `root` is left exactly as it was.

    `copy_up(target)` lets a union driver apply into a layer's own directory a hard link
    whose target lives in a lower layer (what a naive diff of a union produces): it copies
    the target up into `root`, as the union would on link(2), and returns the paths it made
    (relative to `root`, parents first), which the journal then undoes with the rest.

    `owner` (uid, gid) owns every entry instead of its header's ids: `docker cp` gives what
    it copies into a container to the container's root unless asked to keep the ids (`-a`).
    """
    form = wh.format_of(whiteouts)
    buffered = _buffered(stream)
    cache = DirCache(root)
    try:
        _refuse_interrupted(root, cache.root_fd)
        journal = Journal(cache)
        applier = _Applier(cache, journal, form, allow_devices, copy_up)
        try:
            reader = TarReader(buffered)
            for entry in reader.entries():
                cache.release()  # between entries nobody holds a cached fd
                if owner is not None:
                    entry.uid, entry.gid = owner
                try:
                    applier.apply(entry, reader)
                except OSError as exc:
                    if exc.errno in _ARCHIVE_ERRNOS:
                        reason = f"{exc.strerror} ({_describe(exc)})"
                        raise UnsafeArchive(f"cannot apply {_show(entry.name)}: {reason}") from exc
                    raise
            applier.finish()  # while the journal can still undo everything
            journal.commit()
            applier.finish_root()
        except BaseException as exc:
            log.debug("applying a layer to %s failed (%s); undoing it", root, exc)
            try:
                journal.rollback()
            except Exception as undo:
                raise DriverStateError(
                    f"applying the layer to {root} failed ({exc}) and undoing it failed too ({undo}); "
                    f"the replaced entries are kept in {os.path.join(root, journal.name)}"
                ) from exc
            raise
        return applier.applied_bytes
    finally:
        cache.close()
        if buffered is not stream:
            buffered.detach()  # the caller's stream stays open: closing it is the caller's job


def _buffered(stream: IO[bytes]) -> IO[bytes]:
    """A file or pipe behind a 1 MiB buffer: a layer is read 512 bytes at a time, and a
    small buffer (8 KiB for open(); none for a pipe) would cost a read(2) every few
    entries. A stream made in Python (a decompressor, a hashing reader) is read as it is:
    its reads cost no system call, and another buffer in front would only copy the data."""
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return stream
    try:
        return io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
    except (AttributeError, OSError, ValueError):  # not file-like enough: read it directly
        return stream


def _refuse_interrupted(root: str, root_fd: int) -> None:
    """A journal directory left behind means an apply was killed half way: the layer holds
    part of an archive, and only its owner can decide to throw it away."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    try:
        left = sorted(name for name in os.listdir(fd) if name.startswith(JOURNAL_PREFIX))
    finally:
        os.close(fd)
    if left:
        raise DriverStateError(
            f"{root} holds {left[0]!r}: an earlier apply to it was interrupted, so it is half-applied; "
            "remove the layer and apply its archive again"
        )


def _show(name: str) -> str:
    """A name for an error message: hostile names can be kilobytes long."""
    return repr(name) if len(name) <= 160 else repr(name[:150]) + f"... ({len(name)} characters)"


def _describe(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


class _Applier:
    def __init__(
        self,
        cache: DirCache,
        journal: Journal,
        whiteouts: wh.WhiteoutFormat,
        allow_devices: bool,
        copy_up: CopyUp | None,
    ) -> None:
        self.cache = cache
        self.copy_up = copy_up
        self.journal = journal
        self.whiteouts = whiteouts
        self.allow_devices = allow_devices
        self.applied_bytes = 0
        # paths this archive wrote, which an opaque marker keeps; the sets are built from the
        # log only when a marker needs them (most layers have none)
        self._applied_log: list[str] = []
        self.applied: set[str] = set()
        self.applied_parents: set[str] = {""}  # directories with such paths below them
        self.dir_times: list[tuple[str, int, int]] = []
        self.root_times: tuple[int, int] | None = None  # from a "./" entry
        self.euid, self.egid = os.geteuid(), os.getegid()
        self.umask_or_setid = _umask() | 0o7000
        self._creation_info: dict[str, tuple[int, bool, bool]] = {}

    # -- bookkeeping -------------------------------------------------------------------

    def _mark(self, path: str) -> None:
        self._applied_log.append(path)

    def _sync_applied(self) -> None:
        for path in self._applied_log:
            self.applied.add(path)
            parent = split(path)[0]
            while parent not in self.applied_parents:
                self.applied_parents.add(parent)
                parent = split(parent)[0]
        self._applied_log.clear()

    def _parent(self, parent: str) -> int:
        """fd of directory `parent`, creating missing ones (0755, root-owned) like Docker."""
        missing: list[str] = []
        path = parent
        while True:
            try:
                pfd = self.cache.get(path)
                break
            except FileNotFoundError:
                if not path:
                    raise
                missing.append(path)
                path = split(path)[0]
        for path in reversed(missing):
            above, name = split(path)
            self.journal.touch(above, pfd)
            try:
                os.mkdir(name, 0o755, dir_fd=pfd)
            except FileExistsError:
                raise UnsafeArchive(
                    f"parent {'/' + path!r} exists but is not a directory inside the layer (a dangling symlink?)"
                ) from None
            self.journal.created(path)
            self._mark(path)
            os.chmod(name, 0o755, dir_fd=pfd)  # mkdir honoured the umask
            pfd = os.open(name, _O_DIR, dir_fd=pfd)
            self.cache.put(path, pfd)
        return pfd

    def _invalidate(self) -> None:
        """A directory or symlink was replaced or removed: forget what was learnt by path."""
        self.cache.clear()
        self._creation_info.clear()

    def _replace(self, parent: str, pfd: int, name: str, path: str) -> int:
        """Move the existing `name` out of the way (journaled); returns a valid parent fd."""
        st = os.lstat(name, dir_fd=pfd)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self._invalidate()  # cached fds may lead through it
            pfd = self.cache.get(parent)
        self.journal.stash(path, pfd, name)
        return pfd

    # -- entries -----------------------------------------------------------------------

    def apply(self, entry: Entry, reader: TarReader) -> None:
        path = clean_name(entry.name)
        if not path:
            if entry.type != tarread.DIR:
                raise UnsafeArchive(f"the layer root {entry.name!r} must be a directory in the archive")
            self._dir_attrs(path, entry, os.open(".", _O_DIR, dir_fd=self.cache.root_fd), cache=False)
            return
        parent, base = split(path)
        if wh.is_whiteout_name(base):
            self._whiteout(entry, parent, base, reader)
            return
        pfd = self._parent(parent)
        self.journal.touch(parent, pfd)
        self._mark(path)
        kind = entry.type
        if kind == tarread.REG:
            self._file(entry, parent, pfd, base, path, reader)
        elif kind == tarread.DIR:
            self._dir(entry, parent, pfd, base, path)
        elif kind == tarread.SYM:
            self._symlink(entry, parent, pfd, base, path)
        elif kind == tarread.LNK:
            self._hardlink(entry, parent, pfd, base, path)
        else:
            self._special(entry, parent, pfd, base, path)

    def _file(self, entry: Entry, parent: str, pfd: int, base: str, path: str, reader: TarReader) -> None:
        gid_new, plain, _ = self._creation(parent, pfd)
        # open(2) can give the final mode at once when nothing alters it afterwards: no umask
        # bits to clear, no default ACL, no set-id bits (chown clears them), no ACL xattrs
        exact = plain and not entry.mode & self.umask_or_setid and not entry.xattrs
        mode = entry.mode if exact else 0o600
        try:
            fd = os.open(base, _O_FILE, mode, dir_fd=pfd)
        except FileExistsError:
            pfd = self._replace(parent, pfd, base, path)
            fd = os.open(base, _O_FILE, mode, dir_fd=pfd)
        self.journal.created(path)
        try:
            if entry.size:
                for chunk in reader.read_chunks(entry.size):
                    written = os.write(fd, chunk)
                    if written < len(chunk):
                        view = memoryview(chunk)[written:]
                        while view:
                            view = view[os.write(fd, view) :]
            if entry.uid != self.euid or entry.gid != gid_new:
                os.fchown(fd, entry.uid, entry.gid)
            if entry.xattrs:
                _set_xattrs(fd, entry.xattrs)  # after chown, which drops security.capability
            if not exact:
                os.fchmod(fd, entry.mode)  # after chown and xattrs, which can change the mode
            os.utime(fd, ns=(entry.atime_ns, entry.mtime_ns))
        finally:
            os.close(fd)
        self.applied_bytes += entry.size

    def _creation(self, parent: str, pfd: int) -> tuple[int, bool, bool]:
        """(gid a new entry in `parent` gets, whether the creating call's mode is exact there
        -- not under a default ACL --, whether `parent` is set-gid). Cached per directory
        until directory attributes change."""
        info = self._creation_info.get(parent)
        if info is None:
            st = os.fstat(pfd)
            gid = st.st_gid if st.st_mode & stat.S_ISGID else self.egid
            try:
                os.getxattr(f"/proc/self/fd/{pfd}", "system.posix_acl_default")
                has_default_acl = True
            except OSError:
                has_default_acl = False  # ENODATA, or no ACL support at all
            info = self._creation_info[parent] = (gid, not has_default_acl, bool(st.st_mode & stat.S_ISGID))
        return info

    def _dir(self, entry: Entry, parent: str, pfd: int, base: str, path: str) -> None:
        gid_new, plain, setgid_parent = self._creation(parent, pfd)
        # as for files, but a set-gid parent also hands its set-gid bit to a new directory
        exact = plain and not setgid_parent and not entry.mode & self.umask_or_setid and not entry.xattrs
        mode = entry.mode if exact else 0o700
        try:
            os.mkdir(base, mode, dir_fd=pfd)
        except FileExistsError:
            if stat.S_ISDIR(os.lstat(base, dir_fd=pfd).st_mode):
                self._dir_attrs(path, entry, os.open(base, _O_DIR, dir_fd=pfd), cache=True)
                return
            pfd = self._replace(parent, pfd, base, path)
            os.mkdir(base, mode, dir_fd=pfd)
        self.journal.created(path)
        fd = os.open(base, _O_DIR, dir_fd=pfd)
        self.cache.put(path, fd)
        if entry.uid != self.euid or entry.gid != gid_new:
            os.fchown(fd, entry.uid, entry.gid)
        if entry.xattrs:
            _set_xattrs(fd, entry.xattrs)
        if not exact:
            os.fchmod(fd, entry.mode)
        self.dir_times.append((path, entry.atime_ns, entry.mtime_ns))

    def _dir_attrs(self, path: str, entry: Entry, fd: int, *, cache: bool) -> None:
        """A directory over an existing directory: its attributes only (journaled)."""
        self._creation_info.clear()  # its set-gid bit or default ACL may change
        try:
            self.journal.save_attrs(path, fd)
            os.fchown(fd, entry.uid, entry.gid)
            if entry.xattrs:
                _set_xattrs(fd, entry.xattrs)
            os.fchmod(fd, entry.mode)
        except BaseException:
            os.close(fd)
            raise
        if cache:
            self.cache.put(path, fd)
        else:
            os.close(fd)
        self.dir_times.append((path, entry.atime_ns, entry.mtime_ns))

    def _symlink(self, entry: Entry, parent: str, pfd: int, base: str, path: str) -> None:
        target = entry.linkname
        if not target or "\0" in target or len(os.fsencode(target)) >= PATH_MAX:
            raise UnsafeArchive(f"symlink {entry.name!r} has an invalid target {target[:80]!r}")
        try:
            os.symlink(target, base, dir_fd=pfd)
        except FileExistsError:
            pfd = self._replace(parent, pfd, base, path)
            os.symlink(target, base, dir_fd=pfd)
        self.journal.created(path)
        self._node_attrs(entry, pfd, base, chmod=False)

    def _hardlink(self, entry: Entry, parent: str, pfd: int, base: str, path: str) -> None:
        target = clean_name(entry.linkname, "hard link target")
        if not target:
            raise UnsafeArchive(f"hard link {entry.name!r} points at the layer root")
        if target == path:
            raise UnsafeArchive(f"hard link {entry.name!r} points at itself")
        tparent, tbase = split(target)
        try:
            tfd = self.cache.get(tparent)
            os.lstat(tbase, dir_fd=tfd)
        except (FileNotFoundError, NotADirectoryError):
            tfd = self._copied_up(entry, target)
        try:
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            pfd = self._replace(parent, pfd, base, path)
            tfd = self.cache.get(tparent)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        self.journal.created(path)

    def _copied_up(self, entry: Entry, target: str) -> int:
        """The fd of the target's directory once the driver copied the target up from below."""
        missing = UnsafeArchive(
            f"hard link {entry.name!r} -> {entry.linkname!r}: the target does not exist in the layer"
            + (" nor below it" if self.copy_up is not None else "")
        )
        if self.copy_up is None:
            raise missing
        tparent, tbase = split(target)
        ancestor = ""  # the copy adds entries to the deepest existing ancestor: keep its times
        for part in tparent.split("/") if tparent else []:
            candidate = f"{ancestor}/{part}" if ancestor else part
            try:
                self.cache.get(candidate)
            except (FileNotFoundError, NotADirectoryError):
                break
            ancestor = candidate
        self.journal.touch(ancestor, self.cache.get(ancestor))
        for path in self.copy_up(target):
            self.journal.created(path)
        self._invalidate()
        try:
            tfd = self.cache.get(tparent)
            os.lstat(tbase, dir_fd=tfd)
        except (FileNotFoundError, NotADirectoryError):
            raise missing from None
        return tfd

    def _special(self, entry: Entry, parent: str, pfd: int, base: str, path: str) -> None:
        if entry.type == tarread.FIFO:
            make = lambda fd: os.mkfifo(base, 0o600, dir_fd=fd)  # noqa: E731
        else:
            if not self.allow_devices:
                raise UnsafeArchive(f"device node {entry.name!r} is not allowed in this layer")
            kind = stat.S_IFCHR if entry.type == tarread.CHR else stat.S_IFBLK
            dev = os.makedev(entry.devmajor, entry.devminor)
            make = lambda fd: os.mknod(base, kind | 0o600, dev, dir_fd=fd)  # noqa: E731
        try:
            make(pfd)
        except FileExistsError:
            pfd = self._replace(parent, pfd, base, path)
            make(pfd)
        self.journal.created(path)
        self._node_attrs(entry, pfd, base, chmod=True)

    def _node_attrs(self, entry: Entry, pfd: int, base: str, *, chmod: bool) -> None:
        """Attributes of an entry we cannot open (symlink, fifo, device), set through its parent."""
        os.chown(base, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
        if entry.xattrs:
            _set_xattrs(f"/proc/self/fd/{pfd}/{base}", entry.xattrs, follow_symlinks=False)
        if chmod:
            os.chmod(base, entry.mode, dir_fd=pfd)  # a node we just made: not a symlink
        os.utime(base, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    # -- whiteouts ---------------------------------------------------------------------

    def _whiteout(self, entry: Entry, parent: str, base: str, reader: TarReader) -> None:
        """A `.wh.` entry: the format records it (deletes, or stores its own mark)."""
        sink = _WhiteoutWriter(self, entry, reader)
        if base == wh.OPAQUE:
            self._hide_opaque(parent)
            self.whiteouts.apply_opaque(sink, parent, base)
            return
        name = wh.target(base)
        if name is None:
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs, ...): never layer content
        if name in ("", ".", ".."):
            raise UnsafeArchive(f"whiteout {entry.name!r} names {name!r}: not a deletable entry")
        self.whiteouts.apply_whiteout(sink, parent, name, base)

    def _hide_opaque(self, parent: str) -> None:
        """Hide what the directory held before this archive (its own entries stay)."""
        pfd = self._parent(parent)
        walk_fd = os.open(".", _O_DIR, dir_fd=pfd)
        try:
            self._sync_applied()
            self._hide_below(parent, walk_fd)
        finally:
            os.close(walk_fd)

    def _hide_below(self, dirpath: str, dfd: int) -> None:
        """Stash every entry below `dirpath` that this archive did not write, at any depth;
        a directory the archive wrote into (even implicitly) stays, minus its old entries."""
        with os.scandir(dfd) as it:
            children = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it)
        for name, is_dir, is_link in children:
            if self.journal.is_journal(dirpath, name):
                continue
            child = f"{dirpath}/{name}" if dirpath else name
            if child in self.applied or child in self.applied_parents:
                if is_dir:
                    cfd = os.open(name, _O_DIR, dir_fd=dfd)
                    try:
                        self._hide_below(child, cfd)
                    finally:
                        os.close(cfd)
                continue
            self.journal.touch(dirpath, dfd)
            if is_dir or is_link:
                self._invalidate()  # cached fds may lead through it
            self.journal.stash(child, dfd, name)

    # -- the end -----------------------------------------------------------------------

    def finish(self) -> None:
        """Directory times last (creating entries changed them); the root's after commit."""
        for path, atime, mtime in self.dir_times:
            if not path:
                self.root_times = (atime, mtime)
                continue
            parent, base = split(path)
            try:
                os.utime(base, ns=(atime, mtime), dir_fd=self.cache.get(parent), follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                pass  # deleted again by a later whiteout

    def finish_root(self) -> None:
        """The root's times: the archive's, else the old ones unless its entries changed
        (removing the journal directory touched it too)."""
        if self.root_times is not None:
            os.utime(self.cache.root, ns=self.root_times)
        elif not self.journal.touched(""):
            os.utime(self.cache.root, ns=self.journal.root_times)


def _umask() -> int:
    """The process umask, read without the set-and-restore race of os.umask()."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return 0o777  # unknown: never trust open(2)'s mode


class _WhiteoutWriter:
    """The `WhiteoutSink` a format records one `.wh.` entry through: journaled steps of
    the applier, with the entry's own attributes where a mark is written."""

    def __init__(self, applier: _Applier, entry: Entry, reader: TarReader) -> None:
        self.applier = applier
        self.entry = entry
        self.reader = reader

    def delete(self, parent: str, name: str) -> None:
        a = self.applier
        try:
            pfd = a.cache.get(parent)
            os.lstat(name, dir_fd=pfd)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing to delete
        a.journal.touch(parent, pfd)
        a._replace(parent, pfd, name, _join(parent, name))

    def clear(self, parent: str, name: str) -> None:
        a = self.applier
        pfd = a._parent(parent)
        a.journal.touch(parent, pfd)
        try:
            os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        a._replace(parent, pfd, name, _join(parent, name))

    def write_marker(self, parent: str, marker: str) -> None:
        a = self.applier
        pfd = a.cache.get(parent)
        a.journal.touch(parent, pfd)
        path = _join(parent, marker)
        a._mark(path)
        a._file(self.entry, parent, pfd, marker, path, self.reader)

    def make_device_whiteout(self, parent: str, name: str) -> None:
        a = self.applier
        pfd = a.cache.get(parent)
        path = _join(parent, name)
        a._mark(path)
        try:
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        except FileExistsError:  # impossible after clear(), unless raced; be explicit
            raise UnsafeArchive(f"whiteout {self.entry.name!r}: {path!r} still exists") from None
        a.journal.created(path)
        os.chown(name, self.entry.uid, self.entry.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(name, 0, dir_fd=pfd)

    def set_opaque_xattr(self, parent: str, key: str) -> None:
        a = self.applier
        fd = os.open(".", _O_DIR, dir_fd=a.cache.get(parent))
        try:
            a.journal.save_attrs(parent, fd)
            os.setxattr(fd, key, b"y")
        finally:
            os.close(fd)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _set_xattrs(target: int | str, xattrs: dict[str, bytes], *, follow_symlinks: bool = True) -> None:
    """Set the archive's xattrs, except overlayfs' own: an archive must not plant a
    redirect, origin or metacopy that an overlay mount of this directory would follow."""
    for key, value in xattrs.items():
        if key.startswith(wh.OVERLAY_XATTR_PREFIXES):
            continue
        try:
            os.setxattr(target, key, value, follow_symlinks=follow_symlinks)
        except OSError as exc:
            if exc.errno != errno.ENOTSUP:  # a filesystem without xattrs (as Docker tolerates)
                raise
