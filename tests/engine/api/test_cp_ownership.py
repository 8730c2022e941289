"""`docker cp` ownership and options through strata's daemon: what is copied in belongs to
the container's root unless `-a` (copyUIDGID) keeps the archive's ids, noOverwriteDirNonDir
refuses a type change, `-L` follows a symlink; seen with `stat` inside the container."""

from __future__ import annotations

import io
import os
import tarfile

import docker
import pytest

from tests.engine.api.conftest import Daemon

pytestmark = pytest.mark.parametrize("driver_name", ["vfs"])


def _ok(daemon: Daemon, *args: str) -> str:
    done = daemon.docker(*args)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout.decode()


def _tar(name: str, data: bytes, uid: int, gid: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.uid, info.gid, info.mode = len(data), uid, gid, 0o4755  # set-uid survives the chown
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_docker_cp_owner_is_container_root_unless_archive_mode(daemon: Daemon, busybox_tar: str, tmp_path) -> None:
    _ok(daemon, "load", "-i", busybox_tar)
    _ok(daemon, "run", "-d", "--name", "box", "busybox", "sh", "-c",
        "mkdir /tmp/d && echo target > /tmp/t && ln -s t /tmp/link && sleep 60")
    local = tmp_path / "owned.txt"
    local.write_text("from the host\n")
    os.chown(local, 1234, 5678)

    _ok(daemon, "cp", str(local), "box:/tmp/plain.txt")
    _ok(daemon, "cp", "-a", str(local), "box:/tmp/kept.txt")
    assert _ok(daemon, "exec", "box", "stat", "-c", "%u:%g", "/tmp/plain.txt", "/tmp/kept.txt").split() == \
        ["0:0", "1234:5678"]
    assert _ok(daemon, "exec", "box", "cat", "/tmp/kept.txt") == "from the host\n"

    # out of the container: -L copies the file a link names, under the link's name
    _ok(daemon, "cp", "box:/tmp/link", str(tmp_path / "as-link"))
    assert os.path.islink(tmp_path / "as-link")
    _ok(daemon, "cp", "-L", "box:/tmp/link", str(tmp_path / "followed"))
    assert not os.path.islink(tmp_path / "followed") and (tmp_path / "followed").read_text() == "target\n"

    # the docker CLI asks for noOverwriteDirNonDir: a file never replaces the directory /tmp/d
    (tmp_path / "d").write_text("not a directory\n")
    refused = daemon.docker("cp", str(tmp_path / "d"), "box:/tmp/")
    assert refused.returncode != 0 and b"cannot overwrite directory" in refused.stderr
    assert _ok(daemon, "exec", "box", "stat", "-c", "%F", "/tmp/d").strip() == "directory"

    api = docker.APIClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        assert api.put_archive("box", "/tmp", _tar("sdk-default", b"x", 4321, 8765))
        response = api._put(api._url("/containers/{0}/archive", "box"),
                            params={"path": "/tmp", "copyUIDGID": 1}, data=_tar("sdk-kept", b"y", 4321, 8765))
        api._raise_for_status(response)
        response = api._put(api._url("/containers/{0}/archive", "box"),
                            params={"path": "/tmp", "noOverwriteDirNonDir": 1}, data=_tar("d", b"z", 0, 0))
        assert response.status_code == 409 and "cannot overwrite directory" in response.json()["message"]
    finally:
        api.close()
    assert _ok(daemon, "exec", "box", "stat", "-c", "%u:%g %a", "/tmp/sdk-default", "/tmp/sdk-kept").splitlines() == \
        ["0:0 4755", "4321:8765 4755"]
    assert _ok(daemon, "exec", "box", "stat", "-c", "%F", "/tmp/d").strip() == "directory"
    _ok(daemon, "rm", "-f", "box")
