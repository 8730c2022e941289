"""`strata -H HOST run ...`: a thin client of a running strata daemon.

The engine's own CLI imports the engine and opens the root for every command; a client
of a daemon that already holds them costs only an interpreter start and a few requests,
which is what `docker run` costs the Go client. It speaks the same Engine API the docker
CLI does, in the same order: create, attach (hijacked), wait (whose headers come back
before the container starts), start, then the output until the process ends.
Standard library only, so that it starts fast.
"""

from __future__ import annotations

import json
import socket
import struct
import sys

from ..containers import args as containerargs

TYPE_CHECKING = False  # typing's own constant would cost an import of typing (~4 ms) at start
if TYPE_CHECKING:
    from typing import IO, Any

API = "/v1.41"
DAEMON_ERROR = 125  # docker run's status when the daemon refuses the request


class ClientError(Exception):
    """The daemon could not be reached or refused a request; the message says which."""


class NotFound(ClientError):
    """The daemon answered 404 (create of an image it lacks: the client pulls it, as docker run does)."""


class _Connection:
    """One HTTP/1.1 exchange on its own socket (the API hijacks or streams per request)."""

    def __init__(self, host: str) -> None:
        scheme, _, address = host.partition("://")
        try:
            if scheme == "unix":
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(address)
            elif scheme == "tcp":
                name, _, port = address.rstrip("/").rpartition(":")
                self.sock = socket.create_connection((name.strip("[]") or "127.0.0.1", int(port or 2375)))
            else:
                raise ClientError(f"unsupported host {host!r}: use unix:///path or tcp://ADDRESS:PORT")
        except OSError as exc:
            raise ClientError(f"cannot reach the strata daemon at {host}: {exc.strerror or exc}") from None
        self.file = self.sock.makefile("rb")
        self.headers: dict[str, str] = {}

    def send(self, method: str, path: str, body: Any = None, *, upgrade: bool = False) -> int:
        """Send a request and read the status line and headers; returns the status.

        `upgrade` asks for the connection to be hijacked (attach), as the docker CLI does."""
        payload = b"" if body is None else json.dumps(body).encode()
        connection = "Connection: Upgrade\r\nUpgrade: tcp" if upgrade else "Connection: close"
        head = (f"{method} {API}{path} HTTP/1.1\r\nHost: strata\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n{connection}\r\n\r\n")
        self.sock.sendall(head.encode() + payload)
        status_line = self.file.readline()
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            raise ClientError(f"the daemon answered {status_line[:80]!r}, not HTTP") from None
        while (line := self.file.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            self.headers[key.strip().lower()] = value.strip()
        return status

    def body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while (size := int(self.file.readline().split(b";")[0] or b"0", 16)) > 0:
                parts.append(self.file.read(size))
                self.file.readline()
            return b"".join(parts)
        return self.file.read(int(self.headers.get("content-length") or 0))

    def json(self) -> Any:
        data = self.body()
        return json.loads(data) if data else None

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _call(host: str, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)) -> Any:
    conn = _Connection(host)
    try:
        status = conn.send(method, path, body)
        data = conn.json()
    finally:
        conn.close()
    if status not in expect:
        message = data.get("message") if isinstance(data, dict) else None
        raise (NotFound if status == 404 else ClientError)(message or f"{method} {path}: HTTP {status}")
    return data


def _pull(host: str, image: str, err: IO[bytes], *, lazy: bool = False) -> None:
    """Pull through the daemon (POST /images/create), its progress on stderr, as docker run does;
    `lazy` asks for strata's lazy pull."""
    name, tag = image, ""
    if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
        name, tag = image.rsplit(":", 1)
    conn = _Connection(host)
    try:
        query = f"fromImage={name}" + (f"&tag={tag}" if tag else "") + ("&lazy=1" if lazy else "")  # URL-safe
        status = conn.send("POST", f"/images/create?{query}")
        lines = conn.body().decode(errors="replace").splitlines()
    finally:
        conn.close()
    for line in filter(None, lines):
        message = json.loads(line)
        if status != 200 or "error" in message:
            raise ClientError(message.get("error") or message.get("message") or f"pull of {image} failed")
        err.write(((f"{message['id']}: " if message.get("id") else "") + message.get("status", "") + "\n").encode())


def _pump(conn: _Connection, out: IO[bytes], err: IO[bytes]) -> None:
    """Copy multiplexed frames (8-byte header: stream, 3 zero bytes, big-endian length)."""
    while len(header := conn.file.read(8)) == 8:
        stream, size = struct.unpack(">BxxxI", header)
        target = err if stream == 2 else out
        target.write(conn.file.read(size))
        target.flush()


def _feed(attach: _Connection) -> None:
    """Our stdin to the container (a thread: reading blocks); at its end, half-close the
    connection, which closes the container's stdin (StdinOnce), as the docker CLI does."""
    import os
    import threading

    def feed() -> None:
        try:
            while data := os.read(0, 65536):
                attach.sock.sendall(data)
            attach.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=feed, daemon=True).start()


