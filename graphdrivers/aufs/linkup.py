"""Copy up the lower-layer target of a layer tar's hard link while the tar is applied.

A tar entry `h/link -> h/kept` where `h/kept` lives in a lower layer cannot be applied to
the branch alone. The union would copy the target up on `link`; the archive code asks for
the same here (its journal undoes it if the apply fails), with the union's own lookup and
copy-up rules.
"""

from __future__ import annotations

import os
import shutil

from .unionfs.tree import Union


def copy_up_link_target(union: Union, branch: str, target: str) -> list[str]:
    """Copy `target` from a lower branch into `branch` (the union's writable one); returns
    the paths created, parents first (none when the union shows no lower file there). A
    failed copy leaves nothing behind."""
    node = union.by_path[b""]
    for part in os.fsencode(target).split(b"/"):
        found = union.lookup(node, part) if node.is_dir else None
        if found is None:
            return []
        node = found
    if node.is_dir or node.entry.branch == 0:
        return []
    parts = target.split("/")
    missing = [p for p in (os.path.join(branch, *parts[: i + 1]) for i in range(len(parts))) if not os.path.lexists(p)]
    try:
        union.copy_up(node)
    except BaseException:
        remove_made([p for p in missing if os.path.lexists(p)])
        raise
    return [p for p in missing if os.path.lexists(p)]


def remove_made(made: list[str]) -> None:
    for path in reversed(made):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
