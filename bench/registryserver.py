"""A real CNCF distribution registry (Debian's docker-registry) on 127.0.0.1.

The `pull` scenario pushes the workload image into one (its storage in the run's scratch
area) and pulls it back through every driver and peer; the engine's registry tests use
the same server, with basic auth when they ask for users.

`bytes_sent` counts what the registry sent, from its own access log: at level info it
logs every response when it completes, with the completion time (ns) and
`http.response.written`, so a step's bytes are those of the responses completed inside
its time window -- no proxy between client and registry.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import time
from datetime import datetime
from types import TracebackType

import requests

log = logging.getLogger(__name__)

CONFIG = """version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: strata-test-secret
{auth}"""

AUTH = """auth:
  htpasswd:
    realm: strata-test
    path: {path}
"""


# one completed response: `time="<RFC 3339 ns>" level=... msg="response completed[ with error]" ... written=N`
_RESPONSE = re.compile(rb'^time="([^"]+)" .*msg="response completed.* http\.response\.written=(\d+)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryServer:
    """Starts `docker-registry serve` with a config in `directory`; stops it on exit.

    With `users`, basic auth is on through an htpasswd file (bcrypt, made by htpasswd(1)).
    """

    def __init__(self, directory: str, users: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.users = users or {}
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RegistryServer:
        storage = os.path.join(self.directory, "storage")
        os.makedirs(storage, exist_ok=True)
        auth = ""
        if self.users:
            path = os.path.join(self.directory, "htpasswd")
            for i, (user, password) in enumerate(self.users.items()):
                flags = "-Bbc" if i == 0 else "-Bb"
                subprocess.run(["htpasswd", flags, path, user, password], check=True, capture_output=True)
            auth = AUTH.format(path=path)
        config = os.path.join(self.directory, "config.yml")
        with open(config, "w") as f:
            f.write(CONFIG.format(root=storage, port=self.port, auth=auth))
        log = open(os.path.join(self.directory, "registry.log"), "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()}")
            try:
                requests.get(f"http://{self.host}/v2/", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host}: {self.log()}")

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "registry.log"), errors="replace") as f:
                return f.read()[-2000:]
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        """Where the access log ends now: `bytes_sent` need not read what came before."""
        try:
            return os.path.getsize(os.path.join(self.directory, "registry.log"))
        except FileNotFoundError:
            return 0

    def bytes_sent(self, since: float, until: float, *, log_from: int = 0) -> int:
        """Bytes of the responses the registry completed between the wall-clock times `since`
        and `until` (time.time()), headers not counted, from its access log (read from
        byte `log_from`). A response still being sent at `until` is not counted."""
        total = 0
        with open(os.path.join(self.directory, "registry.log"), "rb") as f:
            f.seek(log_from)
            for line in f:
                match = _RESPONSE.match(line)
                if match:
                    when = datetime.fromisoformat(match[1].decode().replace("Z", "+00:00")).timestamp()
                    if since <= when <= until:
                        total += int(match[2])
        return total

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
