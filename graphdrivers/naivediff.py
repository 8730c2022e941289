"""Generic diff over two mounted directory trees (Docker's NaiveDiffDriver).

INTERFACE PLACEHOLDER -- implemented by the archive/naivediff work item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from .driver import Change


def changes(layer_dir: str, parent_dir: str | None) -> list[Change]:
    raise NotImplementedError


def changes_size(layer_dir: str, changes: list[Change]) -> int:
    raise NotImplementedError


def export_stream(layer_dir: str, changes: list[Change], on_close: Callable[[], None]) -> IO[bytes]:
    raise NotImplementedError


def apply(layer_dir: str, stream: IO[bytes]) -> int:
    raise NotImplementedError
