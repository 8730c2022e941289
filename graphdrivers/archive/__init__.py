"""Layer archives: apply and export uncompressed layer tars (OCI image layer format).

`apply_layer` extracts a tar into a directory with the OCI whiteout rules, never writing
outside it and leaving it untouched on failure; `export_paths` / `export_dir` write
layer tars as streams; `dir_diff_size` sizes a driver's own layer directory.
"""

from .apply import WHITEOUT_MODES, apply_layer
from .export import dir_diff_size, export_dir, export_paths

__all__ = ["WHITEOUT_MODES", "apply_layer", "dir_diff_size", "export_dir", "export_paths"]
