"""apply_layer: every member type with exact attributes, replacement rules, whiteouts in
all three storage modes, and writing through in-layer symlinks."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import tarfile

import pytest

from graphdrivers.archive import apply_layer
from graphdrivers.errors import DriverStateError, UnsafeArchive
from tests.unit.archive_tools import build_tar, member, snapshot, stream

T = 1_600_000_000


@pytest.fixture
def root(tmp_path) -> str:
    path = tmp_path / "layer"
    path.mkdir()
    return str(path)


def test_every_member_type_with_exact_attributes(root: str) -> None:
    old_umask = os.umask(0o077)  # modes must not depend on the caller's umask
    try:
        tar = build_tar([
            member("d", tarfile.DIRTYPE, mode=0o1705, uid=1, gid=2, mtime=T + 1),
            member("d/f", data=b"known bytes", mode=0o4222, uid=3, gid=4, mtime=T + 2,
                   xattrs={"user.k": b"v\xff\x00", "trusted.t": b"1"}),
            member("d/sgid", data=b"", mode=0o2750, uid=5, gid=6),
            member("d/h", tarfile.LNKTYPE, linkname="d/f"),
            member("d/s", tarfile.SYMTYPE, linkname="../nowhere", uid=7, gid=8, mtime=T + 3),
            member("d/p", tarfile.FIFOTYPE, mode=0o640, uid=9, gid=10, mtime=T + 4),
            member("d/c", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
            member("d/b", tarfile.BLKTYPE, mode=0o660, dev=(7, 42)),
            member("ns", data=b"x" * 1000, pax={"mtime": "1600000000.123456789"}),
        ])
        applied = apply_layer(root, stream(tar))
    finally:
        os.umask(old_umask)
    assert applied == len(b"known bytes") + 1000  # the hard link is not counted
    d = os.lstat(f"{root}/d")
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid, d.st_mtime_ns) == (0o1705, 1, 2, (T + 1) * 10**9)
    f = os.lstat(f"{root}/d/f")
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_gid, f.st_nlink) == (0o4222, 3, 4, 2)
    assert f.st_mtime_ns == (T + 2) * 10**9
    assert open(f"{root}/d/f", "rb").read() == b"known bytes"
    assert os.getxattr(f"{root}/d/f", "user.k") == b"v\xff\x00"
    assert os.getxattr(f"{root}/d/f", "trusted.t") == b"1"
    assert stat.S_IMODE(os.lstat(f"{root}/d/sgid").st_mode) == 0o2750
    assert os.lstat(f"{root}/d/h").st_ino == f.st_ino
    s = os.lstat(f"{root}/d/s")
    assert stat.S_ISLNK(s.st_mode) and os.readlink(f"{root}/d/s") == "../nowhere"
    assert (s.st_uid, s.st_gid, s.st_mtime_ns) == (7, 8, (T + 3) * 10**9)
    p = os.lstat(f"{root}/d/p")
    assert stat.S_ISFIFO(p.st_mode) and (stat.S_IMODE(p.st_mode), p.st_uid, p.st_gid) == (0o640, 9, 10)
    c = os.lstat(f"{root}/d/c")
    assert stat.S_ISCHR(c.st_mode) and c.st_rdev == os.makedev(1, 3) and stat.S_IMODE(c.st_mode) == 0o666
    b = os.lstat(f"{root}/d/b")
    assert stat.S_ISBLK(b.st_mode) and b.st_rdev == os.makedev(7, 42)
    assert os.lstat(f"{root}/ns").st_mtime_ns == 1_600_000_000_123_456_789
    assert sorted(os.listdir(root)) == ["d", "ns"]  # the journal is gone


def test_missing_parents_are_created_0755_and_dir_mtimes_set_last(root: str) -> None:
    apply_layer(root, stream(build_tar([
        member("a", tarfile.DIRTYPE, mode=0o700, mtime=T),
        member("a/f", data=b"1"),  # would bump a's mtime if times were set in order
        member("x/y/z", data=b"deep"),
    ])))
    assert os.lstat(f"{root}/a").st_mtime_ns == T * 10**9
    for d in ("x", "x/y"):
        st = os.lstat(f"{root}/{d}")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0)
    assert open(f"{root}/x/y/z", "rb").read() == b"deep"


def test_dir_over_dir_changes_attributes_only(root: str) -> None:
    os.makedirs(f"{root}/d/old")
    open(f"{root}/d/keep", "w").close()
    apply_layer(root, stream(build_tar([member("d", tarfile.DIRTYPE, mode=0o711, uid=5, gid=6, mtime=T)])))
    st = os.lstat(f"{root}/d")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (0o711, 5, 6, T * 10**9)
    assert sorted(os.listdir(f"{root}/d")) == ["keep", "old"]


@pytest.mark.parametrize(
    ("existing", "new"),
    [("dir", "file"), ("file", "dir"), ("symlink", "file"), ("file", "symlink"), ("dir", "symlink"),
     ("fifo", "file"), ("file", "file")],
)
def test_anything_but_dir_over_dir_is_replaced(root: str, existing: str, new: str) -> None:
    target = f"{root}/t"
    if existing == "dir":
        os.makedirs(f"{target}/sub")
        open(f"{target}/sub/f", "w").close()
    elif existing == "file":
        with open(target, "w") as f:
            f.write("old content that is longer")
    elif existing == "symlink":
        os.symlink("elsewhere", target)
    else:
        os.mkfifo(target)
    kind = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}[new]
    apply_layer(root, stream(build_tar([member("t", kind, data=b"new", linkname="dest", mode=0o640)])))
    st = os.lstat(target)
    if new == "file":
        assert stat.S_ISREG(st.st_mode) and open(target, "rb").read() == b"new"
    elif new == "dir":
        assert stat.S_ISDIR(st.st_mode) and os.listdir(target) == []
    else:
        assert stat.S_ISLNK(st.st_mode) and os.readlink(target) == "dest"
    assert not os.path.lexists(f"{root}/elsewhere")
    assert sorted(os.listdir(root)) == ["t"]


def test_absolute_names_and_writes_through_in_layer_symlinks(root: str) -> None:
    apply_layer(root, stream(build_tar([
        member("run", tarfile.DIRTYPE),
        member("var", tarfile.DIRTYPE),
        member("var/run", tarfile.SYMTYPE, linkname="/run"),
        member("/var/run/pidfile", data=b"42"),
        member("/etc/hostname", data=b"h"),
        member("./usr/../opt/x", data=b"x"),
    ])))
    assert open(f"{root}/run/pidfile", "rb").read() == b"42"
    assert open(f"{root}/etc/hostname", "rb").read() == b"h"
    assert open(f"{root}/opt/x", "rb").read() == b"x"
    assert sorted(os.listdir(root)) == ["etc", "opt", "run", "var"]


def test_root_entry_sets_the_roots_attributes(root: str) -> None:
    apply_layer(root, stream(build_tar([member("./", tarfile.DIRTYPE, mode=0o750, uid=1, gid=1, mtime=T),
                                        member("f", data=b"")])))
    st = os.lstat(root)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (0o750, 1, 1, T * 10**9)


def test_root_mtime_is_kept_when_the_archive_does_not_change_its_entries(root: str) -> None:
    os.mkdir(f"{root}/d")
    os.utime(root, ns=(T * 10**9, T * 10**9))
    apply_layer(root, stream(build_tar([member("d/f", data=b"1"), member("d/f", data=b"2")])))
    assert os.lstat(root).st_mtime_ns == T * 10**9  # the journal came and went
    assert open(f"{root}/d/f", "rb").read() == b"2"


def test_long_names_pax_and_gnu(root: str) -> None:
    long_dir = "/".join(["d" * 60] * 3)
    long_target = "t" * 150
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        apply_layer(root, stream(build_tar([
            member(f"{long_dir}/file-{fmt}", data=b"long"),
            member(f"{long_dir}/link-{fmt}", tarfile.SYMTYPE, linkname=long_target),
            member(f"{long_dir}/hard-{fmt}", tarfile.LNKTYPE, linkname=f"{long_dir}/file-{fmt}"),
        ], fmt=fmt)))
        assert open(f"{root}/{long_dir}/file-{fmt}", "rb").read() == b"long"
        assert os.readlink(f"{root}/{long_dir}/link-{fmt}") == long_target
        assert os.lstat(f"{root}/{long_dir}/hard-{fmt}").st_nlink == 2


def _lower(root: str) -> None:
    os.makedirs(f"{root}/etc/conf.d")
    for name in ("etc/passwd", "etc/conf.d/a", "etc/conf.d/b", "gone"):
        with open(f"{root}/{name}", "w") as f:
            f.write(name)


def test_whiteouts_delete(root: str) -> None:
    _lower(root)
    apply_layer(root, stream(build_tar([
        member(".wh.gone"),
        member("etc/.wh.passwd"),
        member("etc/.wh.missing"),  # nothing to delete: fine
        member("nodir/.wh.x"),  # nor below a missing directory
        member("etc/conf.d/new", data=b"n"),  # same tar, before the opaque marker: stays
        member("etc/conf.d/.wh..wh..opq"),
        member("etc/conf.d/after", data=b"a"),
    ])))
    assert sorted(os.listdir(root)) == ["etc"]
    assert sorted(os.listdir(f"{root}/etc")) == ["conf.d"]
    assert sorted(os.listdir(f"{root}/etc/conf.d")) == ["after", "new"]


def test_opaque_hides_below_but_keeps_this_archives_nested_entries(root: str) -> None:
    os.makedirs(f"{root}/o/sub/deeper")
    open(f"{root}/o/sub/old", "w").close()
    open(f"{root}/o/old", "w").close()
    apply_layer(root, stream(build_tar([
        member("o/sub", tarfile.DIRTYPE),
        member("o/sub/new", data=b""),
        member("o/.wh..wh..opq"),
    ])))
    assert sorted(os.listdir(f"{root}/o")) == ["sub"]
    assert sorted(os.listdir(f"{root}/o/sub")) == ["new"]


def test_whiteouts_overlay(root: str) -> None:
    _lower(root)
    apply_layer(root, stream(build_tar([
        member(".wh.gone"),
        member("etc/.wh.passwd"),
        member("new/.wh.x"),
        member("etc/conf.d/.wh..wh..opq"),
        member("etc/conf.d/c", data=b"c"),
    ])), whiteouts="overlay")
    for path in ("gone", "etc/passwd", "new/x"):
        st = os.lstat(f"{root}/{path}")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, path
    assert os.getxattr(f"{root}/etc/conf.d", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(f"{root}/etc/conf.d")) == ["c"]
    assert not any(n.startswith(".wh.") for _, _, names in os.walk(root) for n in names)


def test_whiteouts_aufs_are_kept_as_files(root: str) -> None:
    _lower(root)
    apply_layer(root, stream(build_tar([
        member(".wh.gone"),
        member("etc/.wh.passwd"),
        member("etc/conf.d/.wh..wh..opq"),
        member(".wh..wh.plnk", tarfile.DIRTYPE),  # aufs bookkeeping never lands in a layer
    ])), whiteouts="aufs")
    assert sorted(os.listdir(root)) == [".wh.gone", "etc"]
    assert sorted(os.listdir(f"{root}/etc")) == [".wh.passwd", "conf.d"]
    assert os.listdir(f"{root}/etc/conf.d") == [".wh..wh..opq"]
    assert stat.S_ISREG(os.lstat(f"{root}/.wh.gone").st_mode)


def test_unknown_whiteout_mode_is_rejected(root: str) -> None:
    with pytest.raises(ValueError, match="whiteouts"):
        apply_layer(root, stream(build_tar([])), whiteouts="zfs")


def test_devices_refused_when_not_allowed_but_fifos_are_fine(root: str) -> None:
    apply_layer(root, stream(build_tar([member("p", tarfile.FIFOTYPE)])), allow_devices=False)
    with pytest.raises(UnsafeArchive, match="device"):
        apply_layer(root, stream(build_tar([member("c", tarfile.CHRTYPE, dev=(1, 3))])), allow_devices=False)
    assert os.listdir(root) == ["p"]


def test_apply_on_a_loop_mounted_btrfs(make_backing) -> None:
    """The journal lives inside the root, so renames never cross a subvolume or device."""
    fs = make_backing("btrfs", 256 << 20)
    root = os.path.join(fs.mountpoint, "layer")
    os.mkdir(root)
    _lower(root)
    before = snapshot(root)
    bad = build_tar([member("etc/passwd", data=b"new"), member(".wh.gone"), member("../x", data=b"")])
    with pytest.raises(UnsafeArchive):
        apply_layer(root, stream(bad))
    assert snapshot(root) == before
    good = build_tar([member("etc/passwd", data=b"new"), member(".wh.gone"), member("etc/.wh..wh..opq")])
    apply_layer(root, stream(good))
    assert os.listdir(root) == ["etc"] and os.listdir(f"{root}/etc") == ["passwd"]


def test_more_directories_than_the_fd_cache_holds(root: str) -> None:
    """Evicting cached directory fds mid-entry must never redirect a write elsewhere."""
    members = [member("first/f", data=b"shared")]
    for i in range(600):
        members.append(member(f"d{i}/file", data=str(i).encode()))
        members.append(member(f"d{i}/link", tarfile.LNKTYPE, linkname="first/f"))
    apply_layer(root, stream(build_tar(members)))
    assert os.lstat(f"{root}/first/f").st_nlink == 601
    for i in range(600):
        assert sorted(os.listdir(f"{root}/d{i}")) == ["file", "link"]
        assert open(f"{root}/d{i}/file", "rb").read() == str(i).encode()


def test_opaque_hides_old_entries_at_any_depth(root: str) -> None:
    """A directory the archive re-declares or writes into stays, but not what it held before."""
    os.makedirs(f"{root}/o/sub")
    os.makedirs(f"{root}/o/x")
    os.makedirs(f"{root}/o/gone/deep")
    for name in ("o/sub/old", "o/x/old", "o/old"):
        open(f"{root}/{name}", "w").close()
    os.symlink("/o/sub", f"{root}/o/link")
    apply_layer(root, stream(build_tar([
        member("o/sub", tarfile.DIRTYPE, mode=0o700),  # declared again, nothing written below
        member("o/x/y", data=b"y"),  # written into an old directory that is not declared
        member("o/.wh..wh..opq"),
    ])))
    assert sorted(os.listdir(f"{root}/o")) == ["sub", "x"]
    assert os.listdir(f"{root}/o/sub") == []
    assert os.listdir(f"{root}/o/x") == ["y"]


def test_setgid_parent_and_default_acl_do_not_leak_into_modes(root: str) -> None:
    """Entries created in a set-gid directory or under a default ACL still get exactly the
    archive's owner and mode (the fast paths that trust open(2)/mkdir(2) must not apply)."""
    os.mkdir(f"{root}/sg")
    os.chown(f"{root}/sg", 0, 777)
    os.chmod(f"{root}/sg", 0o2775)
    os.mkdir(f"{root}/acl")
    # default ACL u::rwx,g::---,o::--- in the kernel's xattr format (version 2; tag, perm, id)
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
                                          for tag, perm in ((0x01, 7), (0x04, 0), (0x20, 0)))
    os.setxattr(f"{root}/acl", "system.posix_acl_default", acl)
    apply_layer(root, stream(build_tar([
        member("sg/f", data=b"1", mode=0o644),
        member("sg/d", tarfile.DIRTYPE, mode=0o755),
        member("acl/f", data=b"2", mode=0o644),
        member("acl/d", tarfile.DIRTYPE, mode=0o755),
    ])))
    for path, mode in (("sg/f", 0o644), ("sg/d", 0o755), ("acl/f", 0o644), ("acl/d", 0o755)):
        st = os.lstat(f"{root}/{path}")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, 0), path


