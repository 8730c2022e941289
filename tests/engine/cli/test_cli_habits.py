"""Docker's CLI habits in `strata`: -q, --format, version, system df, testimage, --pull,
usage on unknown flags, quiet broken pipes, read-only commands, the default driver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import graphdrivers
from tests.engine.cli.conftest import REPO, _caller
from tests.engine.cli.test_cli import _ok
from tests.engine.conftest import Images
from tests.support.registry_server import RegistryServer


def _strata(root: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI with no --driver: automatic selection."""
    return subprocess.run([sys.executable, "-m", "engine.cli", "--root", root, *args], capture_output=True,
                          env={**{k: v for k, v in os.environ.items() if k != "DOCKER_DRIVER"}, "PYTHONPATH": REPO,
                               **(env or {})}, timeout=120)


def test_unknown_flags_print_the_subcommands_usage(strata_vfs) -> None:
    done = strata_vfs("images", "--bogus")
    err = done.stderr.decode()
    assert done.returncode == 2
    assert err.startswith("usage: strata images") and "unrecognized arguments: --bogus" in err
    assert strata_vfs("ps", "-z").stderr.decode().startswith("usage: strata ps")


def test_quiet_and_format(strata_vfs, images: Images) -> None:
    _ok(strata_vfs("load", "-i", images.busybox_tar))
    short = images.busybox.id[7:19]
    assert _ok(strata_vfs("images", "-q")) == short + "\n"
    assert _ok(strata_vfs("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")) == f"busybox:latest {short}\n"
    row = json.loads(_ok(strata_vfs("images", "--format", "{{json .}}")))
    assert row["ID"] == short and row["CreatedAt"] == "2023-11-14 22:13:20 +0000 UTC" and row["Digest"] == "<none>"
    table = _ok(strata_vfs("images", "--format", "table {{.ID}}\\t{{.Repository}}"))
    assert table == f"IMAGE ID       REPOSITORY\n{short}   busybox\n"

    cid = _ok(strata_vfs("create", "--name", "web", "busybox", "true")).strip()
    assert _ok(strata_vfs("ps", "-aq")) == cid[:12] + "\n"
    assert _ok(strata_vfs("ps", "-a", "--format", "{{.Names}} {{.State}} {{.Command}}")) == 'web created "true"\n'
    assert _ok(strata_vfs("ps", "-a", "--format", "table {{.ID}}\t{{.Names}}")) == \
        f"CONTAINER ID   NAMES\n{cid[:12]}   web\n"
    assert _ok(strata_vfs("inspect", "-f", "{{.Id}} {{.State.Status}} {{.Name}}", "web")) == f"{cid} created /web\n"
    assert json.loads(_ok(strata_vfs("inspect", "--format", "{{json .Config.Cmd}}", "web"))) == ["true"]
    assert _ok(strata_vfs("inspect", "-f", "{{.State.Pid}} {{.Nope}}", "web")) == "0 <no value>\n"
    assert re.fullmatch(r"\d\.\d+e\+06\n", _ok(strata_vfs("inspect", "-f", "{{.Size}}", "busybox")))  # Go's float64

    for template, word in [("{{range .}}x{{end}}", "'range'"), ("{{.ID | upper}}", "pipeline"),
                           ("{{.Nope}}", "can't evaluate field Nope")]:
        done = strata_vfs("images", "--format", template)
        assert done.returncode != 0 and word in done.stderr.decode() and "Traceback" not in done.stderr.decode()
    done = strata_vfs("inspect", "-f", "table {{.Id}}", "web")
    assert done.returncode != 0 and "no table format" in done.stderr.decode()


def test_version_and_system_df(strata_vfs, images: Images) -> None:
    version = _ok(strata_vfs("version"))
    assert version.startswith("Version:") and "API version:     1.41" in version
    assert json.loads(_ok(strata_vfs("version", "--json")))["ApiVersion"] == "1.41"
    _ok(strata_vfs("load", "-i", images.busybox_tar))
    _ok(strata_vfs("create", "busybox", "true"))
    df = _ok(strata_vfs("system", "df")).splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:3] == ["Images", "1", "1"] and df[1].endswith("(0%)")  # in use: nothing reclaimable
    assert json.loads(_ok(strata_vfs("system", "df", "--json")))["Images"][0]["Created"] == 1_700_000_000
    assert strata_vfs("system", "prune").stderr.decode().startswith("usage: strata system")


