"""Resolve a Docker `--user` value against the container's own /etc/passwd and /etc/group.

OCI runtimes take numeric ids only, and the native driver must know the ids before it
drops privileges, so both execdrivers resolve names here, on the host side, reading the
image's files with the rootfs as the root (a symlinked /etc/passwd pointing at the host's
file is not followed).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from ..errors import ExecError


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = field(default=())
    home: str = "/"


def _read_in_rootfs(rootfs: str, relpath: str) -> list[list[str]]:
    """Colon-separated records of a file under `rootfs`, or [] if it is missing or a symlink."""
    path = rootfs
    for part in relpath.strip("/").split("/"):
        path = os.path.join(path, part)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return []
        except FileNotFoundError:
            return []
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]


def resolve(rootfs: str, spec: str | None) -> User:
    """`""`/None -> root; `name`, `uid`, `name:group`, `uid:gid` as `docker run -u` takes them."""
    spec = (spec or "").strip()
    if not spec:
        spec = "0"
    user_part, _, group_part = spec.partition(":")
    passwd = _read_in_rootfs(rootfs, "etc/passwd")
    groups = _read_in_rootfs(rootfs, "etc/group")

    entry = next((p for p in passwd if len(p) >= 7 and (p[0] == user_part or p[2] == user_part)), None)
    if entry is not None:
        uid, gid, name, home = int(entry[2]), int(entry[3]), entry[0], entry[5] or "/"
    elif user_part.isdigit():
        uid, gid, name, home = int(user_part), 0, None, "/"
    else:
        raise ExecError(f"unable to find user {user_part}: no matching entries in the container's /etc/passwd")

    if group_part:
        group = next((g for g in groups if len(g) >= 3 and (g[0] == group_part or g[2] == group_part)), None)
        if group is not None:
            gid = int(group[2])
        elif group_part.isdigit():
            gid = int(group_part)
        else:
            raise ExecError(f"unable to find group {group_part}: no matching entries in the container's /etc/group")

    extra: list[int] = []
    if name is not None:
        for g in groups:
            if len(g) >= 4 and name in g[3].split(",") and int(g[2]) != gid:
                extra.append(int(g[2]))
    return User(uid, gid, tuple(sorted(set(extra))), home)


def group_ids(rootfs: str, names: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """`--group-add` values (names or ids) as gids, read from the container's /etc/group."""
    groups = _read_in_rootfs(rootfs, "etc/group")
    gids = []
    for name in names:
        group = next((g for g in groups if len(g) >= 3 and g[0] == name), None)
        if group is not None:
            gids.append(int(group[2]))
        elif name.isdigit():
            gids.append(int(name))
        else:
            raise ExecError(f"unable to find group {name}: no matching entries in the container's /etc/group")
    return tuple(gids)