def _resize(host: str, cid: str) -> None:
    """The container's terminal gets our terminal's size."""
    import os

    try:
        cols, rows = os.get_terminal_size(0)
    except OSError:
        return
    try:
        _call(host, "POST", f"/containers/{cid}/resize?h={rows}&w={cols}", expect=(200,))
    except ClientError:
        pass  # it ended already


class _terminal:
    """Our terminal raw while the container's is attached, and its size followed (SIGWINCH)."""

    def __init__(self, host: str, cid: str, enabled: bool) -> None:
        self.host, self.cid, self.enabled = host, cid, enabled
        self.saved: Any = None

    def __enter__(self) -> None:
        import os

        if not self.enabled or not os.isatty(0):
            self.enabled = False
            return
        import signal
        import termios
        import tty

        self.saved = termios.tcgetattr(0)
        tty.setraw(0)
        signal.signal(signal.SIGWINCH, lambda _s, _f: _resize(self.host, self.cid))

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            import signal
            import termios

            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)


def run(host: str, argv: list[str]) -> int:
    """`run` through the daemon; returns the container's exit status (125: refused)."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    try:
        try:
            ns = containerargs.parse_run(argv)
        except containerargs.UsageError as exc:
            err.write(f"strata run: {exc}\n".encode())
            return 2
        try:
            extra = containerargs.to_api(vars(ns))
        except containerargs.UsageError as exc:
            err.write(f"strata run: {exc}\n".encode())
            return DAEMON_ERROR
        policy, _, count = ns.restart.partition(":")
        if count and not count.isdigit():
            raise ClientError(f"invalid restart policy {ns.restart!r}: the maximum retry count must be a number")
        config = {"Image": ns.image, "Cmd": ns.args, "Env": ns.env, "WorkingDir": ns.workdir, "User": ns.user,
                  "Hostname": ns.hostname, **extra["Config"], "Tty": ns.tty, "OpenStdin": ns.interactive,
                  "StdinOnce": ns.interactive and not ns.detach, "AttachStdin": ns.interactive and not ns.detach,
                  "ExposedPorts": {e if "/" in e else e + "/tcp": {} for e in ns.expose},
                  "HostConfig": {"AutoRemove": ns.rm, "NetworkMode": ns.network, "PublishAllPorts": ns.publish_all,
                                 "PortBindings": containerargs.publish_bindings(ns.publish), **extra["HostConfig"],
                                 "RestartPolicy": {"Name": policy, "MaximumRetryCount": int(count or 0)}},
                  "NetworkingConfig": {"EndpointsConfig": {ns.network: {
                      "Aliases": ns.network_alias, "IPAMConfig": {"IPv4Address": ns.ip} if ns.ip else None}}}}
        problem = ns.name and containerargs.name_problem(ns.name)
        if problem:  # checked here too: the name goes into the request's URL
            raise ClientError(problem)
        query = f"?name={ns.name}" if ns.name else ""
        if ns.pull == "always":
            _pull(host, ns.image, err)
        try:
            created = _call(host, "POST", f"/containers/create{query}", config, expect=(201,))
        except NotFound:
            if ns.pull not in ("missing", "lazy"):
                raise
            err.write(f"Unable to find image '{ns.image}' locally\n".encode())
            _pull(host, ns.image, err, lazy=ns.pull == "lazy")
            created = _call(host, "POST", f"/containers/create{query}", config, expect=(201,))
        cid = created["Id"]
        for warning in created.get("Warnings") or []:
            err.write(f"WARNING: {warning}\n".encode())
        if ns.detach:
            _call(host, "POST", f"/containers/{cid}/start", expect=(204,))
            out.write(cid.encode() + b"\n")
            return 0
        attach = _Connection(host)
        waiter = _Connection(host)
        try:
            stdin = "&stdin=1" if ns.interactive else ""
            status = attach.send("POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1{stdin}", upgrade=True)
            if status not in (101, 200):
                raise ClientError(attach.json().get("message", "attach failed"))
            if waiter.send("POST", f"/containers/{cid}/wait?condition={'removed' if ns.rm else 'next-exit'}") != 200:
                raise ClientError(waiter.json().get("message", "wait failed"))
            with _terminal(host, cid, ns.tty):
                _call(host, "POST", f"/containers/{cid}/start", expect=(204,))
                if ns.tty:
                    _resize(host, cid)
                if ns.interactive:
                    _feed(attach)
                if ns.tty:
                    while chunk := attach.file.read1(65536):
                        out.write(chunk)
                        out.flush()
                else:
                    _pump(attach, out, err)
            result = waiter.json()
        finally:
            attach.close()
            waiter.close()
        if result.get("Error"):
            err.write(f"strata: {result['Error'].get('Message')}\n".encode())
        return int(result["StatusCode"])
    except ClientError as exc:
        err.write(f"strata: {exc}\n".encode())
        return DAEMON_ERROR
