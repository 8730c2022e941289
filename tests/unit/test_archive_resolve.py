"""clean_name, the lexical half of confinement: equal to a plain reference on any name."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
