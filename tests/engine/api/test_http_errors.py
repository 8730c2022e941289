"""Malformed and hostile requests get Docker-style JSON errors; the daemon keeps serving."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse

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


def _raw(daemon: Daemon, request: bytes) -> tuple[int, dict]:
    """Send bytes as they are (http.client would not send a malformed request) and read the reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(daemon.socket)
    sock.sendall(request)
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    data = resp.read()
    sock.close()
    assert resp.getheader("Content-Type") == "application/json", data
    return resp.status, json.loads(data)


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_protocol_errors_are_docker_json(daemon: Daemon) -> None:
    status, body = _raw(daemon, b"GARBAGE\r\n\r\n")
    assert status == 400 and "request" in body["message"].lower()
    status, body = _raw(daemon, b"BREW /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and "BREW" in body["message"]
    status, body = _raw(daemon, b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                b"Content-Length: 40\r\nContent-Type: application/json\r\n\r\n{}")
    assert status == 400 and "Content-Length" in body["message"]
    status, body = _raw(daemon, b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n{}")
    assert status == 400 and "chunked" in body["message"]


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_endpoints_strata_lacks_answer_501(daemon: Daemon) -> None:
    assert _call(daemon, "POST", "/v1.41/build") == (501, {"message": "not implemented by strata: POST /build"})
    status, body = _call(daemon, "POST", "/v1.41/build/prune", b"{}")
    assert status == 501 and body["message"] == "not implemented by strata: POST /build/prune"
    status, body = _call(daemon, "GET", "/v1.41/services")
    assert status == 503 and "not a swarm manager" in body["message"]
    status, body = _call(daemon, "GET", "/v1.41/no/such/thing")
    assert status == 404 and "page not found" in body["message"]


@pytest.mark.parametrize("driver_name", ["vfs"])
@pytest.mark.parametrize(("config", "message"), [
    ({"Image": "busybox", "WorkingDir": 5}, "WorkingDir must be a string, got an integer"),
    ({"Image": "busybox", "Entrypoint": 1}, "Entrypoint must be a list of strings, got an integer"),
    ({"Image": "busybox", "HostConfig": []}, "HostConfig must be an object, got a list"),
    ({"Image": "busybox", "Env": ["A=1", 2]}, "Env must be a list of strings, got a list"),
    ({"Image": "busybox", "HostConfig": {"AutoRemove": "yes"}}, "AutoRemove must be a boolean"),
    ({"Image": "busybox", "HostConfig": {"Memory": True}}, "Memory must be an integer, got a boolean"),
    ([1, 2], "container config must be a JSON object, got a list"),
])
def test_wrong_json_types_are_400(daemon: Daemon, config: object, message: str) -> None:
    status, body = _call(daemon, "POST", "/v1.41/containers/create", json.dumps(config).encode(),
                         {"Content-Type": "application/json"})
    assert status == 400 and message in body["message"], body


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_deeply_nested_json_is_400(daemon: Daemon) -> None:
    deep = b'{"Image": "busybox", "Labels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body = _call(daemon, "POST", "/v1.41/containers/create", deep, {"Content-Type": "application/json"})
    assert status == 400 and "nests too deeply" in body["message"]
    assert _call(daemon, "GET", "/_ping")[0] == 200


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_names_and_hostnames_are_checked_at_create(daemon: Daemon, busybox_tar: str) -> None:
    with open(busybox_tar, "rb") as f:
        assert _call(daemon, "POST", "/v1.41/images/load", f.read())[0] == 200
    config = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    for name in ("x" * 300, "bad%20name", "abc%0A", "-lead", "a"):
        status, body = _call(daemon, "POST", f"/v1.41/containers/create?name={name}", config)
        assert status == 400 and "invalid container name" in body["message"], (name, body)
    assert _call(daemon, "POST", f"/v1.41/containers/create?name={'x' * 255}", config)[0] == 201
    for hostname in ("-bad", "a" * 65, "under_score", "a..b", "ok.\n"):
        body = json.dumps({"Image": "busybox", "Cmd": ["true"], "Hostname": hostname}).encode()
        status, reply = _call(daemon, "POST", "/v1.41/containers/create", body)
        assert status == 400 and "invalid hostname" in reply["message"], (hostname, reply)
    body = json.dumps({"Image": "busybox", "Cmd": ["hostname"], "Hostname": "web-1.example"}).encode()
    assert _call(daemon, "POST", "/v1.41/containers/create", body)[0] == 201
    assert _call(daemon, "GET", "/v1.41/containers/json?all=1")[0] == 200


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_list_filters_are_refused_not_ignored(daemon: Daemon) -> None:
    """`docker ps --filter` / `docker images REPO`: strata does not filter, so it says so."""
    for path in ("/v1.41/containers/json", "/v1.41/images/json"):
        query = "?filters=" + urllib.parse.quote(json.dumps({"label": {"a=b": True}}))
        status, body = _call(daemon, "GET", path + query)
        assert status == 400 and "filters are not supported by strata: label" in body["message"]
        status, _ = _call(daemon, "GET", path + "?filters=" + urllib.parse.quote("{}"))
        assert status == 200
