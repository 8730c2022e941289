"""The daemon's log: every 500 with its traceback, and `--log-level` choosing what it shows."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading

import pytest

from engine.api.http import Reply, Request, Router, UnixServer, make_handler
from tests.engine.api.conftest import REPO, start_daemon


def _get(path: str, url: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(path)
    conn.request("GET", url)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


def test_a_500_answers_like_docker_and_logs_its_traceback(tmp_path, caplog) -> None:
    router = Router()

    @router.route("GET", "/boom")
    def boom(req: Request) -> Reply:
        return Reply(200, {"ratio": 1 // 0})

    sock = str(tmp_path / "api.sock")
    server = UnixServer(sock, make_handler(router, {}, lambda exc: None))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with caplog.at_level(logging.ERROR, logger="engine.api.http"):
            status, body = _get(sock, "/boom")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 500
    assert body == {"message": "internal error: ZeroDivisionError: integer division or modulo by zero"}
    [record] = [r for r in caplog.records if r.name == "engine.api.http"]
    assert "GET /boom: 500" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


def test_log_level_chooses_what_the_daemon_logs(tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    daemon = start_daemon(str(root), "vfs", "--log-level", "debug")
    try:
        assert _get(daemon.socket, "/v1.41/info")[0] == 200
    finally:
        assert daemon.stop() == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "INFO engine.api.server: API listening on unix://" in log
    assert "DEBUG engine.job: job info" in log  # the job the /info route ran
    assert "DEBUG engine.api.http:" in log  # the access log

    quiet = tmp_path / "quiet"
    quiet.mkdir()
    (quiet / "root").mkdir()
    daemon = start_daemon(str(quiet / "root"), "vfs", "--log-level", "warning")
    assert daemon.stop() == 0
    assert "INFO" not in (quiet / "daemon.log").read_text()


@pytest.mark.parametrize("level", ["verbose", "INFO"])
def test_an_unknown_log_level_is_refused(tmp_path, level: str) -> None:
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--root", str(tmp_path), "-s", "vfs", "daemon",
                           "--log-level", level], capture_output=True, env={**os.environ, "PYTHONPATH": REPO},
                          timeout=60)
    assert done.returncode == 2 and b"--log-level: invalid choice" in done.stderr
