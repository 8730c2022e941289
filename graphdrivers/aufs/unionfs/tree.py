"""The union of one writable branch over read-only branches, with aufs' rules.

Paths are bytes relative to a branch root ("" is the root, b"/etc/passwd" a file), so a
branch's real path is a plain concatenation. Each directory's merged listing is built
once, on first use, by scanning its branches top-down (the index: name -> `Entry`), and
is then kept current by the operations themselves -- every change to the union goes
through this class, so a lookup never rescans a branch. Inode numbers are handed out
per union path (hard links in the writable branch share one) and stay stable for as
long as the filesystem is mounted.

Errors are raised as OSError with the errno the kernel should return.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from typing import TYPE_CHECKING

from ... import whiteouts
from .. import whiteout
from . import copyup

if TYPE_CHECKING:
    from ...lazy.layer import LazyLayer

ROOT_INODE = 1  # FUSE's root node id; kept here so this module has no FUSE dependency


def _err(code: int, path: bytes = b"") -> OSError:
    return OSError(code, os.strerror(code), os.fsdecode(path) if path else None)


class Entry:
    """A name in a merged directory listing.

    `branch` is the top-most branch that holds the name; `dirs` (directories only) lists
    the branches whose directories merge into it, top first; `lower` says a version of
    the name exists beneath the writable one, so removing it needs a whiteout.
    """

    __slots__ = ("branch", "dirs", "lower")

    def __init__(self, branch: int, dirs: list[int] | None, lower: bool) -> None:
        self.branch = branch
        self.dirs = dirs
        self.lower = lower


class Node:
    """An inode of the union: one path (plus aliases for hard links), its entry, caches."""

    __slots__ = ("attr", "entry", "ino", "listing", "name", "parent", "path", "st", "unlinked")

    def __init__(self, ino: int, parent: Node | None, name: bytes, path: bytes, entry: Entry) -> None:
        self.ino = ino
        self.parent = parent
        self.name = name
        self.path = path
        self.entry = entry
        self.listing: dict[bytes, Entry] | None = None
        self.st: os.stat_result | None = None  # cached only while the node lives in a read-only branch
        self.attr: object = None  # the FUSE attributes built from `st`, cached alike
        self.unlinked = False

    @property
    def is_dir(self) -> bool:
        return self.entry.dirs is not None


def build_listing(roots: list[bytes], path: bytes, dirs: list[int]) -> dict[bytes, Entry]:
    """Merge directory `path` of branches `dirs` (top first) the way aufs does."""
    entries: dict[bytes, Entry] = {}
    hidden: set[bytes] = set()  # whited out by a branch above the one being read
    closed: set[bytes] = set()  # a non-directory above hides every lower version
    for b in dirs:
        try:
            branch_dir = whiteout.read_dir(roots[b] + path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for de in branch_dir.entries:
            name = de.name
            if name in hidden:
                continue
            is_dir = de.is_dir(follow_symlinks=False)
            e = entries.get(name)
            if e is None:
                entries[name] = Entry(b, [b] if is_dir else None, False)
            elif name not in closed:
                e.lower = True
                if is_dir and e.dirs is not None:
                    e.dirs.append(b)
                else:
                    closed.add(name)
        hidden.update(branch_dir.whiteouts)
        if branch_dir.opaque:
            break
    return entries


def make_marker(path: bytes) -> None:
    """A whiteout or opaque marker: an empty root-owned regular file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, whiteouts.MARKER_MODE)
    os.close(fd)


