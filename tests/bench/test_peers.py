"""Peers (dockerd, podman) and floors beside strata in one real `bench run`, the pull
scenario through a loopback registry, a peer that cannot start, and Ctrl-C in the middle
of a peer step: nothing may be left (no peer process, mount, socket or directory)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pandas as pd
import pytest

from bench import peers, results
from bench.palette import FIXED, colour
from graphdrivers import mountutil

from ..support.interrupt import interrupt_when
from .conftest import REPO, bench

PEER_DIRS = (f"{peers.RUN_BASE}/dockerd-*", f"{peers.RUN_BASE}/podman-*")


def _our_processes(paths: list[str]) -> list[str]:
    """Live (not zombie) processes whose command line names one of `paths`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and int(pid) != os.getpid() and any(p in cmdline for p in paths):
            found.append(cmdline)
    return found


def _peer_dirs() -> set[str]:
    return {d for pattern in PEER_DIRS for d in glob.glob(pattern)}


def _peer_dirs_of(scratch: str, before: set[str]) -> set[str]:
    """The peer run directories that appeared since `before` and belong to the run using
    `scratch`: a process names both (other runs on this machine make their own)."""
    return {d for d in _peer_dirs() - before if any(scratch in c for c in _our_processes([d]))}


def _assert_nothing_left(scratch: str, run_dirs: set[str]) -> None:
    assert mountutil.mounts_under(scratch) == []
    for d in run_dirs:
        assert mountutil.mounts_under(d) == [] and not os.path.exists(d), d  # sockets live there
    assert _our_processes([scratch, *run_dirs]) == []
    assert not os.path.exists(scratch)


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("bench-peers")
    out, scratch = str(base / "out"), str(base / "scratch")
    proc = bench("run", "--driver", "vfs", "--peer", "dockerd", "--peer", "podman", "--scenario", "exec,pull",
                 "--execdriver", "oci", "--quick", "--repeat", "2", "--out", out, "--scratch", scratch,
                 timeout=900)  # fmt: skip
    run_dirs = {str(p["run_dir"]) for p in results.load_run(out)["peers"].values()}
    return out, scratch, proc, run_dirs


def test_peers_and_floors_measured_beside_strata(peer_run) -> None:
    out, _, proc, _ = peer_run
    assert proc.returncode == 0, proc.stderr
    df = results.load([out])
    systems = {s.split()[0] for s in df["system"]}
    assert systems == {"strata", "dockerd", "podman", "floor"}
    assert any(s.startswith("dockerd 20.10.") for s in df["system"])
    assert any(s.startswith("podman 4.") for s in df["system"])
    for peer in ("dockerd", "podman"):
        mine = df[df["system"].str.startswith(peer)]
        assert set(mine["step"]) == {"load", "create", "true", "echo_first_byte", "write_copyup_in_container",
                                     "run_rm_true", "pull"}  # fmt: skip
        assert (mine["driver"] == "vfs").all() and (mine["backend"] == "vfs").all()
        assert mine["seconds"].gt(0).all() and (mine["repetition"] >= 0).all()
    strata = df[df["system"] == "strata"]
    assert {"load", "create", "run_rm_true", "true", "pull", "fetch", "decompress", "apply"} <= set(strata["step"])
    per_layer = strata[(strata["step"] == "fetch") & (strata["layer"] >= 0)]
    assert len(per_layer) == 2 and per_layer["bytes"].gt(0).all()  # the busybox workload: one layer, 2 rounds
    pulls = df[df["scenario"] == "pull"]
    assert (pulls["cache"] == "cold").all() and pulls["cache_dropped"].all()
    floor = df[df["system"] == results.FLOOR]
    assert set(floor["step"]) == {"true", "run_rm_true", "echo_first_byte", "load", "pull", "fetch", "decompress",
                                  "apply", "chain:fetch", "chain:decompress", "chain:apply"}  # fmt: skip
    assert floor["seconds"].gt(0).all()
    for step in ("true", "echo_first_byte"):
        runtimes = floor[floor["step"] == step]
        assert set(runtimes["execdriver"]) == {"oci"} and set(runtimes["backend"]) == {"runc run", "crun run"}
    assert set(floor[floor["step"] == "load"]["backend"]) == {"archive read + tar -x"}
    assert set(floor[floor["step"] == "fetch"]["backend"]) == {"HTTP GET (requests)"}
    summary = pd.read_csv(os.path.join(out, "summary.csv"))
    floors = summary[summary["system"] == results.FLOOR]
    assert (floors["n"] == 2).all() and floors[["median", "ci_low", "ci_high"]].notna().all().all()
    engines = summary[summary["system"] != results.FLOOR]
    for step in ("true", "echo_first_byte", "load", "run_rm_true", "pull", "chain:fetch", "chain:apply"):
        mine = engines[engines["step"] == step]
        assert len(mine) >= 1 and mine["vs_floor"].gt(0).all(), step  # every engine's step has its floor ratio
    run_rm = engines[engines["step"] == "run_rm_true"]
    assert len(run_rm) == 3 and set(run_rm["execdriver"]) == {"oci"}  # strata, dockerd, podman: side by side
    assert run_rm["vs_fastest"].min() == 1.0
    run = results.load_run(out)
    assert run["peers"]["dockerd/vfs"]["status"] == "ok" and run["peers"]["podman/vfs"]["status"] == "ok"
    assert run["pull"]["reference"].startswith("127.0.0.1:")
    assert "x floor" in proc.stdout


