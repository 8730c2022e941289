"""clean_name, the lexical half of confinement (equal to a plain reference on any name), and
open_in_root, the confined open that tar-split replay reads layers with."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphdrivers.archive import resolve
from graphdrivers.archive.resolve import clean_name
from graphdrivers.errors import UnsafeArchive


def _reference(name: str) -> str | None:
    """None when the name climbs out; else the normalised relative path ("" is the root)."""
    depth = 0
    for part in name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return None
        elif part not in ("", "."):
            depth += 1
    clean = posixpath.normpath("/" + name).lstrip("/")
    return "" if clean == "." else clean


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab./", max_size=14))
def test_clean_name_matches_reference(name: str) -> None:
    expected = _reference(name)
    if expected is None:
        with pytest.raises(UnsafeArchive):
            clean_name(name)
    else:
        assert clean_name(name) == expected


def test_open_in_root_stays_in_the_root_and_never_follows_the_last_component(tmp_path) -> None:
    root = tmp_path / "layer"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "file").write_bytes(b"inside")
    (tmp_path / "file").write_bytes(b"HOST!")
    (root / "up").symlink_to("../..")  # climbs no higher than the root
    (root / "leaf").symlink_to("etc/file")
    fd = resolve.open_in_root(str(root), "up/etc/file")
    try:
        assert os.read(fd, 16) == b"inside"
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        resolve.open_in_root(str(root), "up/../file")  # /file of the layer, not of the host
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        resolve.open_in_root(str(root), "leaf")
    with pytest.raises(UnsafeArchive, match="climbs out"):
        resolve.open_in_root(str(root), "../file")
