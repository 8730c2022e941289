"""The HTTP plumbing of serveapi: requests with bounded bodies, JSON and streamed replies,
connection hijacking (what `docker attach`/`run` use), over unix and TCP sockets.

Written on the standard library's http.server: the API is a control plane with a few
concurrent clients, and a thread per connection keeps streaming and hijacking simple.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import socketserver
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from graphdrivers.errors import InvalidOption
from graphdrivers.units import parse_bool

from . import hangup, unimplemented

log = logging.getLogger(__name__)

MAX_JSON_BODY = 4 << 20
MAX_DRAIN = 1 << 20  # unread body bytes read after a reply to keep the connection; more: close it
LISTEN_BACKLOG = 1024  # socketserver's default of 5 refuses a burst of clients with EAGAIN
API_VERSION_RE = re.compile(r"^/v(\d+\.\d+)(/.*)$")


class ApiError(Exception):
    """An error reply in Docker's form: `{"message": ...}` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ChunkedReader(io.RawIOBase):
    """Decodes a `Transfer-Encoding: chunked` body (the Go client streams uploads so)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.left = 0
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.done:
            return 0
        if self.left == 0:
            line = self.raw.readline(1024)
            try:
                self.left = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise ApiError(400, "malformed chunked request body") from None
            if self.left == 0:
                while self.raw.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return 0
        n = min(len(buffer), self.left)
        data = self.raw.read(n)
        if not data:
            raise ApiError(400, "request body ended inside a chunk")
        buffer[: len(data)] = data
        self.left -= len(data)
        if self.left == 0:
            self.raw.readline(8)
        return len(data)


def parse_json(data: bytes | str, what: str) -> Any:
    """JSON text as Python values; malformed or absurdly nested text is a 400 naming `what`."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ApiError(400, f"{what} nests too deeply") from None
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON in {what}: {exc}") from None


class LimitedReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes], length: int) -> None:
        self.raw = raw
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        data = self.raw.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: IO[bytes]
    api_version: str | None
    handler: BaseHTTPRequestHandler
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def filters(self) -> list[str]:
        """The `filters` parameter as KEY=VALUE items (the jobs' --filter form): Docker's map
        of lists, or the older map of {value: true} the docker CLI still sends."""
        raw = self.json_arg("filters") or {}
        if not isinstance(raw, dict):
            raise ApiError(400, f"filters must be a JSON object, got {self.arg('filters')!r}")
        found = []
        for key, values in raw.items():
            if isinstance(values, dict):
                values = [value for value, on in values.items() if on]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ApiError(400, f"filter {key!r} must be a list of strings or an object of booleans")
            found += [f"{key}={value}" for value in values]
        return found

    def refuse_filters(self) -> None:
        """For an endpoint that takes no `filters`: a filtered list answered unfiltered would
        be a lie, so a non-empty filter is a 400 naming what was asked."""
        asked = sorted({item.partition("=")[0] for item in self.filters()})
        if asked:
            raise ApiError(400, f"filters are not supported by strata: {', '.join(asked)}")

    def refuse_arg(self, name: str, reason: str) -> None:
        """A query parameter strata does not honour: unset or at its zero value it asks for
        nothing; any other value is a 400 naming it, never an answer that ignores it."""
        value = self.arg(name)
        if value not in (None, "", "0", "false", "False", "no"):
            raise ApiError(400, f"query parameter {name}={value!r} is not supported by strata: {reason}")

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query parameter, spelled as every strata boolean is (1/true/yes, 0/false/no)."""
        value = self.arg(name)
        if value in (None, ""):
            return default
        try:
            return parse_bool(value, what=f"query parameter {name!r}")
        except InvalidOption as exc:
            raise ApiError(400, str(exc)) from None

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError:
            raise ApiError(400, f"query parameter {name!r} must be an integer, got {value!r}") from None

    def json_arg(self, name: str) -> Any:
        value = self.arg(name)
        if not value:
            return None
        return parse_json(value, f"query parameter {name!r}")

    def json(self, *, required: bool = True) -> Any:
        """The JSON body, at most MAX_JSON_BODY bytes (a longer declared length is refused unread).

        Only routes that take JSON apply the limit: archives and tars stream through
        `body` whatever Content-Type the client sends (docker-py sends none on load)."""
        declared = int(self.headers.get("Content-Length") or 0)  # checked for digits when the request came
        if declared > MAX_JSON_BODY:
            raise ApiError(413, f"request body of {declared} bytes is over the {MAX_JSON_BODY} byte limit"
                                " for this endpoint")
        data = self.body.read(MAX_JSON_BODY + 1)
        if len(data) > MAX_JSON_BODY:
            raise ApiError(413, f"request body over {MAX_JSON_BODY} bytes")
        if not data.strip():
            if required:
                raise ApiError(400, "request body is empty; expected JSON")
            return None
        return parse_json(data, "request body")


@dataclass
class Reply:
    """What a route returns: a JSON value, bytes, a stream of chunks, or a hijack.

    A stream with a `cancel()` method is told when the client hangs up (hangup.py); a
    stream that raises ends the reply without its last chunk, so the client sees a failure."""

    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    stream: Iterable[bytes] | None = None
    hijack: Callable[[socket.socket, IO[bytes]], None] | None = None
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Reply]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Route]] = []

    def add(self, method: str, pattern: str, func: Route) -> None:
        # {name} matches one path segment; {name:path} may span several (image names have "/").
        regex = re.compile("^" + re.sub(r"\{(\w+)(:path)?\}",
                                        lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})",
                                        pattern) + "$")
        self.routes.append((method, regex, func))

    def route(self, method: str, pattern: str) -> Callable[[Route], Route]:
        def deco(func: Route) -> Route:
            self.add(method, pattern, func)
            return func
        return deco

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for m, regex, func in self.routes:
            found = regex.match(path)
            if found:
                if m == method or (method == "HEAD" and m == "GET"):
                    return func, found.groupdict()
                allowed = True
        missing = unimplemented.answer(method, path)  # before 405: POST /containers/prune is no {id}
        if missing is not None:
            raise ApiError(*missing)
        if allowed:
            raise ApiError(405, f"method {method} not allowed on {path}")
        raise ApiError(404, f"page not found: {method} {path}")


def make_handler(router: Router, server_headers: dict[str, str],
                 error_status: Callable[[Exception], tuple[int, str] | None]) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `router`; `error_status` maps domain errors to HTTP."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "strata"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.client_address[0], format % args)  # http.server's access log

        def _dispatch(self) -> None:
            split = urlsplit(self.path)
            path, version = split.path, None
            found = API_VERSION_RE.match(path)
            if found:
                version, path = found.group(1), found.group(2)
            body = self._body()
            if body is None:
                return
            request = Request(self.command, path, parse_qs(split.query, keep_blank_values=True), self.headers,
                              body, version, self)
            try:
                func, request.params = router.match(self.command, path)
                reply = func(request)
            except ApiError as exc:
                reply = Reply(exc.status, {"message": exc.message})
            except Exception as exc:
                status, message = error_status(exc) or (500, f"internal error: {type(exc).__name__}: {exc}")
                if status >= 500:  # the client sees the message; the daemon's log keeps the traceback
                    log.error("%s %s: %d %s", self.command, self.path, status, message, exc_info=exc)
                reply = Reply(status, {"message": message})
            self._send(reply)
            # Drain a little of what the route did not read, so the connection can be
            # reused; a large unread body (a refused upload) closes it instead.
            try:
                drained = 0
                while drained <= MAX_DRAIN and (chunk := body.read(1 << 16)):
                    drained += len(chunk)
                if drained > MAX_DRAIN:
                    self.close_connection = True
            except (ApiError, OSError):
                self.close_connection = True

        def _body(self) -> IO[bytes] | None:
            lengths = set(self.headers.get_all("Content-Length") or [])
            chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            problem = None
            if len(lengths) > 1:
                problem = "conflicting Content-Length headers"
            elif chunked and lengths:
                problem = "both Content-Length and Transfer-Encoding: chunked"
            elif lengths and not next(iter(lengths)).strip().isdigit():
                problem = "malformed Content-Length"
            if problem is not None:  # a request smuggler's favourites: never guess the body's end
                self.close_connection = True
                self._send(Reply(400, {"message": problem}))
                return None
            if chunked:
                return io.BufferedReader(ChunkedReader(self.rfile))
            return io.BufferedReader(LimitedReader(self.rfile, int(next(iter(lengths), "0"))))

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own errors (a bad request line, an unknown method, headers too
            long) as Docker's JSON rather than its HTML page."""
            self.close_connection = True
            self.request_version = "HTTP/1.1"  # an unparsable request line left HTTP/0.9: no headers at all
            payload = json.dumps({"message": message or self.responses.get(code, ("error",))[0]}).encode() + b"\n"
            try:
                self.send_response(code, message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                    self.wfile.write(payload)
            except OSError:
                pass

        def _headers(self, reply: Reply) -> None:
            for key, value in {**server_headers, **reply.headers}.items():
                self.send_header(key, value)

        def _send(self, reply: Reply) -> None:
            if reply.hijack is not None:
                upgrade = self.headers.get("Upgrade", "").lower() == "tcp"
                if upgrade:
                    self.send_response(101, "UPGRADED")
                    self.send_header("Connection", "Upgrade")
                    self.send_header("Upgrade", "tcp")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", reply.content_type)
                self._headers(reply)
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                reply.hijack(self.connection, self.rfile)
                return
            if reply.stream is not None:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self._headers(reply)
                self.end_headers()
                cancel = getattr(reply.stream, "cancel", None)
                try:
                    with hangup.watch(self.connection, cancel) if cancel else contextlib.nullcontext():
                        for chunk in reply.stream:
                            if chunk:
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                                self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                except Exception as exc:
                    # The status went out with the headers; only an unfinished chunked body can
                    # still say "failed" (the client reports an unexpected EOF, not success).
                    log.error("%s %s: the streamed reply failed: %s", self.command, self.path, exc, exc_info=exc)
                    self.close_connection = True
                finally:
                    close = getattr(reply.stream, "close", None)
                    if close:
                        close()
                return
            if reply.body is None:
                payload = b""
            elif isinstance(reply.body, bytes | bytearray):
                payload = bytes(reply.body)
            else:
                payload = json.dumps(reply.body).encode() + b"\n"
            self.send_response(reply.status)
            if payload or reply.status not in (204, 304):
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self._headers(reply)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    return Handler


class _QuietErrors:
    """A client that hangs up mid-request is normal for an API server, not an error to log;
    anything else goes to the daemon's log (socketserver would print it to stderr)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            log.error("error serving %s", client_address, exc_info=True)


class UnixServer(_QuietErrors, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


class TCPServer(_QuietErrors, socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG


def json_lines(items: Iterable[Any]) -> Iterator[bytes]:
    """The progress-message stream format of pull/push/load: one JSON object a line."""
    for item in items:
        yield json.dumps(item).encode() + b"\r\n"