def test_each_step_has_one_source_per_system_and_driver(peer_run) -> None:
    """No step is measured twice for one system and driver (strata's `run_rm_true` comes from
    the exec scenario only, not also from the Engine that measures load and create)."""
    out, _, _, _ = peer_run
    df = results.load([out])
    keys = ["system", "driver", "backend", "scenario", "step", "layer", "depth", "cache", "repetition"]
    counts = df[df["seconds"].notna()].groupby(keys, dropna=False).size()
    assert counts.max() == 1, counts[counts > 1]
    strata = df[df["system"] == results.STRATA]
    assert set(strata[strata["step"] == "run_rm_true"]["execdriver"]) == {"oci"}


def test_peer_run_leaves_nothing(peer_run) -> None:
    _, scratch, _, run_dirs = peer_run
    assert len(run_dirs) == 2  # one run directory (sockets, exec root) per peer, gone again
    assert all(d.startswith(peers.RUN_BASE) for d in run_dirs)
    _assert_nothing_left(scratch, run_dirs)


def _with_fake_dockerd(tmp_path, script: str) -> tuple[list[str], dict[str, str], str, str]:
    """A `dockerd` shell script first on PATH, and the argv of a one-repetition exec run with it
    as the peer: (argv, env, out, scratch)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dockerd").write_text(f"#!/bin/sh\n{script}\n")
    (fake / "dockerd").chmod(0o755)
    out, scratch = str(tmp_path / "out"), str(tmp_path / "scratch")
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}  # fmt: skip
    argv = [sys.executable, "-m", "bench.cli", "run", "--driver", "vfs", "--peer", "dockerd", "--scenario", "exec",
            "--execdriver", "oci", "--no-floors", "--quick", "--repeat", "1", "--warmup", "0", "--out", out,
            "--scratch", scratch]  # fmt: skip
    return argv, env, out, scratch


def test_a_peer_that_cannot_start_is_an_error_row_and_the_run_goes_on(tmp_path) -> None:
    argv, env, out, scratch = _with_fake_dockerd(tmp_path, "echo 'dockerd: cannot start here' >&2\nexit 1")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "peer dockerd/vfs failed to start" in " ".join(proc.stderr.split())
    df = results.load([out])
    errors = df[df["system"] == "dockerd"]
    assert len(errors) == 6 and errors["seconds"].isna().all()
    assert errors["note"].str.contains("dockerd exited 1 while starting").all()
    assert errors["note"].str.contains("cannot start here").all()  # the daemon's own words
    strata = df[df["system"] == "strata"]
    assert strata["seconds"].notna().any() and {"true", "load"} <= set(strata["step"])
    run = results.load_run(out)
    assert run["peers"]["dockerd/vfs"]["status"] == "failed"
    assert "cannot start here" in run["peers"]["dockerd/vfs"]["errors"][0]
    _assert_nothing_left(scratch, set())
    assert _our_processes([str(tmp_path)]) == []  # its containerd was stopped too


def test_sigint_in_the_middle_of_a_peer_step_leaves_nothing(tmp_path) -> None:
    out, scratch = str(tmp_path / "out"), str(tmp_path / "scratch")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    before = _peer_dirs()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", "--driver", "vfs", "--peer", "dockerd", "--peer", "podman",
         "--scenario", "exec", "--execdriver", "oci", "--no-floors", "--quick", "--repeat", "50", "--out", out,
         "--scratch", scratch],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dirs: set[str] = set()

    def peer_step_running() -> bool:
        nonlocal run_dirs
        run_dirs |= _peer_dirs_of(scratch, before)
        clients = [c for c in _our_processes(list(run_dirs)) if c.split()[0].endswith(("/docker", "/podman"))]
        return any(" start " in c or " create " in c or " load " in c for c in clients)

    def mounted() -> None:  # the driver's filesystem, the peers' data roots
        assert mountutil.mounts_under(scratch)

    err = interrupt_when(proc, peer_step_running, within=300, settle=mounted)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert run_dirs  # the peers' directories seen while they ran: gone now
    _assert_nothing_left(scratch, run_dirs)
    assert results.load_run(out)["interrupted"] is True


def test_peers_without_a_scenario_they_measure_are_refused(tmp_path) -> None:
    proc = bench("run", "--driver", "vfs", "--peer", "dockerd", "--scenario", "rootfs", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "--peer measures the exec and pull scenarios" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_pairing_a_peer_cannot_do_is_refused_by_name(tmp_path) -> None:
    with pytest.raises(peers.PeerUnavailable, match="podman has no storage driver like strata's devmapper"):
        peers.make("podman", "devmapper", str(tmp_path / "data"))
    assert not os.path.exists(tmp_path / "data")


def test_peers_and_floors_get_their_fixed_colours() -> None:
    df = results.frame([
        results.Row("r", "overlay2", "overlay2", "ext4", "exec", "true", "busybox"),
        results.Row("r", "overlay2", "overlay2", "ext4", "exec", "true", "busybox", system="dockerd 20.10.24"),
        results.Row("r", "overlay2", "overlay", "ext4", "exec", "true", "busybox", system="podman 4.3.1"),
        results.Row("r", "overlay2", "runc run", "ext4", "exec", "true", "busybox", system="floor"),
    ])  # fmt: skip
    labels = list(results.label_runs(df)["driver"])
    assert labels[0] == "overlay2" and labels[1].startswith("dockerd/") and labels[2].startswith("podman/")
    assert [colour(label) for label in labels] == [FIXED["overlay2"], FIXED["dockerd"], FIXED["podman"],
                                                   FIXED["floor"]]  # fmt: skip


def test_sigint_while_a_peer_starts_leaves_nothing(tmp_path) -> None:
    """Ctrl-C while dockerd is still starting: its containerd and the daemon (each in a session
    of its own, so the terminal's SIGINT never reaches them) are stopped, nothing stays."""
    never_ready = 'case "$1" in --version) echo "Docker version 20.10.24";; *) while :; do sleep 0.2; done;; esac'
    argv, env, _, scratch = _with_fake_dockerd(tmp_path, never_ready)  # its containerd is real
    before = _peer_dirs()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dirs: set[str] = set()

    def starting() -> bool:
        nonlocal run_dirs
        run_dirs |= _peer_dirs_of(scratch, before)
        return bool(run_dirs) and bool(_our_processes([str(tmp_path / "bin" / "dockerd")]))

    err = interrupt_when(proc, starting, within=300)
    assert proc.returncode == 130, err
    assert run_dirs
    _assert_nothing_left(scratch, run_dirs)
    assert _our_processes([str(tmp_path)]) == []  # the fake daemon and its containerd too
