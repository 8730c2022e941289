"""Named volumes of the `local` driver: directories under `<root>/volumes/<name>/_data`.

A volume outlives the containers that mount it (`-v NAME:/path`, `--mount
type=volume,...`); `volume rm` refuses one that a container still names. Its metadata
(`volume.json`: creation time, labels) sits beside its data, written atomically, so a
crash leaves a volume either described or absent (a directory without metadata is
finished on the next use).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from typing import Any

from ..errors import Conflict, NoSuchVolume, UsageError
from .record import now_iso

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # Docker's volume name rule
META = "volume.json"
DRIVER = "local"


class Volumes:
    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "volumes")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def _meta_path(self, name: str) -> str:
        return os.path.join(self.dir, name, META)

    def mountpoint(self, name: str) -> str:
        return os.path.join(self.dir, name, "_data")

    def create(self, name: str = "", *, driver: str = DRIVER, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None) -> dict[str, Any]:
        """Make the volume (or return the existing one of that name, as Docker does)."""
        if driver not in ("", DRIVER):
            raise UsageError(f"volume driver {driver!r} is not supported: strata has the local driver only")
        if options:
            raise UsageError(f"volume driver option {sorted(options)[0]!r} is not supported by strata's local "
                             "driver (it keeps plain directories)")
        name = name or secrets.token_hex(32)
        if not NAME_RE.match(name) or len(name) > 255:
            raise UsageError(f"invalid volume name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if os.path.exists(self._meta_path(name)):
            return self.inspect(name)
        os.makedirs(self.mountpoint(name), mode=0o755, exist_ok=True)
        meta = {"CreatedAt": now_iso(), "Labels": dict(labels or {})}
        tmp = self._meta_path(name) + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(meta))
        os.rename(tmp, self._meta_path(name))
        log.info("created volume %s", name)
        return self.inspect(name)

    def inspect(self, name: str) -> dict[str, Any]:
        try:
            with open(self._meta_path(name)) as f:
                meta = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchVolume(name) from None
        return {"Name": name, "Driver": DRIVER, "Mountpoint": self.mountpoint(name), "CreatedAt": meta["CreatedAt"],
                "Labels": meta["Labels"], "Scope": "local", "Options": {}}

    def list(self) -> list[dict[str, Any]]:
        return [self.inspect(n) for n in sorted(os.listdir(self.dir)) if os.path.exists(self._meta_path(n))]

    def remove(self, name: str, users: list[str]) -> None:
        """Remove the volume and its data; `users` are the containers that still name it."""
        self.inspect(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        os.unlink(self._meta_path(name))  # first: a crash after this leaves no half-described volume
        shutil.rmtree(os.path.join(self.dir, name))
