"""`docker cp`: a path of a container's filesystem as a tar, and a tar extracted into one.

Confined exactly as layer tars are: the container's path is resolved with its rootfs as
the root (openat2 RESOLVE_IN_ROOT: `..` and absolute symlinks stop at the rootfs), the
tar is written by the layer exporter from the resolved directory, and an upload is
applied by the layer applier inside the resolved destination (never outside it, all or
nothing), with `.wh.` names kept as plain files: an upload is files, not a layer diff.
As with `docker cp`, a symlink named as the source is copied as the link itself (unless
asked to follow it, `-L`), and what is copied in belongs to the container's root (uid and
gid 0: strata maps no user namespace) unless asked to keep the archive's ids (`-a`,
the API's copyUIDGID); what is copied out belongs to the caller unless `-a`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from graphdrivers import naivediff, whiteouts
from graphdrivers.archive import apply_layer, export_paths
from graphdrivers.archive.resolve import open_in_root, openat2_in_root
from graphdrivers.changes import Change
from graphdrivers.errors import UnsafeArchive

from ..errors import Conflict, NoSuchContainer, UsageError
from .record import Container
from .store import Containers

# Go's os.FileMode type bits (what X-Docker-Container-Path-Stat's mode carries)
_MODE_DIR, _MODE_SYMLINK, _MODE_DEVICE, _MODE_PIPE, _MODE_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_MODE_SETUID, _MODE_SETGID, _MODE_CHARDEV, _MODE_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


class NoSuchPath(NoSuchContainer):
    """The path does not exist in the container (the API's 404, as for a missing container)."""

    def __init__(self, c: Container, path: str) -> None:
        Exception.__init__(self, f"no such file or directory in container {c.short_id}: {path}")
        self.ref = path


def _clean(path: str) -> tuple[str, str]:
    """(parent, name) of an absolute container path; the root is ("", "")."""
    if not path.startswith("/"):
        raise UsageError(f"the path in the container must be absolute, got {path!r}")
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise UsageError(f"the path in the container must not contain '..': {path!r}")
    return "/".join(parts[:-1]), parts[-1] if parts else ""


@contextlib.contextmanager
def _rootfs(store: Containers, c: Container) -> Iterator[str]:
    """The container's filesystem, mounted for the duration (its running mount, or a new one)."""
    path = store.driver.get(c.layer)
    try:
        yield path
    finally:
        store.driver.put(c.layer)


def _open_dir(c: Container, rootfs: str, relpath: str, shown: str, *, follow: bool = False) -> int:
    """An O_PATH fd of the directory `relpath` of the rootfs; `follow`: a final symlink is
    followed (still inside the rootfs), as for a destination."""
    try:
        if not follow:
            return open_in_root(rootfs, relpath, os.O_PATH | os.O_DIRECTORY)
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return openat2_in_root(root_fd, relpath or ".", os.O_PATH | os.O_DIRECTORY)
        finally:
            os.close(root_fd)
    except FileNotFoundError:
        raise NoSuchPath(c, shown) from None
    except NotADirectoryError:
        raise UsageError(f"{shown} in container {c.short_id} is not a directory") from None
    except UnsafeArchive as exc:
        raise UsageError(str(exc)) from None


def _stat_of(name: str, st: os.stat_result, link: str) -> dict[str, Any]:
    mode = stat.S_IMODE(st.st_mode) & 0o777
    fmt = stat.S_IFMT(st.st_mode)
    mode |= {stat.S_IFDIR: _MODE_DIR, stat.S_IFLNK: _MODE_SYMLINK, stat.S_IFIFO: _MODE_PIPE,
             stat.S_IFSOCK: _MODE_SOCKET, stat.S_IFBLK: _MODE_DEVICE,
             stat.S_IFCHR: _MODE_DEVICE | _MODE_CHARDEV}.get(fmt, 0)
    mode |= (_MODE_SETUID if st.st_mode & stat.S_ISUID else 0) | (_MODE_SETGID if st.st_mode & stat.S_ISGID else 0)
    mode |= _MODE_STICKY if st.st_mode & stat.S_ISVTX else 0
    mtime = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"name": name, "size": st.st_size, "mode": mode, "mtime": mtime, "linkTarget": link}


