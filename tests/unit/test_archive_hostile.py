"""A corpus of hostile and broken layer tars. Each one is refused (UnsafeArchive) or
confined inside the layer: the sentinel directory next to the layer never changes, and a
refused layer is exactly as it was (contents, modes, owners, xattrs, dir mtimes, links)."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable

import pytest

from graphdrivers.archive import apply_layer
from graphdrivers.errors import UnsafeArchive
from tests.unit.archive_tools import build_tar, member, snapshot, stream

T = 1_500_000_000


@pytest.fixture
def place(tmp_path):
    """(layer root with some content, sentinel dir outside it)."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret").write_bytes(b"do not touch")
    root = tmp_path / "layer"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_bytes(b"root:x:0:0")
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "f").write_bytes(b"f")
    os.link(root / "dir" / "sub" / "f", root / "dir" / "f-link")
    os.symlink("/etc", root / "etc-link")
    os.setxattr(root / "dir", "user.mark", b"1")
    os.chmod(root / "dir" / "sub", 0o4711)
    os.chown(root / "etc" / "passwd", 7, 8)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(T * 10**9, T * 10**9), follow_symlinks=False)
    os.utime(root, ns=(T * 10**9, T * 10**9))
    os.utime(tmp_path, ns=(T * 10**9, T * 10**9))
    return str(root), str(sentinel)


def _check(place, data: bytes, *, refused: bool, allow_devices: bool = True, match: str | None = None) -> None:
    root, sentinel = place
    outside = os.path.dirname(root)
    before, sentinel_before = snapshot(root), snapshot(sentinel)
    outside_before = snapshot(outside)
    if refused:
        with pytest.raises(UnsafeArchive, match=match):
            apply_layer(root, stream(data), allow_devices=allow_devices)
        assert snapshot(root) == before
        assert snapshot(outside) == outside_before
    else:
        apply_layer(root, stream(data), allow_devices=allow_devices)
    assert snapshot(sentinel) == sentinel_before
    assert sorted(os.listdir(outside)) == ["layer", "sentinel"]
    assert not any(name.startswith(".strata-apply-") for name in os.listdir(root))


def _abs(place) -> str:
    return place[1]


# -- refused ---------------------------------------------------------------------------

