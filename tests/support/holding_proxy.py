"""An HTTP proxy on 127.0.0.1 in front of a real registry that can hold requests.

Fault tests need "the registry stops answering exactly here": requests the `hold`
predicate picks wait (the proxy says so through `held`) until `release()` (or the test's
end); everything else is forwarded to the registry unchanged."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import requests

HOLD_LIMIT = 120.0  # a held request never outlives the test by more than this
_FORWARDED = ("Range", "Accept", "Authorization", "Content-Type")
_RETURNED = ("Content-Type", "Content-Range", "Docker-Content-Digest", "Location", "Accept-Ranges")


class HoldingProxy:
    def __init__(self, upstream: str, hold: Callable[[str, str, dict[str, str]], bool]) -> None:
        self.upstream = upstream
        self.hold = hold  # (method, path, headers) -> hold this one?
        self.held = threading.Event()  # set when a request is being held
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k in _FORWARDED}
                if proxy.hold(self.command, self.path, headers):
                    proxy.held.set()
                    proxy._release.wait(HOLD_LIMIT)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                resp = requests.request(self.command, f"http://{proxy.upstream}{self.path}", headers=headers,
                                        data=body, allow_redirects=False, timeout=60)
                self.send_response(resp.status_code)
                for key in _RETURNED:
                    if key in resp.headers:
                        self.send_header(key, resp.headers[key])
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(resp.content)
                    except OSError:
                        pass  # the client went away (killed)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def release(self) -> None:
        self._release.set()

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
