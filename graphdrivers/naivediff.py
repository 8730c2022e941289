"""Generic diff over two directory trees (Docker's NaiveDiffDriver).

A driver without a native notion of "what this layer changed" mounts the layer and its
parent and lets this module compare them: `changes` walks both trees with Docker's
ChangesDirs rules, `export_stream` turns the changes into a layer tar and `apply`
extracts one (both through `graphdrivers.archive`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import IO

from . import archive, whiteouts
from .archive.export import regular_bytes
from .changes import NOTHING, Change, NewDir, OldSide, walk


def changes(layer_dir: str, parent_dir: str | None) -> list[Change]:
    """What `layer_dir` changed over `parent_dir` (None: an empty parent), sorted by path:
    both are full trees, so whatever the parent has that the layer lacks is deleted."""
    return walk(layer_dir, _Tree(parent_dir) if parent_dir is not None else NOTHING, _read_full)


def _read_full(path: str | bytes) -> NewDir:
    """A full tree stores no whiteouts: every directory replaces the parent's."""
    with os.scandir(path) as it:
        return NewDir(list(it), (), True)


class _Tree:
    """The parent's directory, read once."""

    def __init__(self, path: str) -> None:
        with os.scandir(path) as it:
            self.entries = {e.name: e for e in it}

    def lookup(self, name: str) -> tuple[str, os.stat_result] | None:
        entry = self.entries.get(name)
        return None if entry is None else (entry.path, entry.stat(follow_symlinks=False))

    def child(self, name: str) -> OldSide:
        return _Tree(self.entries[name].path)

    def names(self) -> Iterable[str]:
        return self.entries.keys()


def changes_size(layer_dir: str, changes: list[Change]) -> int:
    """Bytes of regular-file data of the added and changed paths (hard links once), which
    is what `apply` of the exported diff returns."""
    return regular_bytes(os.lstat(os.path.join(layer_dir, c.path.lstrip("/"))) for c in changes if c.kind != "D")


def export_stream(layer_dir: str, changes: list[Change], on_close: Callable[[], None]) -> IO[bytes]:
    """The changes as a layer tar stream; `on_close` runs once the stream is closed."""
    return archive.export_paths(layer_dir, changes, on_close=on_close)


def apply(layer_dir: str, stream: IO[bytes]) -> int:
    """Extract a layer tar into a full-filesystem layer (whiteouts delete)."""
    return archive.apply_layer(layer_dir, stream, whiteouts=whiteouts.DELETE)
