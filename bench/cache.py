"""Page-cache control for `--cache cold`: sync, then drop clean caches, and prove it happened.

A cold repetition calls `drop()` first; the row records `cache_dropped=True` only when the
kernel accepted the write to /proc/sys/vm/drop_caches, and `page_cache_bytes` (the
"Cached" figure of /proc/meminfo right before the measurement) so a reader can see it.
"""

from __future__ import annotations

import os

DROP_CACHES = "/proc/sys/vm/drop_caches"
_drops = 0  # drops this process made: a warm repetition after one must re-warm first


class CacheError(Exception):
    """The page cache could not be dropped (not root, or /proc/sys is read-only)."""


def drop() -> None:
    """Write back dirty pages, then drop the page cache, dentries and inodes."""
    os.sync()
    try:
        with open(DROP_CACHES, "w") as f:
            f.write("3\n")
        global _drops
        _drops += 1
    except OSError as exc:
        raise CacheError(
            f"cannot drop the page cache ({DROP_CACHES}: {exc.strerror}); --cache cold needs root"
        ) from None


def drops() -> int:
    """How many times this process dropped the page cache (a generation counter)."""
    return _drops


def page_cache_bytes() -> int:
    """The kernel's "Cached" figure (page cache, excluding swap cache), in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Cached:"):
                return int(line.split()[1]) * 1024
    return -1