def test_testimage_loads_or_writes_an_archive(strata_vfs, tmp_path) -> None:
    assert _ok(strata_vfs("testimage")) == "Loaded image: busybox:latest\n"
    assert _ok(strata_vfs("run", "--rm", "busybox", "echo", "hi")) == "hi\n"
    archive = str(tmp_path / "mine.tar")
    assert _ok(strata_vfs("testimage", "--name", "mine:1", "-o", archive)).startswith("Wrote mine:1 ")
    other = _caller(str(tmp_path / "other"), "vfs")
    assert _ok(other("load", "-i", archive)) == "Loaded image: mine:1\n"
    assert _ok(other("run", "--rm", "mine:1", "cat", "/etc/motd")) == "strata test image\n"


def test_export_into_a_closed_pipe_ends_quietly(strata_vfs, images: Images) -> None:
    _ok(strata_vfs("load", "-i", images.busybox_tar))
    _ok(strata_vfs("create", "--name", "cx", "busybox", "true"))
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--root", strata_vfs.root, "--driver", "vfs",
                             "export", "cx"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout.read(10)  # as `| head -c 10` does, then hang up
    proc.stdout.close()
    assert proc.wait(60) == 141
    assert proc.stderr.read() == b""


def test_read_only_commands_create_nothing(strata_vfs, images: Images) -> None:
    _ok(strata_vfs("load", "-i", images.busybox_tar))
    before = sorted(os.listdir(strata_vfs.root))
    assert _ok(strata_vfs("images", driver="overlay2")).splitlines() == ["REPOSITORY   TAG   IMAGE ID   CREATED   SIZE"]
    _ok(strata_vfs("info", driver="overlay2"))
    assert sorted(os.listdir(strata_vfs.root)) == before
    assert "busybox" in _ok(_strata(strata_vfs.root, "images"))  # still one driver's root


def test_default_driver_follows_mobys_priority(make_backing) -> None:
    ext4 = make_backing("ext4")
    info = _strata(os.path.join(ext4.mountpoint, "root"), "info")
    assert "Storage Driver: overlay2\n" in info.stdout.decode(), info.stderr.decode()
    if "btrfs" in graphdrivers.registered():
        btrfs = make_backing("btrfs")
        info = _strata(os.path.join(btrfs.mountpoint, "root"), "info")
        assert "Storage Driver: btrfs\n" in info.stdout.decode(), info.stderr.decode()


def test_run_pulls_a_missing_image(strata_vfs, images: Images, tmp_path) -> None:
    _ok(strata_vfs("load", "-i", images.busybox_tar))
    with RegistryServer(str(tmp_path / "registry")) as registry:
        remote = f"{registry.host}/habits/busybox:1"
        _ok(strata_vfs("tag", "busybox", remote))
        _ok(strata_vfs("push", remote))
        _ok(strata_vfs("rmi", remote, "busybox"))
        never = strata_vfs("run", "--rm", "--pull", "never", remote, "true")
        assert never.returncode != 0 and "no such image" in never.stderr.decode()
        done = strata_vfs("run", "--rm", remote, "echo", "pulled")
        assert done.returncode == 0 and done.stdout == b"pulled\n"
        assert f"Unable to find image '{remote}' locally" in done.stderr.decode()
        again = strata_vfs("run", "--rm", "--pull", "always", remote, "true")
        assert again.returncode == 0 and "Unable to find" not in again.stderr.decode()
        assert "Digest: sha256:" in again.stderr.decode()
        bad = strata_vfs("create", "--pull", "sometimes", remote)
        assert bad.returncode == 2 and "sometimes" in bad.stderr.decode()