class Union:
    """The merged view of `branches` (writable first) and every operation that changes it.

    `lazy` maps the index of a read-only branch whose files are still arriving to its
    `LazyLayer`: its metadata is all in the branch already, and a file's data is fetched
    before anything copies it (`fill`); reads are the operations' business."""

    def __init__(self, branches: list[str], lazy: dict[int, LazyLayer] | None = None) -> None:
        if not branches:
            raise ValueError("a union needs at least its writable branch")
        self.lazy = lazy or {}
        self.roots = [os.fsencode(os.path.abspath(b)) for b in branches]
        self.rw = self.roots[0]
        root = Node(ROOT_INODE, None, b"", b"", Entry(0, list(range(len(self.roots))), False))
        self.nodes: dict[int, Node] = {ROOT_INODE: root}
        self.by_path: dict[bytes, Node] = {b"": root}
        self.aliases: dict[int, list[tuple[Node, bytes]]] = {}  # ino -> extra (parent, name) of hard links
        self.by_inode: dict[tuple[int, int], Node] = {}  # (branch, real inode) of hard-linked files -> node
        self._next_ino = itertools.count(ROOT_INODE + 1)
        self._tmp = itertools.count()

    # -- lookup ------------------------------------------------------------------------

    def real(self, node: Node) -> bytes:
        return self.roots[node.entry.branch] + node.path

    def listing(self, node: Node) -> dict[bytes, Entry]:
        listing = node.listing
        if listing is None:
            if node.entry.dirs is None:
                raise _err(errno.ENOTDIR, node.path)
            listing = node.listing = build_listing(self.roots, node.path, node.entry.dirs)
        return listing

    def stat(self, node: Node) -> os.stat_result:
        st = node.st
        if st is None:
            st = os.lstat(self.real(node))
            if node.entry.branch:
                node.st = st
        return st

    def lookup(self, parent: Node, name: bytes) -> Node | None:
        path = parent.path + b"/" + name
        node = self.by_path.get(path)
        if node is not None:
            return node
        entry = self.listing(parent).get(name)
        if entry is None:
            return None
        return self._new_node(parent, name, path, entry)

    def _new_node(self, parent: Node, name: bytes, path: bytes, entry: Entry) -> Node:
        st = os.lstat(self.roots[entry.branch] + path)
        key = None
        if entry.dirs is None and st.st_nlink > 1:
            key = (entry.branch, st.st_ino)
            other = self.by_inode.get(key)
            if other is not None and not other.unlinked:
                self.aliases.setdefault(other.ino, []).append((parent, name))
                self.by_path[path] = other
                return other
        node = Node(next(self._next_ino), parent, name, path, entry)
        if entry.branch:
            node.st = st
        self.nodes[node.ino] = node
        self.by_path[path] = node
        if key is not None:
            self.by_inode[key] = node
        return node

    def new_id(self, node: Node) -> int:
        """Another number that reaches `node` (as FUSE node id); its inode number stays."""
        ino = next(self._next_ino)
        self.nodes[ino] = node
        return ino

    def lazy_layer(self, node: Node) -> LazyLayer | None:
        """The lazy layer `node`'s data comes from, if its file may still be arriving."""
        return self.lazy.get(node.entry.branch) if self.lazy and node.entry.dirs is None else None

    def fill(self, node: Node) -> None:
        """Fetch all of a lazy file's data (before a copy-up reads it whole)."""
        layer = self.lazy_layer(node)
        if layer is not None:
            layer.ensure(os.fsdecode(node.path))

    def get(self, ino: int) -> Node:
        try:
            return self.nodes[ino]
        except KeyError:
            raise _err(errno.ENOENT) from None

    # -- copy-up -----------------------------------------------------------------------

    def ensure_rw_dir(self, node: Node) -> None:
        """Give directory `node` (and its ancestors) a copy in the writable branch."""
        entry = node.entry
        if entry.branch == 0:
            return
        assert node.parent is not None and entry.dirs is not None
        self.ensure_rw_dir(node.parent)
        copyup.copy_dir(self.roots[entry.branch] + node.path, self.rw + node.path)
        entry.dirs.insert(0, 0)
        entry.branch = 0
        entry.lower = True
        node.st = None

    def copy_up(self, node: Node) -> None:
        """Make `node` live in the writable branch before its first change."""
        entry = node.entry
        if entry.branch == 0:
            return
        if node.unlinked:
            raise _err(errno.ENOENT, node.path)
        if entry.dirs is not None:
            self.ensure_rw_dir(node)
            return
        assert node.parent is not None
        self.ensure_rw_dir(node.parent)
        branch = entry.branch
        self.fill(node)
        copyup.copy_node(self.roots[branch] + node.path, self.rw + node.path, b"cp.%d" % next(self._tmp))
        entry.branch = 0
        entry.lower = True
        node.st = None
        for parent, name in self.aliases.get(node.ino, ()):
            self._link_up(node, parent, name)

    def _link_up(self, node: Node, parent: Node, name: bytes) -> None:
        """Give another name of `node` (already in the writable branch) its own link there,
        so hard links stay links after a copy-up, as the kernel's index feature does."""
        entry = self.listing(parent)[name]
        if entry.branch == 0:
            return
        self.ensure_rw_dir(parent)
        os.link(self.real(node), self.rw + parent.path + b"/" + name)
        entry.branch = 0
        entry.lower = True

    # -- creating names ----------------------------------------------------------------

    def prepare_new(self, parent: Node, name: bytes) -> tuple[bytes, bool]:
        """Check `name` is free, copy the parent up, drop a whiteout of the name.

        Returns the real path to create and whether a whiteout was removed (a lower
        version exists beneath, so a directory made there must be opaque).
        """
        if name[:4] == whiteouts.PREFIX_B:
            raise _err(errno.EPERM, name)  # aufs reserves .wh. names
        if name in self.listing(parent):
            raise _err(errno.EEXIST, parent.path + b"/" + name)
        self.ensure_rw_dir(parent)
        try:
            os.unlink(self.rw + parent.path + b"/" + whiteouts.PREFIX_B + name)
            whited_out = True
        except FileNotFoundError:
            whited_out = False
        return self.rw + parent.path + b"/" + name, whited_out

    def added(self, parent: Node, name: bytes, *, is_dir: bool, whited_out: bool) -> Node:
        """Record a name just made in the writable branch."""
        path = parent.path + b"/" + name
        if is_dir and whited_out:
            make_marker(self.rw + path + b"/" + whiteouts.OPAQUE_B)
        entry = Entry(0, [0] if is_dir else None, whited_out)
        self.listing(parent)[name] = entry
        node = self._new_node(parent, name, path, entry)
        if is_dir:
            node.listing = {}
        return node

    def link(self, node: Node, parent: Node, name: bytes) -> Node:
        if node.entry.dirs is not None:
            raise _err(errno.EPERM, node.path)
        self.copy_up(node)
        target, whited_out = self.prepare_new(parent, name)
        os.link(self.real(node), target)
        self.listing(parent)[name] = Entry(0, None, whited_out)
        self.aliases.setdefault(node.ino, []).append((parent, name))
        self.by_path[parent.path + b"/" + name] = node
        self.by_inode[(0, os.lstat(target).st_ino)] = node
        return node

    # -- removing names ----------------------------------------------------------------

    def remove(self, parent: Node, name: bytes, *, want_dir: bool) -> None:
        """unlink/rmdir: delete the writable copy, leave a whiteout if a lower one exists."""
        listing = self.listing(parent)
        entry = listing.get(name)
        path = parent.path + b"/" + name
        if entry is None:
            raise _err(errno.ENOENT, path)
        is_dir = entry.dirs is not None
        if want_dir and not is_dir:
            raise _err(errno.ENOTDIR, path)
        if not want_dir and is_dir:
            raise _err(errno.EISDIR, path)
        node = self.lookup(parent, name)
        assert node is not None
        if is_dir and self.listing(node):
            raise _err(errno.ENOTEMPTY, path)
        last = self.stat(node)
        if entry.branch == 0:
            if is_dir:
                self._clear_markers(self.rw + path)
                os.rmdir(self.rw + path)
            else:
                os.unlink(self.rw + path)
        if entry.lower or entry.branch > 0:
            self.ensure_rw_dir(parent)
            make_marker(self.rw + parent.path + b"/" + whiteouts.PREFIX_B + name)
        del listing[name]
        self._drop_name(node, parent, name, path, last)

    def _drop_name(self, node: Node, parent: Node, name: bytes, path: bytes, last: os.stat_result) -> None:
        """Forget one name of `node`; the inode lives on (for open files) if it was the last."""
        self.by_path.pop(path, None)
        links = self.aliases.get(node.ino)
        if links:
            if node.parent is parent and node.name == name:
                node.parent, node.name = links.pop(0)
                node.path = node.parent.path + b"/" + node.name
                node.entry = self.listing(node.parent)[node.name]
            else:
                links.remove((parent, name))
            if not links:
                del self.aliases[node.ino]
            return
        node.unlinked = True
        node.st = last
        if self.by_inode.get((0, last.st_ino)) is node:
            del self.by_inode[(0, last.st_ino)]

    def _clear_markers(self, real_dir: bytes) -> None:
        """An emptied writable directory still holds whiteouts of lower names; drop them."""
        for name in os.listdir(real_dir):
            path = real_dir + b"/" + name
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    # -- rename ------------------------------------------------------------------------

    def rename(self, old_parent: Node, old_name: bytes, new_parent: Node, new_name: bytes, *, noreplace: bool) -> None:
        if new_name[:4] == whiteouts.PREFIX_B:
            raise _err(errno.EPERM, new_name)
        old_path = old_parent.path + b"/" + old_name
        new_path = new_parent.path + b"/" + new_name
        entry = self.listing(old_parent).get(old_name)
        if entry is None:
            raise _err(errno.ENOENT, old_path)
        node = self.lookup(old_parent, old_name)
        assert node is not None
        is_dir = entry.dirs is not None
        if is_dir and (entry.branch != 0 or len(entry.dirs or ()) > 1):
            raise _err(errno.EXDEV, old_path)  # aufs cannot move a directory that has lower parts
        new_listing = self.listing(new_parent)
        target_entry = new_listing.get(new_name)
        target = None
        if target_entry is not None:
            if noreplace:
                raise _err(errno.EEXIST, new_path)
            target = self.lookup(new_parent, new_name)
            assert target is not None
            if target is node:
                return  # two names of one file: rename(2) does nothing
            target_is_dir = target_entry.dirs is not None
            if is_dir and not target_is_dir:
                raise _err(errno.ENOTDIR, new_path)
            if not is_dir and target_is_dir:
                raise _err(errno.EISDIR, new_path)
            if target_is_dir and self.listing(target):
                raise _err(errno.ENOTEMPTY, new_path)
        if not is_dir:
            self.copy_up(node)
            self._link_up(node, old_parent, old_name)  # a name of a copied-up hard link may still be lower
        self.ensure_rw_dir(new_parent)
        target_lower = False
        target_last = None
        if target_entry is not None and target is not None:
            target_lower = target_entry.lower or target_entry.branch > 0
            target_last = self.stat(target)
            if target_entry.branch == 0 and target_entry.dirs is not None:
                self._clear_markers(self.rw + new_path)
        else:
            try:
                os.unlink(self.rw + new_parent.path + b"/" + whiteouts.PREFIX_B + new_name)
                target_lower = True
            except FileNotFoundError:
                pass
        os.rename(self.rw + old_path, self.rw + new_path)
        if is_dir and target_lower:
            make_marker(self.rw + new_path + b"/" + whiteouts.OPAQUE_B)
        if entry.lower:
            self.ensure_rw_dir(old_parent)
            make_marker(self.rw + old_parent.path + b"/" + whiteouts.PREFIX_B + old_name)
        del self.listing(old_parent)[old_name]
        new_entry = Entry(0, [0] if is_dir else None, target_lower)
        new_listing[new_name] = new_entry
        if target is not None and target_last is not None:
            self._drop_name(target, new_parent, new_name, new_path, target_last)
        self._move_name(node, old_parent, old_name, old_path, new_parent, new_name, new_path, new_entry)

    def _move_name(
        self,
        node: Node,
        old_parent: Node,
        old_name: bytes,
        old_path: bytes,
        new_parent: Node,
        new_name: bytes,
        new_path: bytes,
        new_entry: Entry,
    ) -> None:
        self.by_path.pop(old_path, None)
        self.by_path[new_path] = node
        if node.parent is old_parent and node.name == old_name:
            node.parent, node.name, node.path, node.entry = new_parent, new_name, new_path, new_entry
        else:
            links = self.aliases[node.ino]
            links[links.index((old_parent, old_name))] = (new_parent, new_name)
        if node.entry.dirs is None:
            return
        prefix = old_path + b"/"
        for path in [p for p in self.by_path if p.startswith(prefix)]:
            moved = self.by_path.pop(path)
            new = new_path + path[len(old_path) :]
            self.by_path[new] = moved
            if moved.path == path:
                moved.path = new
