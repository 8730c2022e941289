"""The pull scenario's first-byte steps: a real `bench run` on aufs (lazy rows) and vfs (an
error saying why it has none), and the registry's byte count from its own access log."""

from __future__ import annotations

import hashlib
import os
import time

import requests

from bench import results, verify
from bench.registryserver import RegistryServer
from graphdrivers import mountutil

from .conftest import bench
from .test_peers import _our_processes


def test_bytes_sent_counts_the_bodies_of_responses_completed_in_the_window(tmp_path) -> None:
    blob = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with RegistryServer(str(tmp_path / "registry")) as server:
        base = f"http://{server.host}/v2/bytes/test"
        start = requests.post(f"{base}/blobs/uploads/", timeout=30)
        location = start.headers["Location"]
        sep = "&" if "?" in location else "?"
        assert requests.put(f"{location}{sep}digest={digest}", data=blob, timeout=30).status_code == 201
        time.sleep(0.01)
        log_from, since = server.log_size(), time.time()
        whole = requests.get(f"{base}/blobs/{digest}", timeout=30)
        part = requests.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=1000-1999"}, timeout=30)
        missing = requests.get(f"{base}/blobs/sha256:{'0' * 64}", timeout=30)
        time.sleep(0.05)  # the registry stamps a response just after its last byte
        until = time.time()
        assert (whole.status_code, part.status_code, missing.status_code) == (200, 206, 404)
        time.sleep(0.01)
        requests.get(f"{base}/blobs/{digest}", timeout=30)  # after the window: not counted
        want = len(blob) + 1000 + len(missing.content)
        assert server.bytes_sent(since, until, log_from=log_from) == want
        assert server.bytes_sent(since, until) == want  # reading the whole log gives the same
        assert server.bytes_sent(since, time.time() + 1) == want + len(blob)


def test_first_byte_steps_lazy_on_aufs_and_an_error_elsewhere(tmp_path) -> None:
    out, scratch = str(tmp_path / "out"), str(tmp_path / "scratch")
    proc = bench("run", "--driver", "aufs", "--driver", "vfs", "--scenario", "pull", "--workload", "big-file",
                 "--quick", "--repeat", "2", "--warmup", "0", "--no-floors", "--out", out, "--scratch", scratch,
                 timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    df = results.load([out])
    run = results.load_run(out)
    image = run["pull"]["estargz"]
    assert image["layers"] == 2 and image["blob_bytes"] > 16 << 20  # busybox under the 16 MiB file
    first = df[df["step"].isin(["pull_to_first_byte", "lazy_pull_to_first_byte"])]
    assert (first["cache"] == "cold").all() and first["cache_dropped"].all() and first["seconds"].gt(0).all()
    assert (first["depth"] == 2).all() and (first["bytes"] == image["bytes"]).all()
    steps = {driver: sorted(set(rows["step"])) for driver, rows in first.groupby("driver")}
    assert steps == {"aufs": ["lazy_pull_to_first_byte", "pull_to_first_byte"], "vfs": ["pull_to_first_byte"]}
    assert len(first) == 3 * 2
    full = first[first["step"] == "pull_to_first_byte"]["bytes_fetched"]
    lazy = first[first["step"] == "lazy_pull_to_first_byte"]["bytes_fetched"]
    assert (full >= image["blob_bytes"]).all()  # a full pull fetches every blob (and the manifest)
    assert lazy.gt(0).all() and (lazy < 0.2 * full.min()).all()  # the TOCs and busybox's cat only
    assert df[~df.index.isin(first.index)]["bytes_fetched"].isna().all()
    assert any("vfs cannot serve lazy layers" in e for e in run["drivers"]["vfs"]["errors"])
    assert run["drivers"]["aufs"]["errors"] == [] and run["drivers"]["aufs"]["status"] == "ok"
    (time_check, _), (share_check, share_holds) = verify._lazy_pull({"pull-lazy": df}, ("aufs",))
    assert "aufs: full pull to first byte" in time_check and "n=2" in time_check
    assert share_holds and "of a full pull's" in share_check  # a 16 MiB file: the time need not favour lazy yet
    assert mountutil.mounts_under(scratch) == [] and not os.path.exists(scratch)
    assert _our_processes([scratch]) == []
