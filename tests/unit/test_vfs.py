"""vfs beyond the shared contract: what its copy keeps, its options, crash safety.

The conformance suite checks what every driver must show through a mount; these tests
check vfs's own promises: an exact copy of everything the kernel records about a file
(xattrs, ACLs, capabilities, times, link structure, holes), with either copy method, and
no half-made layer after a failure or a crash.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct

import pytest

import graphdrivers
from graphdrivers.vfs import VfsDriver

# A file capability (security.capability, VFS_CAP_REVISION_2, effective): cap_net_raw.
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
# system.posix_acl_access: user::rw- user:1000:r-- group::r-- mask::r-- other::---
ACL = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, perm, ident)
    for tag, perm, ident in (
        (1, 6, 0xFFFFFFFF),
        (2, 4, 1000),
        (4, 4, 0xFFFFFFFF),
        (0x10, 4, 0xFFFFFFFF),
        (0x20, 0, 0xFFFFFFFF),
    )
)


def full_state(root: str) -> dict[str, tuple]:
    """Everything a faithful copy must keep, per path (inode numbers as link groups)."""
    state: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else dirpath
            rel = "/" + os.path.relpath(path, root)
            if name == "" and dirpath != root:
                continue
            st = os.lstat(path)
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                xattrs = {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))}
            data: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    data = f.read()
                holes = st.st_blocks * 512 < st.st_size
                data = (data, holes)
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(path)
            link_group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) else None
            state[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev, st.st_mtime_ns, xattrs, data, link_group)
    return state


def populate(path: str) -> None:
    os.makedirs(os.path.join(path, "etc", "deep", "er"))
    with open(os.path.join(path, "etc", "passwd"), "wb") as f:
        f.write(b"root:x:0:0::/root:/bin/sh\n")
    ping = os.path.join(path, "ping")
    with open(ping, "wb") as f:
        f.write(b"\x7fELF" + bytes(5000))
    os.chown(ping, 5, 6)
    os.chmod(ping, 0o4755)
    os.setxattr(ping, "security.capability", CAPABILITY)
    os.setxattr(os.path.join(path, "etc", "passwd"), "system.posix_acl_access", ACL)
    os.setxattr(os.path.join(path, "etc", "passwd"), "user.origin", b"strata")
    os.setxattr(os.path.join(path, "etc"), "trusted.overlay.opaque", b"y")
    os.chmod(os.path.join(path, "etc", "deep"), 0o2775)
    os.chown(os.path.join(path, "etc", "deep"), 0, 50)
    os.chmod(os.path.join(path, "etc", "deep", "er"), 0o1777)
    for name in ("a", "b"):
        os.link(os.path.join(path, "etc", "passwd"), os.path.join(path, "etc", "deep", name))
    os.symlink("../passwd", os.path.join(path, "etc", "deep", "sym"))
    os.link(os.path.join(path, "etc", "deep", "sym"), os.path.join(path, "symlink-hardlink"), follow_symlinks=False)
    os.mkfifo(os.path.join(path, "fifo"), 0o600)
    os.mknod(os.path.join(path, "sda"), stat.S_IFBLK | 0o660, os.makedev(8, 0))
    os.mknod(os.path.join(path, "whiteout"), stat.S_IFCHR, os.makedev(0, 0))
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(os.path.join(path, "sock"))
    for name, layout in (
        ("hole-start", [(8 << 20, b"end")]),
        ("hole-end", [(0, b"start")]),
        ("dense", [(0, bytes(70000))]),
    ):
        with open(os.path.join(path, name), "wb") as f:
            for offset, data in layout:
                f.seek(offset)
                f.write(data)
            f.truncate(16 << 20 if name != "dense" else 70000)
    with open(os.path.join(path, "mode000"), "wb") as f:
        f.write(b"secret")
    os.chmod(os.path.join(path, "mode000"), 0)
    open(os.path.join(path, "empty"), "wb").close()
    # Times last, deepest first, so nothing written afterwards bumps them.
    for i, (dirpath, dirnames, filenames) in enumerate(reversed(list(os.walk(path)))):
        for name in [*filenames, *dirnames]:
            os.utime(os.path.join(dirpath, name), ns=(1_000_000_123 + i, 2_000_000_456 + i), follow_symlinks=False)
    os.utime(path, ns=(3_000_000_001, 4_000_000_002))


@pytest.fixture
def ext4_root(make_backing) -> str:
    fs = make_backing("ext4")
    root = os.path.join(fs.mountpoint, "root")
    os.mkdir(root)
    return root


@pytest.mark.parametrize("copy", ["copy_file_range", "full"])
def test_copy_is_exact(ext4_root: str, copy: str) -> None:
    d = graphdrivers.get_driver("vfs", root=ext4_root, options={"vfs.copy": copy})
    d.create_read_write("parent")
    populate(d.get("parent"))
    want = full_state(d.get("parent"))
    d.create("child", "parent")
    d.create("grandchild", "child")
    assert full_state(d.get("child")) == want
    assert full_state(d.get("grandchild")) == want
    assert full_state(d.get("parent")) == want, "copying changed the parent"
    assert dict(d.status())["Copy"].startswith(copy)
    assert dict(d.status())["Backing Filesystem"] == "ext4"
    d.cleanup()


def test_layout_and_metadata(ext4_root: str) -> None:
    d = graphdrivers.get_driver("vfs", root=ext4_root)
    d.create("x")
    path = os.path.join(ext4_root, "vfs", "dir", "x")
    assert d.metadata("x") == {"Path": path}
    assert d.get("x") == path
    d.put("x")


def test_failed_create_leaves_nothing(make_backing) -> None:
    """A child that does not fit on the filesystem fails with ENOSPC and leaves no trace."""
    fs = make_backing("ext4", 48 << 20)
    root = os.path.join(fs.mountpoint, "root")
    d = VfsDriver(os.path.join(root, "vfs"))
    d.create_read_write("big")
    with open(os.path.join(d.get("big"), "blob"), "wb") as f:
        f.write(os.urandom(1 << 20) * 30)
    d.put("big")
    before = os.listdir(d.dir)
    free = _free_bytes(root)
    with pytest.raises(OSError) as info:
        d.create("copy", "big")
    assert info.value.errno == 28  # ENOSPC
    assert not d.exists("copy")
    assert os.listdir(d.dir) == before
    assert _free_bytes(root) >= free - (64 << 10), "the partial copy's blocks were not freed"


def _free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def test_crash_leftovers_are_removed_at_start(ext4_root: str) -> None:
    d = VfsDriver(os.path.join(ext4_root, "vfs"))
    d.create("keep")
    d.create("x-creating")  # a valid id that only looks like a temporary name
    for leftover in (".creating-half", ".removing-gone"):
        os.makedirs(os.path.join(d.dir, leftover, "sub"))
    d.cleanup()
    again = VfsDriver(os.path.join(ext4_root, "vfs"))
    assert sorted(os.listdir(again.dir)) == ["keep", "x-creating"]
    assert again.exists("keep") and again.exists("x-creating")


def _fill(path: str, limit: int) -> None:
    """Write up to twice `limit` bytes into `path`; the kernel must refuse it on the way."""
    chunk = b"q" * (1 << 20)
    with open(path, "wb") as f:
        for _ in range(2 * limit // len(chunk)):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def test_size_limit_with_xfs_project_quotas(xfs_prjquota: str) -> None:
    d = graphdrivers.get_driver("vfs", root=xfs_prjquota)
    assert dict(d.status())["Size Limits"] == "project quotas"
    d.create_read_write("limited", storage_opt={"size": "32M"})
    path = d.get("limited")
    with open(os.path.join(path, "fits"), "wb") as f:
        f.write(bytes(16 << 20))
    with pytest.raises(OSError) as info:
        _fill(os.path.join(path, "too-much"), 32 << 20)
    assert info.value.errno in (errno.EDQUOT, errno.ENOSPC)
    os.unlink(os.path.join(path, "too-much"))
    d.put("limited")
    # A child copies its parent's 16 MB: under a 24M limit that leaves room for 8 MB only.
    d.create("child", "limited", storage_opt={"size": "24M"})
    with pytest.raises(OSError) as info:
        _fill(os.path.join(d.get("child"), "more"), 12 << 20)
    assert info.value.errno in (errno.EDQUOT, errno.ENOSPC)
    d.put("child")
    # A child too big for its limit is refused, and leaves nothing.
    with pytest.raises(OSError) as info:
        d.create("cramped", "limited", storage_opt={"size": "8M"})
    assert info.value.errno in (errno.EDQUOT, errno.ENOSPC)
    assert not d.exists("cramped") and sorted(os.listdir(d.dir)) == ["child", "limited"]
    # Layers without a limit are not limited, and limits survive a new driver instance.
    d.create("free", "limited")
    _write_big(os.path.join(d.get("free"), "big"), 64 << 20)
    d.put("free")
    d.cleanup()
    again = graphdrivers.get_driver("vfs", root=xfs_prjquota)
    again.create("another", storage_opt={"size": "8M"})
    with pytest.raises(OSError):
        _fill(os.path.join(again.get("limited"), "still-limited"), 32 << 20)
    again.cleanup()


def _write_big(path: str, size: int) -> None:
    with open(path, "wb") as f:
        f.write(bytes(size))
        os.fsync(f.fileno())


def test_no_size_limit_without_project_quotas(make_backing) -> None:
    for fstype, why in (("ext4", "prjquota"), ("xfs", "prjquota"), ("btrfs", "btrfs")):
        root = os.path.join(make_backing(fstype).mountpoint, "root")
        d = graphdrivers.get_driver("vfs", root=root)
        with pytest.raises(graphdrivers.errors.QuotaNotSupported) as info:
            d.create("x", storage_opt={"size": "1G"})
        assert fstype in info.value.reason and why in info.value.reason
        assert not d.exists("x")
        assert dict(d.status())["Size Limits"].startswith("none")
        assert not os.path.exists(os.path.join(root, "vfs", "backingFsBlockDev"))