def test_a_layer_left_by_an_interrupted_apply_is_refused(root: str) -> None:
    """A killed apply leaves its journal; applying more on top would hide that it is half done."""
    os.mkdir(f"{root}/.strata-apply-0123456789abcdef")
    with pytest.raises(DriverStateError, match="interrupted"):
        apply_layer(root, stream(build_tar([member("f", data=b"")])))
    assert os.listdir(root) == [".strata-apply-0123456789abcdef"]


def test_no_file_descriptor_leaks(root: str) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    os.makedirs(f"{root}/o/old")
    before = open_fds()
    members = [member(f"d{i}/f", data=b"x") for i in range(600)]
    members += [member("o/.wh..wh..opq"), member("d1", data=b"dir replaced by a file")]
    apply_layer(root, stream(build_tar(members)))
    with pytest.raises(UnsafeArchive):
        apply_layer(root, stream(build_tar([member("d2", data=b"again"), member("../x", data=b"")])))
    for mode in ("overlay", "aufs"):
        apply_layer(root, stream(build_tar([member("o/.wh..wh..opq"), member("o/.wh.gone")])), whiteouts=mode)
    assert open_fds() == before


def test_the_callers_stream_is_read_to_the_end_and_left_open(root: str, tmp_path) -> None:
    path = tmp_path / "layer.tar"
    path.write_bytes(build_tar([member("f", data=b"x" * 5000)]) + bytes(4096))  # trailing padding
    with open(path, "rb") as f:
        assert apply_layer(root, f) == 5000
        assert not f.closed
        assert f.read() == b""


