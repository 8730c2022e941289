"""Layer archives: apply and export uncompressed layer tars (OCI image layer format).

`apply_layer` extracts a tar into a directory with the OCI whiteout rules, never writing
outside it and leaving it untouched on failure; `export_paths` / `export_dir` write
layer tars as streams; `dir_diff_size` sizes a driver's own layer directory.
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .apply import WHITEOUT_MODES, apply_layer
    from .export import dir_diff_size, export_dir, export_paths

__all__ = ["WHITEOUT_MODES", "apply_layer", "dir_diff_size", "export_dir", "export_paths"]
_HOME = {"WHITEOUT_MODES": "apply", "apply_layer": "apply", "dir_diff_size": "export", "export_dir": "export",
         "export_paths": "export"}


def __getattr__(name: str) -> object:
    """The names above, imported on first use: importing one submodule (journal, for the
    change walker) should not load tarfile and the whole applier, which `strata run`
    never needs."""
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
