"""export_paths / export_dir / dir_diff_size: deterministic PAX tars that round-trip
through apply_layer exactly, driver whiteout formats, and streams that stop cleanly."""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess
import tarfile
import threading

import pytest

from graphdrivers import naivediff
from graphdrivers.archive import apply_layer, dir_diff_size, export_dir, export_paths
from graphdrivers.changes import Change
from tests.unit.archive_tools import snapshot, without_root_and_times_of

T = 1_600_000_000_123_456_789


def _tree(root: str) -> None:
    """Every kind of entry with unusual attributes."""
    os.makedirs(f"{root}/d/sub")
    with open(f"{root}/d/sub/f", "wb") as f:
        f.write(b"data" * 1000)
    os.chmod(f"{root}/d/sub/f", 0o4751)
    os.chown(f"{root}/d/sub/f", 1000, 1001)
    os.setxattr(f"{root}/d/sub/f", "user.bin", b"\x00\xff\xfe")
    os.setxattr(f"{root}/d/sub/f", "trusted.cap", b"c")
    os.link(f"{root}/d/sub/f", f"{root}/d/hard")
    os.symlink("sub/f", f"{root}/d/rel-link")
    os.symlink("/abs/target", f"{root}/abs-link")
    os.mkfifo(f"{root}/d/fifo")
    os.mknod(f"{root}/d/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(f"{root}/d/null", 0o666)
    os.mknod(f"{root}/d/blk", stat.S_IFBLK | 0o600, os.makedev(7, 9))
    os.mkdir(f"{root}/sticky")
    os.chmod(f"{root}/sticky", 0o1777)
    with open(f"{root}/empty", "wb"):
        pass
    os.chmod(f"{root}/d", 0o2705)
    os.chown(f"{root}/d", 1, 2)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(T, T), follow_symlinks=False)


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [m.name for m in tar.getmembers()]