def stat_path(store: Containers, c: Container, path: str) -> dict[str, Any]:
    """Docker's container path stat: name, size, mode (Go FileMode bits), mtime, linkTarget."""
    parent, name = _clean(path)
    with _rootfs(store, c) as rootfs:
        fd = _open_dir(c, rootfs, parent, path)
        try:
            return _stat_in(c, fd, name, path)
        finally:
            os.close(fd)


def _stat_in(c: Container, dir_fd: int, name: str, shown: str) -> dict[str, Any]:
    try:
        st = os.stat(name or ".", dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise NoSuchPath(c, shown) from None
    link = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
    return _stat_of(name or "/", st, link)


def get_archive(store: Containers, c: Container, path: str) -> tuple[IO[bytes], dict[str, Any]]:
    """A tar of `path` (named by its last component, a directory with everything under it) and
    its stat; close the stream to release the mount."""
    parent, name = _clean(path)
    rootfs = store.driver.get(c.layer)
    fd = None
    try:
        fd = _open_dir(c, rootfs, parent, path)
        info = _stat_in(c, fd, name, path)
        base = f"/proc/self/fd/{fd}"  # the resolved directory: nothing above it is reachable by name
        if not name:  # the root: its contents, under "."? Docker names them by the directory: "/"
            entries = [Change(p.path, "A") for p in naivediff.changes(base, None)]
        else:
            entries = [Change("/" + name, "A")]
            if info["mode"] & _MODE_DIR:
                entries += [Change(f"/{name}{p.path}", "A") for p in naivediff.changes(os.path.join(base, name), None)]
    except BaseException:
        if fd is not None:
            os.close(fd)
        store.driver.put(c.layer)
        raise

    def release() -> None:
        os.close(fd)
        store.driver.put(c.layer)

    return export_paths(base, entries, on_close=release), info


CONTAINER_ROOT = (0, 0)  # who owns what is copied in without copyUIDGID
MAX_LINKS = 40  # symlinks followed for -L before giving up, as the kernel's ELOOP


def put_archive(store: Containers, c: Container, path: str, stream: IO[bytes], *,
                no_overwrite_dir_non_dir: bool, copy_uid_gid: bool) -> None:
    """Extract the tar `stream` into the directory `path` of the container; its entries are
    owned by the container's root, or keep the tar's uid/gid with `copy_uid_gid`."""
    parent, name = _clean(path)
    with _rootfs(store, c) as rootfs, tempfile.TemporaryFile(dir=os.path.join(store.root, "tmp")) as spool:
        fd = _open_dir(c, rootfs, f"{parent}/{name}".strip("/"), path, follow=True)
        try:
            dest = f"/proc/self/fd/{fd}"
            if no_overwrite_dir_non_dir:  # read it first: the applier replaces what is in the way
                shutil.copyfileobj(stream, spool, 1 << 20)
                spool.seek(0)
                _refuse_type_changes(spool, dest)
                spool.seek(0)
                stream = spool
            try:
                apply_layer(dest, stream, whiteouts=whiteouts.AUFS,  # `.wh.` names are files here
                            owner=None if copy_uid_gid else CONTAINER_ROOT)
            except UnsafeArchive as exc:
                raise UsageError(f"cannot extract the archive into {path}: {exc}") from None
        finally:
            os.close(fd)


def _refuse_type_changes(tar_file: IO[bytes], dest: str) -> None:
    """noOverwriteDirNonDir: no directory replaced by a non-directory, nor the reverse."""
    try:
        with tarfile.open(fileobj=tar_file, mode="r|") as tar:
            for member in tar:
                try:
                    fd = open_in_root(dest, member.name, os.O_PATH)
                except (OSError, UnsafeArchive):
                    continue  # not there (or unreachable): the applier decides
                try:
                    is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                finally:
                    os.close(fd)
                if is_dir != member.isdir():
                    raise Conflict(f"cannot overwrite {'directory' if is_dir else 'non-directory'} {member.name!r} "
                                   f"with {'a directory' if member.isdir() else 'a non-directory'}")
    except tarfile.TarError as exc:
        raise UsageError(f"the upload is not a tar archive: {exc}") from None


def _split_ref(arg: str) -> tuple[str | None, str]:
    """`CONTAINER:PATH` -> (container, path); a local path -> (None, path). As docker cp: a
    local path with a colon must start with / or ./"""
    if arg.startswith(("/", ".")):
        return None, arg
    ref, sep, path = arg.partition(":")
    return (ref, path) if sep else (None, arg)


def copy(store: Containers, source: str, dest: str, *, archive: bool = False, follow_link: bool = False) -> None:
    """`cp CONTAINER:PATH LOCAL` or `cp LOCAL CONTAINER:PATH`, with docker cp's naming: into an
    existing directory under the source's name, else as the destination's name. `archive`
    keeps the source's uid/gid (else the receiving side's user owns the copy); `follow_link`
    copies what a symlink named as the source points to, under the link's name."""
    (src_ref, src_path), (dst_ref, dst_path) = _split_ref(source), _split_ref(dest)
    if (src_ref is None) == (dst_ref is None):
        raise UsageError("cp copies between a container and the local filesystem: one of SRC and DEST must be "
                         "CONTAINER:PATH, the other a local path")
    if src_ref is not None:
        c = store.get(src_ref)
        _copy_out(store, c, _link_target(store, c, src_path) if follow_link else src_path, dst_path,
                  archive=archive, as_name=os.path.basename(src_path.rstrip("/")) if follow_link else None)
    else:
        assert dst_ref is not None
        _copy_in(store, store.get(dst_ref), src_path, dst_path, archive=archive, follow_link=follow_link)


def _link_target(store: Containers, c: Container, path: str) -> str:
    """The container path a symlink at `path` ends at (resolved as the CLI's -L does: a
    relative target against the link's directory), or `path` when it is no link."""
    for _ in range(MAX_LINKS):
        target = stat_path(store, c, path)["linkTarget"]
        if not target:
            return path
        path = os.path.normpath(os.path.join(os.path.dirname(path.rstrip("/")), target))
    raise UsageError(f"too many levels of symbolic links in container {c.short_id}: {path}")


def _copy_out(store: Containers, c: Container, path: str, local: str, *, archive: bool, as_name: str | None) -> None:
    if os.path.isdir(local):
        into, name = local, as_name
    else:
        into, name = os.path.dirname(os.path.abspath(local)), os.path.basename(local)
        if not os.path.isdir(into):
            raise UsageError(f"the destination directory {into} does not exist")
    stream, _ = get_archive(store, c, path)
    with stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if name is not None:  # the top entry takes the destination's (or the followed link's) name
                _head, _, rest = member.name.partition("/")
                member.name = name + ("/" + rest if rest else "")
            if not archive:
                member.uid, member.gid = os.getuid(), os.getgid()
            tar.extract(member, into, filter="tar", numeric_owner=True)


def _copy_in(store: Containers, c: Container, local: str, path: str, *, archive: bool, follow_link: bool) -> None:
    if not os.path.lexists(local):
        raise UsageError(f"no such local file or directory: {local}")
    parent, last = _clean(path)
    with _rootfs(store, c) as rootfs:
        try:
            os.close(_open_dir(c, rootfs, f"{parent}/{last}".strip("/"), path, follow=True))
            is_dir = True  # (a link to a directory too: a destination is followed)
        except (NoSuchPath, UsageError):
            is_dir = False
    into, name = path, os.path.basename(os.path.abspath(local))
    if not is_dir:
        into, name = os.path.dirname(path.rstrip("/")) or "/", os.path.basename(path.rstrip("/"))
    with tempfile.TemporaryFile(dir=os.path.join(store.root, "tmp")) as spool:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(os.path.realpath(local) if follow_link else local, arcname=name)
        spool.seek(0)
        put_archive(store, c, into, spool, no_overwrite_dir_non_dir=True, copy_uid_gid=archive)