def _lower_copier(root: str, lower: str, calls: list[str]):
    """A copy_up hook as a union driver has one: copies `target` (and missing parents) from
    `lower` into `root`, returning what it made, parents first."""

    def copy_up(target: str) -> list[str]:
        calls.append(target)
        made, here = [], ""
        for part in target.split("/")[:-1]:
            here = os.path.join(here, part)
            if not os.path.exists(os.path.join(root, here)):
                os.mkdir(os.path.join(root, here))
                made.append(here)
        if os.path.exists(os.path.join(lower, target)):
            shutil.copy2(os.path.join(lower, target), os.path.join(root, target))
            made.append(target)
        return made

    return copy_up


def test_hard_link_to_a_lower_file_is_copied_up_through_the_hook(tmp_path) -> None:
    root, lower = str(tmp_path / "upper"), str(tmp_path / "lower")
    os.makedirs(os.path.join(lower, "d"))
    with open(os.path.join(lower, "d", "kept"), "wb") as f:
        f.write(b"lower data")
    os.mkdir(root)
    calls: list[str] = []
    tar = build_tar([member("e/link", tarfile.LNKTYPE, linkname="d/kept")])
    with pytest.raises(UnsafeArchive, match="does not exist in the layer"):
        apply_layer(root, stream(tar))  # no hook: refused, as before
    apply_layer(root, stream(tar), copy_up=_lower_copier(root, lower, calls))
    assert calls == ["d/kept"]
    st_kept, st_link = os.stat(os.path.join(root, "d", "kept")), os.stat(os.path.join(root, "e", "link"))
    assert (st_kept.st_ino, st_kept.st_nlink) == (st_link.st_ino, 2)
    with open(os.path.join(root, "e", "link"), "rb") as f:
        assert f.read() == b"lower data"


def test_a_failed_apply_undoes_what_the_hook_copied_up(tmp_path) -> None:
    root, lower = str(tmp_path / "upper"), str(tmp_path / "lower")
    os.makedirs(os.path.join(lower, "d"))
    with open(os.path.join(lower, "d", "kept"), "wb") as f:
        f.write(b"x")
    os.mkdir(root)
    os.utime(root, ns=(T * 10**9, T * 10**9))
    before = snapshot(root)
    tar = build_tar([member("link", tarfile.LNKTYPE, linkname="d/kept"),
                     member("nowhere", tarfile.LNKTYPE, linkname="missing/file")])
    calls: list[str] = []
    with pytest.raises(UnsafeArchive, match="nor below it"):
        apply_layer(root, stream(tar), copy_up=_lower_copier(root, lower, calls))
    assert calls == ["d/kept", "missing/file"]
    assert snapshot(root) == before
