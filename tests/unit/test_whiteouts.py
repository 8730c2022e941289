"""The whiteout forms, named once in graphdrivers.whiteouts."""

from __future__ import annotations

import os

import pytest

from graphdrivers import whiteouts


def test_names() -> None:
    assert whiteouts.whiteout_path("a/b/c") == "a/b/.wh.c"
    assert whiteouts.whiteout_path("c") == ".wh.c"
    assert whiteouts.target(".wh.c") == "c"
    assert whiteouts.target(whiteouts.OPAQUE) is None
    assert whiteouts.target(".wh..wh.plnk") is None
    assert whiteouts.target("c") is None
    assert whiteouts.is_bookkeeping(".wh..wh.aufs") and not whiteouts.is_bookkeeping(whiteouts.OPAQUE)


def test_formats_by_name() -> None:
    assert whiteouts.format_of("overlay") is whiteouts.OVERLAY
    assert whiteouts.format_of(whiteouts.AUFS) is whiteouts.AUFS
    with pytest.raises(ValueError, match="whiteouts"):
        whiteouts.format_of("zfs")


def test_reading_marks(tmp_path) -> None:
    plain = os.lstat(tmp_path)
    os.mknod(tmp_path / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    device = os.lstat(tmp_path / "gone")
    assert whiteouts.OVERLAY.hides("gone", device) == "gone"
    assert whiteouts.OVERLAY.hides("x", plain) is None
    assert whiteouts.AUFS.hides(".wh.gone", plain) == "gone"
    assert whiteouts.AUFS.skipped(".wh..wh.plnk") and not whiteouts.AUFS.skipped(".wh.gone")
    assert not whiteouts.AUFS.is_opaque(str(tmp_path))
    (tmp_path / whiteouts.OPAQUE).touch()
    assert whiteouts.AUFS.is_opaque(str(tmp_path))
    assert not whiteouts.OVERLAY.is_opaque(str(tmp_path))
    os.setxattr(tmp_path, "trusted.overlay.opaque", b"y")
    assert whiteouts.OVERLAY.is_opaque(str(tmp_path))
