"""The FUSE union filesystem's aufs semantics, one rule at a time, through a real mount.

Every test mounts the same three-layer stack (base <- mid <- top, top writable); the
lower branches are written directly, with aufs whiteouts and an opaque directory, so the
union's reading rules are tested apart from its writing rules.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Iterator

import pytest

from graphdrivers.aufs.driver import AufsDriver

from .aufs_support import aufs, branch, put_file  # noqa: F401  (aufs is a fixture)

MTIME = 1_600_000_000_123_456_789


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def union(aufs: AufsDriver) -> Iterator[str]:  # noqa: F811
    aufs.create("base")
    aufs.create("mid", "base")
    aufs.create_read_write("top", "mid")
    b = lambda *p: branch(aufs, "base", *p)  # noqa: E731
    m = lambda *p: branch(aufs, "mid", *p)  # noqa: E731
    put_file(b("a"), b"base a")
    put_file(b("gone"), b"whited out by mid")
    put_file(b("d", "x"), b"x")
    put_file(b("d", "y"), b"y")
    put_file(b("opq", "old"), b"hidden by mid's opaque marker")
    put_file(b("etc", "passwd"), b"root:x:0:0\n", 0o755)
    os.chown(b("etc", "passwd"), 1, 2)
    os.chmod(b("etc", "passwd"), 0o4755)
    os.setxattr(b("etc", "passwd"), "user.origin", b"base")
    os.utime(b("etc", "passwd"), ns=(MTIME, MTIME))
    put_file(m("a"), b"mid a")
    put_file(m(".wh.gone"))
    put_file(m("d", "z"), b"z")
    put_file(m("opq", ".wh..wh..opq"))
    put_file(m("opq", "new"), b"new")
    os.mkdir(m(".wh..wh.plnk"))  # aufs bookkeeping: never visible
    path = aufs.get("top")
    yield path
    aufs.put("top")


def _top(union: str, *parts: str) -> str:
    """The writable branch behind the union mount at `union` (layout: mnt/<id>, diff/<id>)."""
    home = os.path.dirname(os.path.dirname(union))
    return os.path.join(home, "diff", os.path.basename(union), *parts)


def _mid(union: str, *parts: str) -> str:
    return os.path.join(os.path.dirname(os.path.dirname(union)), "diff", "mid", *parts)


def test_lookup_is_top_down_and_whiteouts_hide(union: str) -> None:
    assert _read(f"{union}/a") == b"mid a"
    assert sorted(os.listdir(union)) == ["a", "d", "etc", "opq"]
    assert sorted(os.listdir(f"{union}/d")) == ["x", "y", "z"]  # merged, no duplicates
    # getdents itself, as ls -a sees it: "." and ".." come first, as on any kernel filesystem
    listed = subprocess.run(["ls", "-a", "-i", "-U", f"{union}/d"], capture_output=True, text=True, check=True)
    entries = {name: int(ino) for ino, name in (line.split() for line in listed.stdout.splitlines())}
    assert list(entries)[:2] == [".", ".."] and sorted(entries) == [".", "..", "x", "y", "z"]
    assert entries["."] == os.stat(f"{union}/d").st_ino and entries[".."] == os.stat(union).st_ino
    assert os.listdir(f"{union}/opq") == ["new"]
    for hidden in ("gone", ".wh.gone", ".wh..wh.plnk", "opq/old", "opq/.wh..wh..opq"):
        assert not os.path.lexists(f"{union}/{hidden}"), hidden
    with pytest.raises(PermissionError):
        open(f"{union}/.wh.x", "wb").close()  # aufs reserves the whiteout prefix
    assert os.listdir(_top(union)) == []  # reading copied nothing up


@pytest.mark.parametrize("change", ["append", "truncate", "chmod", "chown", "utime", "setxattr"])
def test_first_change_copies_up_with_metadata(union: str, change: str) -> None:
    path = f"{union}/etc/passwd"
    ino = os.lstat(path).st_ino
    if change == "append":
        with open(path, "ab") as f:
            f.write(b"daemon:x:1:1\n")
    elif change == "truncate":
        os.truncate(path, 4)
    elif change == "chmod":
        os.chmod(path, 0o2711)
    elif change == "chown":
        os.chown(path, 5, -1)
    elif change == "utime":
        os.utime(path, ns=(MTIME + 1, MTIME + 1))
    else:
        os.setxattr(path, "user.more", b"1")
    up = os.lstat(_top(union, "etc", "passwd"))
    st = os.lstat(path)
    assert st.st_ino == ino, "inode numbers stay stable across copy-up"
    assert (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns) == (up.st_mode, up.st_uid, up.st_gid, up.st_mtime_ns)
    want_data = {"append": b"root:x:0:0\ndaemon:x:1:1\n", "truncate": b"root"}.get(change, b"root:x:0:0\n")
    assert _read(path) == want_data
    # chown(2) clears setuid even for root, on every Linux filesystem
    assert stat.S_IMODE(st.st_mode) == {"chmod": 0o2711, "chown": 0o755}.get(change, 0o4755)
    assert (st.st_uid, st.st_gid) == ((5, 2) if change == "chown" else (1, 2))
    if change not in ("append", "truncate"):
        assert st.st_mtime_ns == (MTIME + 1 if change == "utime" else MTIME)
    assert os.getxattr(path, "user.origin") == b"base"
    # the lower branch is untouched
    base = os.path.join(os.path.dirname(_mid(union)), "base", "etc", "passwd")
    low = os.lstat(base)
    assert (stat.S_IMODE(low.st_mode), low.st_uid, low.st_gid, low.st_mtime_ns) == (0o4755, 1, 2, MTIME)
    assert _read(base) == b"root:x:0:0\n"
    assert stat.S_IMODE(os.lstat(_top(union, "etc")).st_mode) == 0o755  # parent copied up too


def test_unlink_and_rmdir_of_lower_names_leave_whiteouts(union: str) -> None:
    os.unlink(f"{union}/a")
    os.unlink(f"{union}/d/x")
    assert sorted(os.listdir(f"{union}/d")) == ["y", "z"]
    os.unlink(f"{union}/d/y")
    os.unlink(f"{union}/d/z")
    os.rmdir(f"{union}/d")
    assert sorted(os.listdir(union)) == ["etc", "opq"]
    assert sorted(os.listdir(_top(union))) == [".wh.a", ".wh.d"]
    assert _read(_mid(union, "a")) == b"mid a"
    with pytest.raises(OSError) as info:
        os.rmdir(f"{union}/opq")
    assert info.value.errno == errno.ENOTEMPTY


def test_recreating_a_whited_out_name(union: str) -> None:
    os.unlink(f"{union}/a")
    with open(f"{union}/a", "wb") as f:
        f.write(b"again")
    assert _read(f"{union}/a") == b"again"
    assert not os.path.lexists(_top(union, ".wh.a"))
    for name in ("x", "y", "z"):
        os.unlink(f"{union}/d/{name}")
    os.rmdir(f"{union}/d")
    os.mkdir(f"{union}/d")  # made where lower ones are whited out: opaque
    assert os.listdir(f"{union}/d") == []
    assert os.path.exists(_top(union, "d", ".wh..wh..opq"))
    os.unlink(f"{union}/a")  # removing the new one must hide the lower one again
    assert not os.path.lexists(f"{union}/a")


def test_rename(union: str) -> None:
    os.rename(f"{union}/a", f"{union}/b")  # a lower file: copied up, renamed, whited out
    assert _read(f"{union}/b") == b"mid a" and not os.path.lexists(f"{union}/a")
    assert os.path.exists(_top(union, ".wh.a")) and _read(_mid(union, "a")) == b"mid a"
    with pytest.raises(OSError) as info:
        os.rename(f"{union}/d", f"{union}/d2")
    assert info.value.errno == errno.EXDEV  # as aufs: a directory with lower parts cannot move
    os.makedirs(f"{union}/new/inner")
    with open(f"{union}/new/inner/f", "wb") as f:
        f.write(b"f")
    os.rename(f"{union}/new", f"{union}/moved")  # a directory of the writable branch can
    assert _read(f"{union}/moved/inner/f") == b"f"
    os.rename(f"{union}/etc/passwd", f"{union}/b")  # over an existing file
    assert _read(f"{union}/b") == b"root:x:0:0\n" and os.listdir(f"{union}/etc") == []


def test_links_special_files_xattrs_statfs(union: str) -> None:
    os.symlink("../a", f"{union}/d/sym")
    assert os.readlink(f"{union}/d/sym") == "../a" and _read(f"{union}/d/sym") == b"mid a"
    os.link(f"{union}/a", f"{union}/a2")  # a lower file: copy-up, then a link in the writable branch
    one, two = os.lstat(f"{union}/a"), os.lstat(f"{union}/a2")
    assert one.st_ino == two.st_ino and two.st_nlink == 2
    assert os.lstat(_top(union, "a")).st_ino == os.lstat(_top(union, "a2")).st_ino
    with open(f"{union}/a2", "ab") as f:
        f.write(b"+")
    assert _read(f"{union}/a") == b"mid a+"
    os.mkfifo(f"{union}/fifo", 0o640)
    os.mknod(f"{union}/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert stat.S_ISFIFO(os.lstat(f"{union}/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(f"{union}/fifo").st_mode) == 0o640
    assert os.lstat(f"{union}/null").st_rdev == os.makedev(1, 3)
    with open(f"{union}/null", "rb") as f:
        assert f.read() == b""  # a real device node: suid/dev mount options are set
    os.setxattr(f"{union}/d/x", "user.k", b"v")
    assert os.getxattr(f"{union}/d/x", "user.k") == b"v"
    assert "user.k" in os.listxattr(f"{union}/d/x")
    os.removexattr(f"{union}/d/x", "user.k")
    assert "user.k" not in os.listxattr(f"{union}/d/x")
    sv = os.statvfs(union)
    assert sv.f_blocks > 0 and sv.f_bsize > 0
    fd = os.open(f"{union}/d/x", os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert os.access(f"{union}/a", os.R_OK | os.W_OK)


def test_owners_and_permissions_as_root_and_as_a_user(union: str) -> None:
    path = f"{union}/owned"
    with open(path, "wb"):
        pass
    os.chown(path, 1, 2)
    os.chmod(path, 0o4222)
    st = os.lstat(path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4222, 1, 2)
    os.mkdir(f"{union}/shared", 0o777)
    os.chmod(f"{union}/shared", 0o777)
    with open(f"{union}/secret", "wb") as f:
        f.write(b"root only")
    os.chmod(f"{union}/secret", 0o600)
    out = subprocess.run(
        ["/bin/busybox", "sh", "-c", "touch shared/mine && cat secret"],
        cwd=union,  # entered as root: the test's temp dirs above it are private
        user=1000,
        group=1000,
        extra_groups=[],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "Permission denied" in out.stderr, out
    st = os.lstat(f"{union}/shared/mine")
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_big_reads_of_a_lower_file_leave_it_untouched(aufs: AufsDriver) -> None:  # noqa: F811
    aufs.create("big")
    data = os.urandom(3 << 20) + b"tail"
    blob = branch(aufs, "big", "blob")
    put_file(blob, data)
    os.utime(blob, ns=(1_000_000_000, MTIME))  # an atime older than mtime: relatime would update it
    aufs.create_read_write("over", "big")
    path = aufs.get("over")
    try:
        assert _read(f"{path}/blob") == data
        with open(f"{path}/blob", "rb") as f:
            f.seek(len(data) - 4)
            assert f.read() == b"tail"
    finally:
        aufs.put("over")
    assert os.lstat(blob).st_atime_ns == 1_000_000_000, "reading through the union touched the lower layer"


def test_fallocate_and_sparse_files(aufs: AufsDriver, union: str) -> None:  # noqa: F811
    """fallocate(2) modes and SEEK_DATA/SEEK_HOLE reach the branch file; a lower file is
    copied up first and its layer left alone."""
    if aufs.backend.server == "pyfuse3":
        _fallocate_refused(union)
        return
    path = f"{union}/sparse"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20 and os.fstat(fd).st_blocks >= (1 << 20) // 512
        os.pwrite(fd, b"d" * (1 << 20), 0)  # data (allocated but unwritten extents read as holes)
        subprocess.run(["fallocate", "--punch-hole", "--offset", "0", "--length", "65536", path], check=True)
        assert os.lseek(fd, 0, os.SEEK_DATA) == 65536 and os.lseek(fd, 0, os.SEEK_HOLE) == 0
        os.truncate(fd, 8 << 20)
        os.pwrite(fd, b"x", 5 << 20)
        assert os.lseek(fd, 2 << 20, os.SEEK_DATA) == 5 << 20
    finally:
        os.close(fd)
    subprocess.run(["fallocate", "--length", "100", f"{union}/a"], check=True)  # grows a lower file
    assert os.path.getsize(f"{union}/a") == 100 and _read(f"{union}/a").startswith(b"mid a")
    assert os.path.getsize(_top(union, "a")) == 100


def _fallocate_refused(union: str) -> None:
    """pyfuse3 (libfuse 3.14) has no fallocate or lseek handler: fallocate(2) is refused
    with EOPNOTSUPP, SEEK_DATA/SEEK_HOLE see the whole file as data, and nothing changes."""
    path = f"{union}/sparse"
    with open(path, "wb") as f:
        f.write(b"d" * 65536)
    done = subprocess.run(["fallocate", "--punch-hole", "--offset", "0", "--length", "4096", path],
                          capture_output=True, text=True)
    assert done.returncode != 0 and ("unsupported" in done.stderr or "not supported" in done.stderr)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0 and os.lseek(fd, 0, os.SEEK_HOLE) == 65536
    finally:
        os.close(fd)
    assert _read(path) == b"d" * 65536
    done = subprocess.run(["fallocate", "--length", "100", f"{union}/a"], capture_output=True, text=True)
    assert done.returncode != 0 and ("unsupported" in done.stderr or "not supported" in done.stderr)
    assert _read(f"{union}/a").startswith(b"mid a")
