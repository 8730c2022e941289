"""Copy up the lower-layer targets of a layer tar's hard links before applying it.

A tar entry `h/link -> h/kept` where `h/kept` lives in a lower layer cannot be applied to
the branch alone (the archive code refuses links that leave the directory). The union
would copy the target up on `link`; this does the same ahead of time, with the union's
own lookup and copy-up rules, and can undo it if the apply still fails.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from typing import IO

from .unionfs.tree import Union


def link_targets(stream: IO[bytes]) -> list[str]:
    """The hard-link targets a layer tar names, as clean relative paths."""
    targets = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.islnk():
                name = os.path.normpath(member.linkname.lstrip("/"))
                if name not in targets and not name.startswith(".."):
                    targets.append(name)
    return targets


def copy_up_link_targets(branches: list[str], targets: list[str]) -> list[str]:
    """Copy each lower-layer target into `branches[0]`; returns what was created, in order."""
    union = Union(branches)
    made: list[str] = []
    for target in targets:
        node = union.by_path[b""]
        for part in os.fsencode(target).split(b"/"):
            found = union.lookup(node, part) if node.is_dir else None
            if found is None:
                break
            node = found
        else:
            if node.is_dir or node.entry.branch == 0:
                continue
            before = _missing_prefixes(branches[0], target)
            try:
                union.copy_up(node)
            finally:
                made.extend(p for p in before if os.path.lexists(p))
    return made


def _missing_prefixes(branch: str, target: str) -> list[str]:
    parts = target.split("/")
    paths = [os.path.join(branch, *parts[: i + 1]) for i in range(len(parts))]
    return [p for p in paths if not os.path.lexists(p)]


def undo(made: list[str]) -> None:
    for path in reversed(made):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
