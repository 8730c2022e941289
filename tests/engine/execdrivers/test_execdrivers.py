"""Both execdrivers (native; oci on runc and on crun) against a plain busybox rootfs.

Every test runs real containers: real namespaces, real pivot_root, real runc/crun.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from engine.execdrivers import ExecDriver, ExecError, ProcessSpec, get_execdriver
from engine.execdrivers.base import STATUS_NOT_FOUND, process_alive
from engine.execdrivers.cgroups import detect


class Ran:
    def __init__(self, code: int, stdout: bytes, stderr: bytes, error: str) -> None:
        self.code, self.stdout, self.stderr, self.error = code, stdout, stderr, error


MONITORS: list[int] = []  # every monitor this module started: none may outlive it
STARTED: list[tuple[ExecDriver, str, str]] = []  # (driver, id, state dir) to release after each test


@pytest.fixture(autouse=True)
def _release_started() -> Iterator[None]:
    """As the engine does when a container ends: the runtime's state, native's cgroups go."""
    yield
    while STARTED:
        driver, name, state = STARTED.pop()
        driver.release(name, state)


def start(driver: ExecDriver, rootfs: str, tmp_path, args: list[str], **spec):
    n = len(os.listdir(tmp_path))
    state = str(tmp_path / f"state{n}")
    name = f"{tmp_path.name[-20:]}-{n}"  # unique, like the engine's ids: runtimes keep per-id cgroups
    handle = driver.start(name, ProcessSpec(rootfs, args, **spec), state, f"{state}.out", f"{state}.err")
    MONITORS.append(handle.monitor_pid)
    STARTED.append((driver, name, state))
    return handle, f"{state}.out", f"{state}.err"


def _runtime_log(handle) -> str:
    path = os.path.join(handle.state_dir, "runtime.log")
    return open(path).read()[-2000:] if os.path.exists(path) else ""




def run(driver: ExecDriver, rootfs: str, tmp_path, args: list[str], **spec) -> Ran:
    handle, out, err = start(driver, rootfs, tmp_path, args, **spec)
    status = handle.wait(timeout=60)
    assert status is not None, "container did not finish"
    with open(out, "rb") as o, open(err, "rb") as e:
        return Ran(status.code, o.read(), e.read(), status.error or handle.start_error)


def test_echo_and_exit_code(execdriver, busybox_rootfs, tmp_path):
    ran = run(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", "echo hello; echo oops >&2; exit 7"])
    assert (ran.code, ran.stdout, ran.stderr) == (7, b"hello\n", b"oops\n")


def test_sigkill_is_137_and_sigterm_reaches_a_handler(execdriver, busybox_rootfs, tmp_path):
    handle, _, err = start(execdriver, busybox_rootfs, tmp_path, ["sleep", "60"])
    assert handle.running(), (handle.exit_status(), open(err).read(), _runtime_log(handle))
    handle.kill(signal.SIGKILL)
    assert handle.wait(timeout=30).code == 137
    assert not handle.running()
    with pytest.raises(ExecError, match="not running"):
        handle.kill(signal.SIGKILL)

    script = "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done"
    handle, out, _ = start(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", script])
    deadline = time.monotonic() + 30
    while open(out, "rb").read() != b"ready\n":  # the trap is set once ready is printed
        assert time.monotonic() < deadline
        time.sleep(0.01)
    handle.kill(signal.SIGTERM)
    assert handle.wait(timeout=30).code == 3
    assert open(out, "rb").read() == b"ready\ngot TERM\n"


def test_100mb_of_output_is_kept_whole(execdriver, busybox_rootfs, tmp_path):
    size = 100 << 20
    ran_handle, out, err = start(
        execdriver, busybox_rootfs, tmp_path, ["sh", "-c", f"head -c {size} /dev/zero; head -c 1000 /dev/zero >&2"]
    )
    status = ran_handle.wait(timeout=120)
    assert status.code == 0, (status, open(err).read()[-2000:], _runtime_log(ran_handle))
    assert os.path.getsize(out) == size
    assert os.path.getsize(err) == 1000
    with open(out, "rb") as f:
        f.seek(size - 4096)
        assert f.read() == bytes(4096)


def test_namespaces_hostname_and_only_loopback(execdriver, busybox_rootfs, tmp_path):
    script = "echo $$; hostname; ls /sys/class/net; cat /sys/class/net/lo/operstate; ls /proc | grep -c '^[0-9]'"
    ran = run(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", script], hostname="box1")
    pid, hostname, nets, lo_state, nprocs = ran.stdout.decode().split("\n", 4)[:5]
    assert ran.code == 0, ran.stderr
    assert (pid, hostname, nets) == ("1", "box1", "lo")
    assert lo_state in ("unknown", "up")  # lo reports "unknown" when up
    assert nprocs.strip() in ("2", "3")  # sh and its ls/grep children: nothing of the host


def test_loopback_is_up(execdriver, busybox_rootfs, tmp_path):
    ran = run(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", "ifconfig lo | grep -c UP"])
    assert (ran.code, ran.stdout) == (0, b"1\n")


def test_host_network(execdriver, busybox_rootfs, tmp_path):
    ran = run(execdriver, busybox_rootfs, tmp_path, ["ls", "/sys/class/net"], network="host")
    assert ran.code == 0, ran.stderr
    assert sorted(ran.stdout.split()) == sorted(n.encode() for n in os.listdir("/sys/class/net"))


def test_rootfs_is_the_root_and_dev_is_minimal(execdriver, busybox_rootfs, tmp_path):
    ran = run(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", "ls /; echo x > /dev/null; ls /dev/null /dev/zero"])
    assert ran.code == 0, ran.stderr
    entries = ran.stdout.split()
    assert {b"bin", b"etc", b"proc", b"dev", b"sys"} <= set(entries)
    assert b"work" not in entries and b"usr" not in entries  # the host's directories stay outside
    assert entries[-2:] == [b"/dev/null", b"/dev/zero"]


def test_user_env_cwd(execdriver, busybox_rootfs, tmp_path):
    ran = run(
        execdriver,
        busybox_rootfs,
        tmp_path,
        ["sh", "-c", "id -u; id -g; id -G; pwd; echo $FOO $HOME"],
        user="nobody",
        cwd="/tmp/work",
        env=["PATH=/bin", "FOO=bar"],
    )
    assert ran.code == 0, ran.stderr
    assert ran.stdout.decode().split("\n") == ["65534", "65534", "65534 50", "/tmp/work", "bar /home", ""]
    numeric = run(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", "id -u; id -g"], user="1234:50")
    assert numeric.stdout == b"1234\n50\n"


def test_root_keeps_only_default_capabilities(execdriver, busybox_rootfs, tmp_path):
    ran = run(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", "grep CapEff /proc/self/status"])
    assert ran.stdout.split()[1] == b"00000000a80425fb"  # Docker's default set


def test_missing_command_is_127(execdriver, busybox_rootfs, tmp_path):
    ran = run(execdriver, busybox_rootfs, tmp_path, ["no-such-command", "x"])
    assert ran.code == STATUS_NOT_FOUND
    assert "no-such-command" in ran.error and "not found" in ran.error


def test_bad_specs_are_refused_before_anything_starts(execdriver, busybox_rootfs, tmp_path):
    for spec in (
        ProcessSpec(busybox_rootfs, []),
        ProcessSpec(busybox_rootfs, ["true"], network="bridge"),
        ProcessSpec(busybox_rootfs, ["true"], cwd="relative"),
        ProcessSpec(str(tmp_path / "missing"), ["true"]),
        ProcessSpec(busybox_rootfs, ["true"], user="nosuchuser"),
        ProcessSpec(busybox_rootfs, ["true"], env=["NOEQUALS"]),
    ):
        with pytest.raises(ExecError):
            execdriver.start("bad", spec, str(tmp_path / "state"), str(tmp_path / "o"), str(tmp_path / "e"))
    assert not os.path.exists(tmp_path / "state") and not os.path.exists(tmp_path / "o")


def test_a_new_driver_attaches_to_a_running_container(execdriver, busybox_rootfs, tmp_path):
    handle, _, _ = start(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", "sleep 60"])
    info = handle.info.to_json()
    again = get_execdriver(execdriver.name, execdriver.root, execdriver.options)
    other = again.attach(handle.id, handle.state_dir, type(handle.info).from_json(info))
    assert other.running()
    other.kill(signal.SIGKILL)
    assert other.wait(timeout=30).code == 137
    assert handle.wait(timeout=30).code == 137  # the starting engine sees the same end


def test_crun_on_this_host_reports_the_workaround(tmp_path):
    driver = get_execdriver("oci", str(tmp_path), {"exec.runtime": "crun"})
    rows = dict(driver.status())
    assert rows["Runtime"].startswith("crun")
    layout = detect()
    assert driver.hide_cgroup2 == layout.crun_needs_hidden_cgroup2
    assert ("Runtime workaround" in rows) == layout.crun_needs_hidden_cgroup2


def test_unknown_driver_and_runtime_are_clear_errors(tmp_path):
    with pytest.raises(ExecError, match="unknown execdriver"):
        get_execdriver("lxc", str(tmp_path))
    with pytest.raises(ExecError, match="known runtimes"):
        get_execdriver("oci", str(tmp_path), {"exec.runtime": "kata"})


def test_no_monitor_or_container_outlives_the_tests(busybox_rootfs):
    """Runs last in this module: every container above has been waited for."""
    assert MONITORS and [pid for pid in MONITORS if process_alive(pid)] == []
    assert not [p for p in open("/proc/self/mountinfo").read().splitlines() if busybox_rootfs in p]