def test_round_trip_is_exact_and_deterministic(tmp_path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    os.mkdir(src)
    os.mkdir(dst)
    _tree(src)
    found = naivediff.changes(src, None)
    with export_paths(src, found) as s1, export_paths(src, found) as s2:
        data = s1.read()
        assert data == s2.read()
    applied = apply_layer(dst, io.BytesIO(data))
    assert applied == 4000 == naivediff.changes_size(src, found)
    assert without_root_and_times_of(snapshot(dst)) == without_root_and_times_of(snapshot(src))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["d/sub/f"].islnk() and members["d/sub/f"].linkname == "d/hard"  # first in tar order
    assert {m.uname for m in members.values()} == {""}
    assert members["d/hard"].pax_headers["SCHILY.xattr.user.bin"].encode("utf-8", "surrogateescape") == b"\x00\xff\xfe"


def test_whiteouts_come_before_their_siblings(tmp_path) -> None:
    root = str(tmp_path)
    os.makedirs(f"{root}/a/b")
    for name in ("a/a", "a/z", "a/b/x"):
        open(f"{root}/{name}", "w").close()
    changes = [Change("/a", "C"), Change("/a/a", "A"), Change("/a/b", "A"), Change("/a/b/x", "A"),
               Change("/a/m", "D"), Change("/a/z", "C"), Change("/zz", "D")]
    with export_paths(root, changes) as s:
        assert _names(s.read()) == [".wh.zz", "a", "a/.wh.m", "a/a", "a/b", "a/b/x", "a/z"]


def test_overlay_upper_dir_export(tmp_path) -> None:
    upper = str(tmp_path / "upper")
    os.makedirs(f"{upper}/etc/opaque")
    os.mknod(f"{upper}/etc/gone", stat.S_IFCHR, os.makedev(0, 0))
    os.mknod(f"{upper}/etc/realdev", stat.S_IFCHR, os.makedev(1, 3))
    os.setxattr(f"{upper}/etc/opaque", "trusted.overlay.opaque", b"y")
    os.setxattr(f"{upper}/etc", "trusted.overlay.impure", b"y")  # overlayfs bookkeeping
    with open(f"{upper}/etc/opaque/new", "wb") as f:
        f.write(b"12345")
    os.setxattr(f"{upper}/etc/opaque/new", "trusted.overlay.origin", b"\x00\xfb")
    os.setxattr(f"{upper}/etc/opaque/new", "user.kept", b"layer content")
    with export_dir(upper, whiteouts="overlay") as s:
        data = s.read()
    assert _names(data) == ["etc", "etc/.wh.gone", "etc/opaque", "etc/opaque/.wh..wh..opq", "etc/opaque/new",
                            "etc/realdev"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert not any("overlay" in k for m in tar.getmembers() for k in m.pax_headers)
        assert tar.getmember("etc/opaque/new").pax_headers["SCHILY.xattr.user.kept"] == "layer content"
    assert dir_diff_size(upper, whiteouts="overlay") == 5
    lower = str(tmp_path / "lower")
    os.makedirs(f"{lower}/etc/opaque")
    open(f"{lower}/etc/gone", "w").close()
    open(f"{lower}/etc/opaque/old", "w").close()
    apply_layer(lower, io.BytesIO(data))
    assert sorted(os.listdir(f"{lower}/etc")) == ["opaque", "realdev"]
    assert os.listdir(f"{lower}/etc/opaque") == ["new"]


def test_aufs_branch_export(tmp_path) -> None:
    branch = str(tmp_path)
    os.makedirs(f"{branch}/.wh..wh.plnk")
    open(f"{branch}/.wh..wh.plnk/123.456", "w").close()
    os.makedirs(f"{branch}/.wh..wh.orph")
    open(f"{branch}/.wh..wh.aufs", "w").close()
    os.makedirs(f"{branch}/dir")
    open(f"{branch}/dir/.wh..wh..opq", "w").close()
    open(f"{branch}/.wh.gone", "w").close()
    with open(f"{branch}/a", "wb") as f:
        f.write(b"abc")
    with export_dir(branch, whiteouts="aufs") as s:
        assert _names(s.read()) == [".wh.gone", "a", "dir", "dir/.wh..wh..opq"]
    assert dir_diff_size(branch, whiteouts="aufs") == 3


def test_export_dir_rejects_an_unknown_whiteout_format(tmp_path) -> None:
    with pytest.raises(ValueError, match="whiteouts"):
        export_dir(str(tmp_path), whiteouts="delete")


def test_closing_early_stops_the_writer_and_calls_on_close_once(tmp_path) -> None:
    with open(tmp_path / "big", "wb") as f:
        f.truncate(64 << 20)
    calls = []
    before = threading.active_count()
    s = export_paths(str(tmp_path), [Change("/big", "A")], on_close=lambda: calls.append(1))
    assert len(s.read(1000)) == 1000
    s.close()
    s.close()
    assert calls == [1]
    assert threading.active_count() == before


def test_a_writer_error_reaches_the_reader(tmp_path) -> None:
    calls = []
    s = export_paths(str(tmp_path), [Change("/missing", "A")], on_close=lambda: calls.append(1))
    with pytest.raises(OSError, match="exporting the layer failed"):
        s.read()
    s.close()
    assert calls == [1]


def test_round_trip_on_xfs(make_backing) -> None:
    fs = make_backing("xfs", 512 << 20)
    src, dst = f"{fs.mountpoint}/src", f"{fs.mountpoint}/dst"
    os.mkdir(src)
    os.mkdir(dst)
    _tree(src)
    with export_paths(src, naivediff.changes(src, None)) as s:
        apply_layer(dst, s)
    assert without_root_and_times_of(snapshot(dst)) == without_root_and_times_of(snapshot(src))


def test_apply_matches_gnu_tar_extraction(tmp_path) -> None:
    """A tar written by GNU tar (with xattrs) lands exactly as GNU tar itself extracts it."""
    src, ours, theirs = (str(tmp_path / n) for n in ("src", "ours", "theirs"))
    for d in (src, ours, theirs):
        os.mkdir(d)
    _tree(src)
    layer = str(tmp_path / "layer.tar")
    subprocess.run(["tar", "-C", src, "--xattrs", "--xattrs-include=*", "--format=pax", "-cf", layer, "."], check=True)
    subprocess.run(["tar", "-C", theirs, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-p", "-xf", layer],
                   check=True)
    with open(layer, "rb") as f:
        apply_layer(ours, f)
    assert snapshot(ours) == snapshot(theirs)


def test_disk_full_leaves_the_layer_unchanged(make_backing) -> None:
    """ENOSPC half way (after replacing and deleting entries) is an OSError, fully undone."""
    fs = make_backing("ext4", 64 << 20)
    root = f"{fs.mountpoint}/layer"
    os.makedirs(f"{root}/etc")
    with open(f"{root}/etc/conf", "wb") as f:
        f.write(b"old")
    os.mkdir(f"{root}/gone")
    before = snapshot(root)
    big = tarfile.TarInfo("big")
    big.size = 128 << 20
    head = b"".join(tarfile.TarInfo(name).tobuf(tarfile.PAX_FORMAT) for name in ("etc/conf", ".wh.gone"))

    class Zeros(io.RawIOBase):
        """A tar whose last member streams 128 MiB of zeros: more than the disk holds."""

        def __init__(self) -> None:
            self.parts = [head, big.tobuf(tarfile.PAX_FORMAT)]
            self.left = big.size

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            if self.parts:
                part = self.parts.pop(0)
                b[: len(part)] = part
                return len(part)
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    with pytest.raises(OSError) as raised:
        apply_layer(root, io.BufferedReader(Zeros()))
    assert raised.value.errno in (errno.ENOSPC, errno.EDQUOT)
    assert snapshot(root) == before
