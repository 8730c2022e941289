"""The vfs driver: full copies, no copy-on-write; works on any backing filesystem."""

from ..registry import register
from .driver import VfsDriver, factory

# The lowest priority of the built-in drivers: automatic selection falls back to it only
# when no copy-on-write driver can run (as Docker's classic engine did).
register("vfs", factory, priority=50, backing_fs="ext4")

__all__ = ["VfsDriver", "factory"]
