"""Malformed and hostile requests get Docker-style JSON errors; the daemon keeps serving."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from tests.engine.api.conftest import Daemon


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def _call(daemon: Daemon, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict]:
    conn = _UnixHTTP(daemon.socket)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    is_json = resp.getheader("Content-Type", "").startswith("application/json")
    return resp.status, json.loads(data) if is_json and data else {"raw": data}


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_bad_requests(daemon: Daemon) -> None:
    status, body = _call(daemon, "GET", "/v1.41/nowhere")
    assert status == 404 and "page not found" in body["message"]
    status, body = _call(daemon, "POST", "/v1.41/containers/create", b"{not json",
                         {"Content-Type": "application/json"})
    assert status == 400 and "malformed JSON" in body["message"]
    status, body = _call(daemon, "POST", "/v1.41/containers/create", json.dumps({"Image": "nope"}).encode(),
                         {"Content-Type": "application/json"})
    assert status == 404 and "no such image" in body["message"]
    status, body = _call(daemon, "GET", "/v1.41/containers/..%2F..%2Fetc/json")
    assert status == 404
    status, body = _call(daemon, "POST", "/v1.41/containers/x/wait?condition=sideways")
    assert status in (400, 404)
    status, body = _call(daemon, "PUT", "/v1.41/_ping")
    assert status == 405

    # A 10 GB body is refused from its headers, without reading it.
    conn = _UnixHTTP(daemon.socket)
    conn.putrequest("POST", "/v1.41/containers/create")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10 * 1024**3))
    conn.endheaders()
    conn.send(b'{"Image": "')
    resp = conn.getresponse()
    assert resp.status == 413 and "limit" in json.loads(resp.read())["message"]
    conn.close()

    assert _call(daemon, "GET", "/_ping") == (200, {"raw": b"OK"})
    status, body = _call(daemon, "GET", "/v1.41/version")
    assert status == 200 and body["ApiVersion"] == "1.41"