REFUSED: dict[str, Callable[[str], list]] = {
    "dotdot-name": lambda s: [member("../sentinel/pwned", data=b"x")],
    "dotdot-deeper": lambda s: [member("dir/../../sentinel/pwned", data=b"x")],
    "dotdot-after-good-entries": lambda s: [member("etc/passwd", data=b"replaced"), member("a/b/c", data=b"x"),
                                             member("../pwned", data=b"x")],
    "symlink-out-then-write-through": lambda s: [member("evil", tarfile.SYMTYPE, linkname=s),
                                                  member("evil/pwned", data=b"x")],
    "relative-symlink-out-then-write": lambda s: [member("evil", tarfile.SYMTYPE, linkname="../../../../../" + s),
                                                   member("evil/pwned", data=b"x")],
    "symlink-chain-climbing-out": lambda s: [member("l1", tarfile.SYMTYPE, linkname=".."),
                                             member("l2", tarfile.SYMTYPE, linkname="l1/.."),
                                             member("l3", tarfile.SYMTYPE, linkname="l2/../sentinel"),
                                             member("l3/pwned", data=b"x")],
    "hardlink-to-host-passwd": lambda s: [member("pw", tarfile.LNKTYPE, linkname="/etc/shadow")],
    "hardlink-dotdot": lambda s: [member("out", tarfile.LNKTYPE, linkname="../sentinel/secret")],
    "hardlink-through-symlink-out": lambda s: [member("evil", tarfile.SYMTYPE, linkname=s),
                                                member("h", tarfile.LNKTYPE, linkname="evil/secret")],
    "hardlink-to-directory": lambda s: [member("h", tarfile.LNKTYPE, linkname="dir")],
    "whiteout-dotdot": lambda s: [member(".wh..."), member("x", data=b"")],
    "whiteout-dotdot-nested": lambda s: [member("dir/.wh..."), member("x", data=b"")],
    "whiteout-dot": lambda s: [member("dir/.wh..")],
    "whiteout-empty-name": lambda s: [member("dir/.wh.")],
    "nul-in-name": lambda s: [member("ok", data=b""), member("x", pax={"path": "a\0b"})],
    "nul-in-symlink-target": lambda s: [member("s", tarfile.SYMTYPE, pax={"linkpath": "a\0b"})],
    "name-over-path-max": lambda s: [member("a/" * 2100 + "f", data=b"")],
    "component-over-name-max": lambda s: [member("d" * 300, data=b"")],
    "symlink-loop": lambda s: [member("loop", tarfile.SYMTYPE, linkname="loop"), member("loop/x", data=b"")],
    "file-as-parent": lambda s: [member("etc/passwd/x", data=b"")],
    "regular-file-as-root": lambda s: [member(".", data=b"")],
    "pax-negative-uid": lambda s: [member("x", data=b"", pax={"uid": "-5"})],
    "pax-bad-mtime": lambda s: [member("x", data=b"", pax={"mtime": "soon"})],
    "gnu-sparse-member": lambda s: [member("x", data=b"", pax={"GNU.sparse.size": "1000"})],
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(place, case: str) -> None:
    _check(place, build_tar(REFUSED[case](_abs(place))), refused=True)


def test_dotdot_is_refused_with_a_clear_message(place) -> None:
    _check(place, build_tar([member("../x", data=b"")]), refused=True, match="climbs out")


def test_devices_refused_when_not_allowed(place) -> None:
    data = build_tar([member("etc/passwd", data=b"new"), member("dev/sda", tarfile.BLKTYPE, dev=(8, 0))])
    _check(place, data, refused=True, allow_devices=False, match="device")


def _truncated_variants() -> dict[str, bytes]:
    good = build_tar([member("etc/passwd", data=b"new"), member("big", data=b"z" * 5000), member("last", data=b"")])
    header_at = good.index(b"big") // 512 * 512
    huge_info, _ = member("huge")
    huge_info.size = 1 << 40  # declared; the stream holds 10 bytes
    huge = good[:header_at] + huge_info.tobuf(tarfile.PAX_FORMAT) + b"0123456789" + bytes(1024)
    return {
        "in-file-data": good[: header_at + 512 + 1000],
        "in-a-header": good[: header_at + 100],
        "before-end-marker": good[: good.rindex(b"last") // 512 * 512 + 512],
        "huge-declared-size": huge,
        "empty-stream": b"",
        "garbage": os.urandom(4096),
        "garbage-after-entries": good[:header_at] + b"\x01" * 2048,
        "bad-checksum": good[:header_at] + bytes([good[header_at] ^ 1]) + good[header_at + 1 :],
    }


@pytest.mark.parametrize("case", sorted(_truncated_variants()))
def test_truncated_and_garbage_streams(place, case: str) -> None:
    _check(place, _truncated_variants()[case], refused=True)


def test_fails_half_way_after_replacing_and_deleting(place) -> None:
    """Replaced files, a replaced directory, whiteouts, an opaque dir, changed directory
    attributes and xattrs, hard links -- then a hostile entry: all undone."""
    data = build_tar([
        member("./", tarfile.DIRTYPE, mode=0o700, uid=3, gid=3),
        member("dir", tarfile.DIRTYPE, mode=0o700, uid=9, gid=9, xattrs={"user.mark": b"2", "user.new": b"n"}),
        member("etc/passwd", data=b"evil"),
        member("etc-link", data=b"now a file"),
        member("dir/sub", data=b"a file over a dir"),
        member("dir/.wh.f-link"),
        member("etc/.wh..wh..opq"),
        member("etc/new/deep/file", data=b"n"),
        member("h", tarfile.LNKTYPE, linkname="etc/new/deep/file"),
        member("dev/null", tarfile.CHRTYPE, dev=(1, 3)),
        member("../../escape", data=b""),
    ])
    _check(place, data, refused=True)


# -- confined --------------------------------------------------------------------------


def test_absolute_name_lands_inside(place) -> None:
    root, sentinel = place
    _check(place, build_tar([member(sentinel + "/pwned", data=b"x")]), refused=False)
    assert open(root + sentinel + "/pwned", "rb").read() == b"x"


def test_symlink_chain_is_resolved_inside_the_layer(place) -> None:
    """l3 -> l2/../sentinel -> l1/../../sentinel -> ../../../sentinel: clamped at the layer
    root, so the write lands in the layer's own /sentinel."""
    root, _ = place
    os.mkdir(f"{root}/sentinel")
    data = build_tar([member("l1", tarfile.SYMTYPE, linkname=".."),
                      member("l2", tarfile.SYMTYPE, linkname="l1/.."),
                      member("l3", tarfile.SYMTYPE, linkname="l2/../sentinel"),
                      member("l3/pwned", data=b"x")])
    _check(place, data, refused=False)
    assert open(f"{root}/sentinel/pwned", "rb").read() == b"x"


def test_file_over_symlink_to_outside_replaces_the_link(place) -> None:
    root, sentinel = place
    data = build_tar([member("evil", tarfile.SYMTYPE, linkname=sentinel + "/secret"),
                      member("evil", data=b"overwrite?")])
    _check(place, data, refused=False)
    assert open(f"{root}/evil", "rb").read() == b"overwrite?"


def test_hardlink_to_absolute_path_means_inside(place) -> None:
    root, _ = place
    _check(place, build_tar([member("pw", tarfile.LNKTYPE, linkname="/etc/passwd")]), refused=False)
    assert os.lstat(f"{root}/pw").st_ino == os.lstat(f"{root}/etc/passwd").st_ino


def test_whiteout_through_symlink_out_deletes_nothing_outside(place) -> None:
    _, sentinel = place
    data = build_tar([member("evil", tarfile.SYMTYPE, linkname=sentinel), member("evil/.wh.secret")])
    _check(place, data, refused=False)


def test_whiteout_of_directory_through_in_layer_symlink(place) -> None:
    root, _ = place
    _check(place, build_tar([member("etc-link/.wh.passwd")]), refused=False)
    assert os.listdir(f"{root}/etc") == []


def test_device_nodes_are_allowed_by_default(place) -> None:
    root, _ = place
    _check(place, build_tar([member("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))]), refused=False)
    assert os.lstat(f"{root}/dev/null").st_rdev == os.makedev(1, 3)


def test_write_and_hard_link_through_absolute_in_layer_symlink(place) -> None:
    """etc-link -> /etc is the layer's /etc, never the host's."""
    root, _ = place
    data = build_tar([member("etc-link/newfile", data=b"inside"),
                      member("h", tarfile.LNKTYPE, linkname="etc-link/passwd")])
    _check(place, data, refused=False)
    assert open(f"{root}/etc/newfile", "rb").read() == b"inside"
    assert os.lstat(f"{root}/h").st_ino == os.lstat(f"{root}/etc/passwd").st_ino
    assert not os.path.exists("/etc/newfile")


@pytest.mark.parametrize("mode", ["delete", "overlay", "aufs"])
def test_overlayfs_private_xattrs_are_not_planted(place, mode: str) -> None:
    """trusted.overlay.redirect/metacopy would make an overlay mount look elsewhere."""
    root, _ = place
    data = build_tar([member("f", data=b"x", xattrs={"trusted.overlay.redirect": b"/etc/passwd",
                                                     "trusted.overlay.metacopy": b"",
                                                     "user.overlay.opaque": b"y", "user.fine": b"1"})])
    apply_layer(root, stream(data), whiteouts=mode)
    assert os.listxattr(f"{root}/f") == ["user.fine"]
