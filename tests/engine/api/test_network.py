"""Bridge networking through the docker CLI and docker-py, inside a network namespace of the test's own.

The daemon runs in a namespace held by a file under the test's temp dir (made and removed
by the engine's own `network.netns`), so every bridge, veth and nftables rule it makes
lives there and no test traffic leaves it; `wget` runs there through nsenter. The
session's leak check also asserts that the machine's own namespace gained nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from engine.network import netns
from graphdrivers import mountutil
from tests.engine.api.conftest import Daemon, start_daemon

PAGE = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www"


class NetDaemon:
    def __init__(self, daemon: Daemon, ns: str) -> None:
        self.daemon = daemon
        self.netns = ns

    def docker(self, *args: str) -> subprocess.CompletedProcess:
        return self.daemon.docker(*args)

    def ok(self, *args: str) -> str:
        done = self.daemon.docker(*args)
        assert done.returncode == 0, (args, done.stderr.decode())
        return done.stdout.decode()

    def inside(self, *cmd: str) -> subprocess.CompletedProcess:
        """A command in the daemon's network namespace (not in a container)."""
        return subprocess.run(["nsenter", f"--net={self.netns}", *cmd], capture_output=True, timeout=60)


def _fetch(net: NetDaemon, url: str, attempts: int = 50) -> str:
    """wget from the daemon's namespace; the server in a detached container may still be starting."""
    for _ in range(attempts):
        done = net.inside("busybox", "wget", "-q", "-O-", url)  # (-T crashes busybox-static)
        if done.returncode == 0:
            return done.stdout.decode()
        time.sleep(0.1)
    raise AssertionError(f"{url}: {done.stderr.decode()}")


@pytest.fixture(params=["oci", "native"])
def net(request, make_backing, busybox_tar: str, tmp_path) -> Iterator[NetDaemon]:
    fs = make_backing("ext4")
    root = os.path.join(fs.mountpoint, "root")
    os.makedirs(root)
    ns = str(tmp_path / "netns")
    netns.create(ns)
    try:
        n = NetDaemon(start_daemon(root, "vfs", netns=ns, exec_driver=request.param), ns)
        try:
            n.ok("load", "-i", busybox_tar)
            yield n
            for cid in n.ok("ps", "-aq").split():
                n.ok("rm", "-f", cid)
            assert n.inside("nft", "list", "table", "ip", "strata").returncode != 0  # no rules left
            links = os.listdir("/sys/class/net")  # (ours, not the namespace's: nothing leaked out)
            assert not [x for x in links if x.startswith("stv")]
        finally:
            if n.daemon.proc.poll() is None:  # (a test may have replaced the daemon)
                assert n.daemon.stop() == 0
        assert mountutil.mounts_under(os.path.join(root, "network")) == []
    finally:
        netns.remove(ns)


def test_published_port_address_and_port_through_the_docker_cli(net: NetDaemon) -> None:
    web = net.ok("run", "-d", "--name", "web", "-p", "127.0.0.1:18080:80", "busybox", "sh", "-c",
                 PAGE.format(text="hi")).strip()
    assert _fetch(net, "http://127.0.0.1:18080/") == "hi\n"
    assert net.ok("port", "web").strip() == "80/tcp -> 127.0.0.1:18080"
    info = json.loads(net.ok("inspect", web))[0]
    settings = info["NetworkSettings"]
    assert settings["IPAddress"].startswith("172.17.") and settings["Gateway"] == "172.17.0.1"
    assert settings["MacAddress"].startswith("02:42:") and list(settings["Networks"]) == ["bridge"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    assert info["HostConfig"]["NetworkMode"] == "bridge"
    # a second container reaches the first by address; its own files name itself
    got = net.ok("run", "--rm", "busybox", "sh", "-c",
                 f"wget -qO- http://{settings['IPAddress']}/ && hostname && cat /etc/hosts")
    lines = got.splitlines()
    assert lines[0] == "hi" and lines[1] in got.split("\n", 2)[2]
    # the host port is taken: a second binding is refused and changes nothing
    clash = net.docker("run", "-d", "-p", "127.0.0.1:18080:80", "busybox", "sleep", "5")
    assert clash.returncode != 0 and b"port is already allocated" in clash.stderr
    assert _fetch(net, "http://127.0.0.1:18080/") == "hi\n"
    # -P publishes an exposed port on an ephemeral one
    net.ok("run", "-d", "--name", "anyport", "--expose", "80", "-P", "busybox", "sh", "-c", PAGE.format(text="p"))
    host_port = net.ok("port", "anyport", "80").strip().rsplit(":", 1)[1]
    assert _fetch(net, f"http://127.0.0.1:{host_port}/") == "p\n"
    net.ok("rm", "-f", "web", "anyport")
    assert net.inside("nft", "list", "table", "ip", "strata").returncode != 0


def test_user_network_names_connect_disconnect_through_the_docker_cli(net: NetDaemon) -> None:
    net.ok("network", "create", "--subnet", "10.77.0.0/24", "mynet")
    assert "mynet" in net.ok("network", "ls", "--format", "{{.Name}}").split()
    net.ok("run", "-d", "--name", "srv", "--network", "mynet", "--network-alias", "www", "busybox", "sh", "-c",
           PAGE.format(text="named"))
    time.sleep(0.3)
    assert net.ok("run", "--rm", "--network", "mynet", "busybox", "wget", "-qO-", "http://srv/") == "named\n"
    assert net.ok("run", "--rm", "--network", "mynet", "busybox", "wget", "-qO-", "http://www/") == "named\n"
    inspected = json.loads(net.ok("network", "inspect", "mynet"))[0]
    assert inspected["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1"}]
    [member] = inspected["Containers"].values()
    assert member["Name"] == "srv" and member["IPv4Address"] == "10.77.0.2/24"
    # a container on the default bridge cannot reach it, until connected
    net.ok("run", "-d", "--name", "other", "busybox", "sleep", "60")
    net.ok("network", "connect", "mynet", "other")
    got = net.ok("run", "--rm", "--network", "mynet", "busybox", "sh", "-c", "grep -w other /etc/hosts")
    assert got.split()[0].startswith("10.77.0.")
    assert net.docker("network", "rm", "mynet").returncode != 0  # members: refused
    net.ok("network", "disconnect", "mynet", "other")
    got = net.docker("run", "--rm", "--network", "mynet", "busybox", "grep", "-w", "other", "/etc/hosts")
    assert got.returncode == 1
    net.ok("rm", "-f", "srv", "other")
    net.ok("network", "rm", "mynet")
    assert "mynet" not in net.ok("network", "ls", "--format", "{{.Name}}").split()
    assert net.inside("ip", "link", "show", "br-" + inspected["Id"][:12]).returncode != 0


