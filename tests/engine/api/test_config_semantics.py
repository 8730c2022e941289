"""Docker's config semantics through strata's daemon: entrypoint and cmd, commit and import
with changes, image labels and stop signal, --platform, pull/push of every tag, exec's
fields, update's limits, start errors -- each honoured as dockerd does, or refused by name.

One daemon (native execdriver, vfs) for the module; the real docker CLI and docker-py drive it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import docker
import pytest

from tests.engine.api.conftest import REPO, Daemon, loaded_daemon
from tests.support.registry_server import RegistryServer


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, busybox_tar: str) -> Iterator[Daemon]:
    with loaded_daemon(str(tmp_path_factory.mktemp("semantics") / "root"), busybox_tar) as daemon:
        ok(daemon, "create", "--name", "epbase", "busybox", "true")
        ok(daemon, "commit", "-c", 'ENTRYPOINT ["/bin/echo", "from-ep"]', "-c", 'CMD ["default"]', "epbase", "ep:1")
        ok(daemon, "rm", "epbase")
        yield daemon


@pytest.fixture
def client(d: Daemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=d.host)
    yield c
    c.close()


def ok(d: Daemon, *args: str, input: bytes | None = None) -> str:
    done = d.docker(*args, input=input)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout.decode()


def fails(d: Daemon, *args: str) -> str:
    done = d.docker(*args)
    assert done.returncode != 0, (args, done.stdout)
    return done.stderr.decode()


def image_config(d: Daemon, ref: str) -> dict:
    return json.loads(ok(d, "image", "inspect", ref))[0]["Config"]


# -- entrypoint and cmd ----------------------------------------------------------------------


def test_entrypoint_replaces_the_images_and_takes_its_cmd_along(d: Daemon) -> None:
    assert ok(d, "run", "--rm", "ep:1") == "from-ep default\n"
    assert ok(d, "run", "--rm", "ep:1", "given") == "from-ep given\n"
    assert ok(d, "run", "--rm", "--entrypoint", "/bin/sh", "ep:1", "-c", "echo replaced") == "replaced\n"
    assert ok(d, "run", "--rm", "--entrypoint", "", "ep:1", "echo", "reset") == "reset\n"
    # the reset entrypoint drops the image's CMD too: nothing is left to run
    assert "no command specified" in fails(d, "run", "--rm", "--entrypoint", "", "ep:1")


def test_inspect_and_commit_keep_entrypoint_and_cmd_apart(d: Daemon) -> None:
    ok(d, "create", "--name", "epc", "--entrypoint", "/bin/sh", "ep:1", "-c", "echo committed")
    try:
        c = json.loads(ok(d, "inspect", "epc"))[0]
        assert (c["Config"]["Entrypoint"], c["Config"]["Cmd"]) == (["/bin/sh"], ["-c", "echo committed"])
        assert (c["Path"], c["Args"]) == ("/bin/sh", ["-c", "echo committed"])
        ok(d, "commit", "epc", "ep:2")
        config = image_config(d, "ep:2")
        assert (config["Entrypoint"], config["Cmd"]) == (["/bin/sh"], ["-c", "echo committed"])
        assert ok(d, "run", "--rm", "ep:2") == "committed\n"
    finally:
        ok(d, "rm", "epc")


def test_strata_cli_entrypoint_through_the_daemon(d: Daemon) -> None:
    run = subprocess.run([sys.executable, "-m", "engine.cli", "-H", d.host, "run", "--rm", "--entrypoint", "/bin/sh",
                          "ep:1", "-c", "echo via-client"], capture_output=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert (run.returncode, run.stdout) == (0, b"via-client\n"), run.stderr


# -- commit --------------------------------------------------------------------------------


def test_commit_applies_changes_and_keeps_labels_ports_and_stop_signal(d: Daemon, client: docker.DockerClient) -> None:
    ok(d, "create", "--name", "cc", "--label", "from=container", "--expose", "8080", "--stop-signal", "SIGQUIT",
       "busybox", "true")
    try:
        ok(d, "commit", "-c", "ENV GREETING=hello OTHER=two", "-c", "LABEL role=web", "-c", "EXPOSE 80 53/udp",
           "-c", "WORKDIR /srv", "-c", "WORKDIR app", "-c", "USER nobody", "-c", 'VOLUME ["/data"]',
           "-c", "ONBUILD RUN true", "-c", 'CMD ["sh", "-c", "echo $GREETING $(pwd) $(id -un)"]', "cc", "changed:1")
    finally:
        ok(d, "rm", "cc")
    config = image_config(d, "changed:1")
    assert {"GREETING=hello", "OTHER=two"} <= set(config["Env"])
    assert config["Labels"] == {"from": "container", "role": "web"}
    assert set(config["ExposedPorts"]) == {"80/tcp", "53/udp", "8080/tcp"}
    assert (config["WorkingDir"], config["User"], config["StopSignal"]) == ("/srv/app", "nobody", "SIGQUIT")
    assert (config["Volumes"], config["OnBuild"]) == ({"/data": {}}, ["RUN true"])
    listed = client.api.images()
    assert next(i["Labels"] for i in listed if "changed:1" in i["RepoTags"]) == {"from": "container", "role": "web"}
    assert ok(d, "run", "--rm", "-u", "0", "-w", "/", "changed:1", "sh", "-c", "echo $GREETING") == "hello\n"


@pytest.mark.parametrize("change", ["RUN touch /x", "COPY a /b", "HEALTHCHECK CMD true", "FROM busybox"])
def test_commit_refuses_other_instructions_by_name(d: Daemon, change: str) -> None:
    ok(d, "create", "--name", "cbad", "busybox", "true")
    try:
        before = ok(d, "images", "-q")
        message = fails(d, "commit", "-c", change, "cbad", "never:1")
        assert f"{change.split()[0]} is not a valid change command" in message
        assert ok(d, "images", "-q") == before
    finally:
        ok(d, "rm", "cbad")


def test_commit_pauses_a_running_container_unless_told_not_to(d: Daemon) -> None:
    ok(d, "run", "-d", "--name", "cp1", "busybox", "sleep", "60")
    try:
        start = time.time()
        ok(d, "commit", "cp1", "paused:1")
        ok(d, "commit", "--pause=false", "cp1", "paused:2")
        actions = ok(d, "events", "--since", str(int(start) - 1), "--until", str(int(time.time()) + 1),
                     "--filter", "container=cp1", "--format", "{{.Action}}").split()
        assert actions.count("pause") == 1 and actions.count("unpause") == 1, actions
        assert json.loads(ok(d, "inspect", "cp1"))[0]["State"]["Status"] == "running"
    finally:
        ok(d, "rm", "-f", "cp1")


def test_commit_body_config_is_refused(d: Daemon, client: docker.DockerClient) -> None:
    ok(d, "create", "--name", "cbody", "busybox", "true")
    try:
        with pytest.raises(docker.errors.APIError) as refused:
            client.api.commit("cbody", "body", "1", conf={"Cmd": ["echo"]})
        assert refused.value.status_code == 400 and "changes" in str(refused.value)
        client.api.commit("cbody", "body", "2", changes="CMD echo sdk\nENV SDK=1")  # docker-py: one string
        config = image_config(d, "body:2")
        assert config["Cmd"] == ["/bin/sh", "-c", "echo sdk"] and "SDK=1" in config["Env"]
    finally:
        ok(d, "rm", "cbody")


# -- import --------------------------------------------------------------------------------


def test_import_honours_changes_message_and_platform(d: Daemon, tmp_path) -> None:
    ok(d, "create", "--name", "exp", "busybox", "true")
    tar = tmp_path / "rootfs.tar"
    try:
        ok(d, "export", "-o", str(tar), "exp")
    finally:
        ok(d, "rm", "exp")
    ok(d, "import", "-c", 'CMD ["/bin/echo", "imported"]', "-c", "LABEL kind=import", "-m", "my message",
       "--platform", "linux/arm64", str(tar), "imp:1")
    info = json.loads(ok(d, "image", "inspect", "imp:1"))[0]
    assert (info["Architecture"], info["Os"]) == ("arm64", "linux")
    assert info["Config"]["Cmd"] == ["/bin/echo", "imported"] and info["Config"]["Labels"] == {"kind": "import"}
    assert "my message" in ok(d, "history", "--no-trunc", "--format", "{{.Comment}}", "imp:1")
    assert "RUN is not a valid change command" in fails(d, "import", "-c", "RUN true", str(tar), "imp:2")
    assert "operating system" in fails(d, "import", "--platform", "windows/amd64", str(tar), "imp:3")


# -- image labels and stop signal, --platform ----------------------------------------------------


def test_containers_inherit_the_images_labels_and_stop_signal(d: Daemon) -> None:
    ok(d, "create", "--name", "sig", "--label", "a=image", "--label", "b=image", "--stop-signal", "QUIT", "busybox",
       "true")
    ok(d, "commit", "sig", "quitter:1")
    ok(d, "rm", "sig")
    ok(d, "run", "-d", "--name", "quit1", "--label", "b=container", "quitter:1", "sh", "-c",
       "trap 'echo got-quit; exit 3' QUIT; while true; do sleep 0.1; done")
    try:
        config = json.loads(ok(d, "inspect", "quit1"))[0]["Config"]
        assert config["Labels"] == {"a": "image", "b": "container"} and config["StopSignal"] == "SIGQUIT"
        assert "quit1 a=image,b=container" in ok(d, "ps", "--format", "{{.Names}} {{.Labels}}").splitlines()
        time.sleep(0.3)  # the trap is set
        ok(d, "stop", "quit1")
        assert json.loads(ok(d, "inspect", "quit1"))[0]["State"]["ExitCode"] == 3
        assert ok(d, "logs", "quit1") == "got-quit\n"
    finally:
        ok(d, "rm", "-f", "quit1")


def test_create_platform_must_match_the_image(client: docker.DockerClient) -> None:
    arch = client.api.inspect_image("busybox")["Architecture"]
    before = client.api.containers(all=True)
    created = client.api.create_container("busybox", "true", platform=f"linux/{arch}")
    client.api.remove_container(created["Id"])
    with pytest.raises(docker.errors.NotFound) as missing:
        client.api.create_container("busybox", "true", platform="linux/s390x")
    assert "s390x" in str(missing.value)
    assert client.api.containers(all=True) == before


# -- pull -a, push -a -------------------------------------------------------------------------


def test_pull_and_push_every_tag(d: Daemon, registry: RegistryServer) -> None:
    repo = f"{registry.host}/alltags/{d.driver}"
    for tag in ("one", "two"):
        ok(d, "tag", "busybox", f"{repo}:{tag}")
    ok(d, "push", "--all-tags", repo)
    for tag in ("one", "two"):
        ok(d, "rmi", f"{repo}:{tag}")
    out = ok(d, "pull", "--all-tags", repo)
    assert "one" in out and "two" in out
    listed = ok(d, "images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}").splitlines()
    mine = sorted(line.split() for line in listed if line.startswith(repo))
    assert [ref for ref, _ in mine] == [f"{repo}:one", f"{repo}:two"]
    assert all(digest.startswith("sha256:") for _, digest in mine), mine  # the manifest each was pulled as
    [info] = json.loads(ok(d, "image", "inspect", f"{repo}:one"))
    assert info["RepoDigests"] == [f"{repo}@{mine[0][1]}"]
    for tag in ("one", "two"):
        ok(d, "rmi", f"{repo}:{tag}")


# -- exec ----------------------------------------------------------------------------------


def test_exec_honours_attach_fields_and_checks_types(d: Daemon, client: docker.DockerClient) -> None:
    ok(d, "run", "-d", "--name", "ex", "busybox", "sleep", "60")
    try:
        script = ["sh", "-c", "echo out; echo err >&2"]
        only_err = client.api.exec_create("ex", script, stdout=False, stderr=True)
        assert client.api.exec_start(only_err["Id"], demux=True) == (None, b"err\n")
        assert client.api.exec_inspect(only_err["Id"])["OpenStdout"] is False
        only_out = client.api.exec_create("ex", script, stdout=True, stderr=False)
        assert client.api.exec_start(only_out["Id"], demux=True) == (b"out\n", None)
        url = client.api._url("/containers/{0}/exec", "ex")
        for body, field in (({"Cmd": ["true"], "Env": "A=1"}, "Env"), ({"Cmd": "true"}, "Cmd"),
                            ({"Cmd": ["true"], "ConsoleSize": [10, 20]}, "ConsoleSize")):
            response = client.api._post_json(url, data=body)
            assert response.status_code == 400 and field in response.json()["message"], response.text
    finally:
        ok(d, "rm", "-f", "ex")


# -- update, start errors -------------------------------------------------------------------------


def test_update_takes_what_create_takes(d: Daemon, client: docker.DockerClient) -> None:
    ok(d, "run", "-d", "--name", "up", "--cpu-period", "50000", "--cpu-quota", "25000", "busybox", "sleep", "60")
    try:
        read = ["cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"]
        assert ok(d, "exec", "up", *read).split() == ["25000", "50000"]
        ok(d, "update", "--cpus", "0.5", "--cpuset-cpus", "0", "up")
        assert ok(d, "exec", "up", *read, "/sys/fs/cgroup/cpuset/cpuset.cpus").split() == ["50000", "100000", "0"]
        host = json.loads(ok(d, "inspect", "up"))[0]["HostConfig"]
        assert (host["NanoCpus"], host["CpusetCpus"]) == (500_000_000, "0")
        url = client.api._url("/containers/{0}/update", "up")
        for body, field in (({"CpuShares": "512"}, "CpuShares"), ({"Memory": "lots"}, "Memory"),
                            ({"BlkioWeight": 10}, "BlkioWeight")):
            response = client.api._post_json(url, data=body)
            assert response.status_code == 400 and field in response.json()["message"], response.text
    finally:
        ok(d, "rm", "-f", "up")
    assert "cannot both be set" in fails(d, "run", "--rm", "--cpus", "1", "--cpu-quota", "50000", "busybox", "true")


def test_a_missing_executable_is_the_clients_error(client: docker.DockerClient) -> None:
    created = client.api.create_container("busybox", ["/no/such/binary"])
    try:
        with pytest.raises(docker.errors.APIError) as refused:
            client.api.start(created["Id"])
        assert refused.value.status_code == 400 and "/no/such/binary" in str(refused.value)
    finally:
        client.api.remove_container(created["Id"], force=True)


def test_a_named_volume_on_a_declared_volume_is_no_warning(d: Daemon) -> None:
    ok(d, "create", "--name", "volbase", "busybox", "true")
    ok(d, "commit", "-c", "VOLUME /data", "volbase", "withvol:1")
    ok(d, "rm", "volbase")
    warned = d.docker("create", "--name", "w1", "withvol:1", "true")
    covered = d.docker("create", "--name", "w2", "-v", "semvol:/data", "withvol:1", "true")
    try:
        assert b"declares VOLUME /data" in warned.stderr
        assert covered.returncode == 0 and b"WARNING" not in covered.stderr, covered.stderr
    finally:
        ok(d, "rm", "w1", "w2")
        ok(d, "volume", "rm", "semvol")
