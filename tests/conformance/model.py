"""A model of a layer's filesystem and of what `changes` must report between two layers.

The contract's `changes(id, parent)` describes the difference between what the parent's
mount shows and what the layer's mount shows, in the form Docker's ChangesDirs gives it:

- "A" for every path that exists only in the layer (every path inside an added directory
  too);
- "D" for a path that exists only in the parent, reported once at the top of a deleted
  subtree: only when its parent directory is a directory in both layers;
- "C" for a path in both whose type, mode, owner, user.* xattrs or content (bytes,
  symlink target) differs -- a directory's size and mtime are not a change;
- "C" for every directory (other than "/") holding a change below it, unless it is
  already "A" or "C".

Native diffs (aufs, overlay2) must give exactly this list, so whiteouts, opaque
directories and copied-up directories with nothing changed must not leak into it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace

from graphdrivers import Change

from .treeutil import Entry


@dataclass(frozen=True)
class Node:
    """A model path: Entry facts plus `version`, which a re-creation always changes."""

    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes | str | None = None
    version: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()

    def entry(self) -> Entry:
        return Entry(self.kind, self.mode, self.uid, self.gid, self.data, self.xattrs)


def _parent(path: str) -> str:
    return os.path.dirname(path)


def expected_changes(old: dict[str, Node], new: dict[str, Node]) -> list[Change]:
    """What `changes(layer, parent)` must return for a parent `old` and a layer `new`."""
    found: dict[str, str] = {}
    for path, node in new.items():
        if path == "/":
            continue
        before = old.get(path)
        if before is None:
            found[path] = "A"
        elif (before.kind, before.mode, before.uid, before.gid, before.xattrs) != (
            node.kind,
            node.mode,
            node.uid,
            node.gid,
            node.xattrs,
        ):
            found[path] = "C"
        elif node.kind != "dir" and before.version != node.version:
            found[path] = "C"
    for path, _node in old.items():
        if path == "/" or path in new:
            continue
        up = _parent(path)
        if old[up].kind == "dir" and up in new and new[up].kind == "dir":
            found[path] = "D"
    for path in list(found):
        up = _parent(path)
        while up != "/":
            found.setdefault(up, "C")
            up = _parent(up)
    return sorted(Change(path, kind) for path, kind in found.items())


@dataclass
class FsModel:
    """A filesystem as a dict of path -> Node, and the same operations applied to a real
    directory. Creating operations make missing parent directories (mkdir -p); the others
    act on the path or its deepest existing ancestor. An operation that makes no sense
    on the model (a file in the way, a chmod of a symlink...) is skipped on both sides."""

    nodes: dict[str, Node] = field(default_factory=lambda: {"/": Node("dir", 0o755)})
    counter: int = 0

    def copy(self) -> FsModel:
        return FsModel(dict(self.nodes), self.counter)

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _is_dir(self, path: str) -> bool:
        node = self.nodes.get(path)
        return node is not None and node.kind == "dir"

    def _drop(self, path: str) -> None:
        for p in [p for p in self.nodes if p == path or p.startswith(path + "/")]:
            del self.nodes[p]

    def _make_parents(self, root: str, path: str) -> bool:
        """mkdir -p of `path`'s parent; False (nothing made) when a non-directory is in the way."""
        missing = []
        up = _parent(path)
        while up not in self.nodes:
            missing.append(up)
            up = _parent(up)
        if not self._is_dir(up):
            return False
        for d in reversed(missing):
            os.mkdir(root + d)
            os.chmod(root + d, 0o755)
            self.nodes[d] = Node("dir", 0o755, version=self._next())
        return True

    def _existing(self, path: str) -> str | None:
        """`path`, or its deepest existing ancestor below "/": so most operations hit something."""
        while path != "/" and path not in self.nodes:
            path = _parent(path)
        return None if path == "/" else path

    def apply(self, root: str, op: tuple) -> None:
        """Apply `op` to the model and to the directory tree at `root`."""
        kind, path = op[0], op[1]
        if kind in ("write", "mkdir", "symlink"):
            node = self.nodes.get(path)
            if (node is not None and node.kind == "dir") or not self._make_parents(root, path):
                return
            if kind == "write":
                self._write(root + path, path, node)
            elif node is None and kind == "mkdir":
                os.mkdir(root + path)
                os.chmod(root + path, 0o755)
                self.nodes[path] = Node("dir", 0o755, version=self._next())
            elif node is None:
                v = self._next()
                target = f"../target-{v}"  # unique, so a re-created link always differs
                os.symlink(target, root + path)
                self.nodes[path] = Node("symlink", 0o777, 0, 0, target, v)
            return
        found = self._existing(path)
        if found is None:
            return
        node, real = self.nodes[found], root + found
        if kind == "rm" and node.kind != "dir":
            os.unlink(real)
            del self.nodes[found]
        elif kind == "rmtree" and node.kind == "dir":
            shutil.rmtree(real)
            self._drop(found)
        elif kind == "chmod" and node.kind != "symlink":
            os.chmod(real, op[2])
            self.nodes[found] = replace(node, mode=op[2])
        elif kind == "setxattr" and node.kind != "symlink":
            name, value = op[2]
            os.setxattr(real, name, value)
            xattrs = tuple(sorted({**dict(node.xattrs), name: value}.items()))
            self.nodes[found] = replace(node, xattrs=xattrs)
        elif kind == "chown":
            os.chown(real, op[2], op[2], follow_symlinks=False)
            if node.kind != "symlink" and node.mode & 0o6000:
                os.chmod(real, node.mode)  # chown clears setuid/setgid; keep the model's mode
            self.nodes[found] = replace(node, uid=op[2], gid=op[2])

    def _write(self, real: str, path: str, node: Node | None) -> None:
        v = self._next()
        data = (f"v{v}:" * (v + 1)).encode()  # longer than any content before: no diff can miss it
        if node is not None and node.kind == "symlink":
            os.unlink(real)
            node = None
        with open(real, "wb") as f:
            f.write(data)
        if node is None:
            os.chmod(real, 0o644)
            self.nodes[path] = Node("file", 0o644, data=data, version=v)
        else:  # rewriting a file keeps its mode, owner and xattrs
            self.nodes[path] = replace(node, data=data, version=v)

    def entries(self) -> dict[str, Entry]:
        return {p: n.entry() for p, n in self.nodes.items() if p != "/"}