@pytest.mark.parametrize("net", ["native"], indirect=True)  # names are the engine's, not the execdriver's
def test_a_renamed_container_is_reached_by_its_new_name(net: NetDaemon) -> None:
    net.ok("network", "create", "renet")
    net.ok("run", "-d", "--name", "web1", "--network", "renet", "busybox", "sh", "-c", PAGE.format(text="renamed"))
    net.ok("run", "-d", "--name", "peer", "--network", "renet", "busybox", "sleep", "60")
    assert net.ok("exec", "peer", "grep", "-cw", "web1", "/etc/hosts") == "1\n"
    net.ok("rename", "web1", "web2")
    for _ in range(50):  # the server in the renamed container may still be starting
        got = net.docker("exec", "peer", "wget", "-qO-", "http://web2/")
        if got.returncode == 0:
            break
        time.sleep(0.1)
    assert got.stdout == b"renamed\n", got.stderr
    assert net.docker("exec", "peer", "grep", "-w", "web1", "/etc/hosts").returncode == 1  # no longer by the old name
    assert net.docker("exec", "peer", "wget", "-qO-", "http://web1/").returncode != 0
    client = docker.DockerClient(base_url=net.daemon.host, version="1.41")
    try:
        client.containers.get("web2").rename("web3")
        [member] = [m for m in client.networks.get("renet").attrs["Containers"].values() if m["Name"] != "peer"]
        assert member["Name"] == "web3"
    finally:
        client.close()
    assert net.ok("exec", "peer", "wget", "-qO-", "http://web3/") == "renamed\n"
    # a container started later on the network sees the new name too
    assert net.ok("run", "--rm", "--network", "renet", "busybox", "wget", "-qO-", "http://web3/") == "renamed\n"
    net.ok("rm", "-f", "web3", "peer")
    net.ok("network", "rm", "renet")


def test_networking_through_docker_py(net: NetDaemon) -> None:
    client = docker.DockerClient(base_url=net.daemon.host, version="1.41")
    try:
        mynet = client.networks.create("pynet", driver="bridge")
        web = client.containers.run("busybox", ["sh", "-c", PAGE.format(text="py")], detach=True, name="pyweb",
                                    network="pynet", ports={"80/tcp": ("127.0.0.1", 18081)})
        web.reload()
        assert web.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}]}
        assert _fetch(net, "http://127.0.0.1:18081/") == "py\n"
        out = client.containers.run("busybox", ["wget", "-qO-", "http://pyweb/"], network="pynet", remove=True)
        assert out == b"py\n"
        assert {n.name for n in client.networks.list()} >= {"bridge", "host", "none", "pynet"}
        mynet.reload()
        assert [c.name for c in mynet.containers] == ["pyweb"]
        client.networks.get("bridge").connect(web)
        web.reload()
        assert set(web.attrs["NetworkSettings"]["Networks"]) == {"pynet", "bridge"}
        client.networks.get("bridge").disconnect(web)
        web.remove(force=True)
        mynet.remove()
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("pynet")
    finally:
        client.close()


def test_a_restarted_daemon_repairs_what_a_killed_one_left(net: NetDaemon) -> None:
    net.ok("run", "-d", "--name", "left", "-p", "18082:80", "busybox", "sh", "-c", PAGE.format(text="x"))
    assert _fetch(net, "http://127.0.0.1:18082/") == "x\n"
    pid = json.loads(net.ok("inspect", "left"))[0]["State"]["Pid"]
    daemon = net.daemon
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(30)
    os.kill(pid, signal.SIGKILL)  # the container ends while no daemon watches
    os.unlink(daemon.socket)  # (the killed daemon's; start_daemon waits for a new one)
    net.daemon = start_daemon(daemon.root, daemon.driver, netns=net.netns)  # the record keeps its execdriver
    info = json.loads(net.ok("inspect", "left"))[0]
    assert info["State"]["Status"] == "exited" and info["NetworkSettings"]["IPAddress"] == ""
    assert net.inside("nft", "list", "table", "ip", "strata").returncode != 0
    assert b"stv" not in net.inside("ip", "-o", "link").stdout
    assert mountutil.mounts_under(os.path.join(daemon.root, "network")) == []
    # and its address and port are free again
    net.ok("start", "left")
    assert _fetch(net, "http://127.0.0.1:18082/") == "x\n"
