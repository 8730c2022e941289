"""Lazy pulls (issue 22 part B): eStargz images in a real loopback docker-registry,
pulled with `pull --lazy` onto the aufs FUSE union, whose files arrive when first read.

Bytes fetched are counted on the registry's side, from its access log."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator

import pytest

from engine.engine import Engine
from engine.images import testimages
from graphdrivers.archive import estargz
from graphdrivers.archive.build import LayerBuilder
from graphdrivers.lazy import layer as lazylayer
from tests.support.estargz_push import push_estargz
from tests.support.holding_proxy import HoldingProxy
from tests.support.registry_server import RegistryServer

CHUNK = 64 << 10  # small chunks: several per file without big data
DATA = bytes(range(256)) * 1024 + os.urandom(300 << 10)  # 556 KiB: nine chunks


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(str(tmp_path_factory.mktemp("lazy-registry"))) as server:
        yield server


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """busybox, and a layer of one multi-chunk file, an empty one, a symlink and a hard link."""
    work = tmp_path_factory.mktemp("lazy-layers")
    base = testimages.busybox(str(work / "busybox"))
    data = LayerBuilder(mtime=testimages.MTIME)
    data.dir("data", 0o750)
    owned = tarfile.TarInfo("data/file.bin")
    owned.size, owned.mode, owned.uid, owned.gid, owned.mtime = len(DATA), 0o640, 1000, 100, testimages.MTIME
    data.add(owned, DATA)
    data.file("data/empty", b"", 0o600)
    data.file("data/other.txt", b"another file\n")
    data.symlink("data/link", "file.bin")
    hard = tarfile.TarInfo("data/hard.bin")
    hard.type, hard.linkname, hard.mode, hard.mtime = tarfile.LNKTYPE, "data/file.bin", 0o640, testimages.MTIME
    data.add(hard)
    path = str(work / "data.tar")
    data.write(path)
    return [base.layer_files[0], path]


@pytest.fixture(scope="module")
def image(registry: RegistryServer, layers: list[str], tmp_path_factory: pytest.TempPathFactory) -> str:
    work = str(tmp_path_factory.mktemp("lazy-push"))
    push_estargz(registry.host, "lazy/small", "v1", layers, work, chunk_size=CHUNK,
                 prioritized=[["bin/busybox", "etc/passwd"]])
    return f"{registry.host}/lazy/small:v1"


def _engine(make_backing, **options: str) -> Engine:
    root = os.path.join(make_backing("ext4", 1 << 30).mountpoint, "root")
    os.mkdir(root)
    return Engine(root, "aufs", {"aufs.backend": "fuse", "exec.driver": "native", **options})


def _run(engine: Engine, name: str, *args: str, **env: str) -> tuple[int, str, str]:
    job = engine.job(name, *args, env=env)
    status = job.run()
    return status, job.stdout.getvalue().decode(), job.stderr.getvalue().decode()


def _save(engine: Engine, ref: str, path: str) -> tuple[int, str]:
    with open(path, "wb") as out:
        job = engine.job("save", ref, stdout=out)
        status = job.run()
    return status, job.stderr.getvalue().decode()


def _fetched(registry: RegistryServer, since: int = 0) -> int:
    """Bytes of blobs the registry sent (its access log) after log offset `since`."""
    with open(os.path.join(registry.directory, "registry.log"), "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return sum(int(m.group(1)) for m in re.finditer(r'"GET /v2/[^ ]+/blobs/sha256:[0-9a-f]+ HTTP/[0-9.]+" 20[06] (\d+)',
                                                    text))


def _log_size(registry: RegistryServer) -> int:
    time.sleep(0.2)  # the registry writes its access log line after the response
    return os.path.getsize(os.path.join(registry.directory, "registry.log"))


def _top(engine: Engine, ref: str) -> str:
    top = engine.graph.get_image(ref).top_layer
    assert top is not None
    return top


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- the done-when check ---------------------------------------------------------------------


def test_lazy_run_fetches_a_fraction(make_backing, registry: RegistryServer, tmp_path) -> None:
    """busybox + 100 MB pushed as eStargz: `run --pull lazy ... cat /etc/passwd` works
    having fetched under 20% of the image's bytes; the big file then reads back exactly;
    `save` of the lazy image and a plain pull of it still work."""
    work = str(tmp_path)
    base = testimages.busybox(os.path.join(work, "busybox"))
    big = LayerBuilder(mtime=testimages.MTIME)
    big.dir("data")
    block = os.urandom(1 << 20)
    big.big_file("data/big.bin", 100 << 20, block)
    big_tar = os.path.join(work, "big.tar")
    big.write(big_tar)
    pushed = push_estargz(registry.host, "lazy/big", "v1", [base.layer_files[0], big_tar], work,
                          prioritized=[["bin/busybox", "etc/passwd"]])
    os.unlink(big_tar)
    ref = f"{registry.host}/lazy/big:v1"
    engine = _engine(make_backing, **{"aufs.lazy_prefetch": "false"})  # nothing but what the run reads
    try:
        since = _log_size(registry)
        status, out, err = _run(engine, "run", ref, "cat", "/etc/passwd", rm="1", pull="lazy")
        assert status == 0, err
        assert out.startswith("root:x:0:0:root:/root:/bin/sh\n")
        fetched = _fetched(registry, since)
        assert 0 < fetched < 0.2 * pushed["size"], (fetched, pushed["size"])
        inspect = json.loads(_run(engine, "inspect", ref)[1])[0]
        lazy = inspect["Strata"]["Lazy"]
        assert [entry["State"] for entry in lazy] == ["lazy", "lazy"]
        assert lazy[1]["FilesFetched"] == 0 and lazy[1]["BytesTotal"] == pushed["blobs"][1][1].size
        status, out, err = _run(engine, "run", ref, "sha256sum", "/data/big.bin", rm="1")
        assert status == 0, err
        assert out.split()[0] == hashlib.sha256(block * 100).hexdigest()
        # save settles the lazy layers (all fetched, digests and diff ids checked) into ordinary ones
        saved = os.path.join(work, "saved.tar")
        status, err = _save(engine, ref, saved)
        assert status == 0, err
        assert "Lazy" not in json.loads(_run(engine, "inspect", ref)[1])[0]["Strata"]
        image_id = engine.graph.get_image(ref).id
    finally:
        engine.close()
    plain = _engine(make_backing)
    try:
        status, out, err = _run(plain, "pull", ref)
        assert status == 0, err
        assert out.strip().splitlines()[-1] == image_id
        assert _run(plain, "run", ref, "cat", "/etc/passwd", rm="1")[1].startswith("root:x:0:0")
        status, _, err = _run(plain, "load", saved)
        assert status == 0, err
    finally:
        plain.close()


# -- metadata before data, both FUSE servers -------------------------------------------------


@pytest.mark.parametrize("server", ["direct", "pyfuse3"])
def test_metadata_before_data(make_backing, registry: RegistryServer, image: str, server: str) -> None:
    """Sizes, modes, owners, links are right before any data arrives; reads return the
    file's bytes; hard links share the data."""
    engine = _engine(make_backing, **{"aufs.lazy_prefetch": "false", "aufs.fuse_server": server})
    try:
        since = _log_size(registry)
        status, out, err = _run(engine, "pull", image, lazy="1")
        assert status == 0, err
        assert "Pull complete (lazy: TOC only)" in out
        toc_only = _fetched(registry, since)
        top = _top(engine, image)
        mnt = engine.driver.get(top)
        try:
            st = os.lstat(os.path.join(mnt, "data/file.bin"))
            assert (st.st_size, st.st_mode & 0o7777, st.st_uid, st.st_gid) == (len(DATA), 0o640, 1000, 100)
            assert os.readlink(os.path.join(mnt, "data/link")) == "file.bin"
            assert os.lstat(os.path.join(mnt, "data")).st_mode & 0o7777 == 0o750
            assert os.lstat(os.path.join(mnt, "bin/busybox")).st_size == os.path.getsize(testimages.BUSYBOX)
            assert _fetched(registry, since) == toc_only  # stat, readlink, listing: no data fetched
            assert sorted(os.listdir(os.path.join(mnt, "data"))) == ["empty", "file.bin", "hard.bin", "link",
                                                                     "other.txt"]
            with open(os.path.join(mnt, "data/file.bin"), "rb") as f:
                f.seek(200 << 10)
                assert f.read(10) == DATA[200 << 10: (200 << 10) + 10]
            status_after_one = engine.driver.lazy_status(top)
            assert status_after_one is not None and status_after_one["FilesFetched"] == 0  # one chunk only
            assert _read(os.path.join(mnt, "data/hard.bin")) == DATA
            assert _read(os.path.join(mnt, "data/file.bin")) == DATA
            assert _read(os.path.join(mnt, "data/empty")) == b""
        finally:
            engine.driver.put(top)
        rows = dict(engine.driver.status())
        assert rows["Lazy Layers"] == "2"
        assert any(k.startswith("Lazy Layer ") and v.startswith("lazy: ") for k, v in rows.items())
    finally:
        engine.close()


def test_two_mounts_fetch_each_chunk_once(make_backing, registry: RegistryServer, image: str) -> None:
    """Two containers read the same lazy file at once: both get its bytes, the registry
    sends each chunk once (per-file locks)."""
    engine = _engine(make_backing, **{"aufs.lazy_prefetch": "false"})
    try:
        assert _run(engine, "pull", image, lazy="1")[0] == 0
        top = _top(engine, image)
        mounts = []
        for name in ("c1", "c2"):
            engine.driver.create_read_write(name, top)
            mounts.append(engine.driver.get(name))
        since = _log_size(registry)
        results: list[bytes] = []
        readers = [threading.Thread(target=lambda m=m: results.append(_read(os.path.join(m, "data/file.bin"))))
                   for m in mounts]
        for t in readers:
            t.start()
        for t in readers:
            t.join(60)
        assert results == [DATA, DATA]
        lazy_dir = os.path.join(engine.driver.home, "lazy", top)
        layer = lazylayer.LazyLayer(lazy_dir, engine.driver.metadata(top)["DiffDir"])
        spans = sum(c.span[1] - c.span[0] for c in layer.file("data/file.bin").chunks)
        assert _fetched(registry, since) == spans
        for name in ("c1", "c2"):
            engine.driver.put(name)
            engine.driver.remove(name)
    finally:
        engine.close()


def test_prefetch_completes_the_layers(make_backing, registry: RegistryServer, image: str) -> None:
    """With the background fetch on (the default), a mounted lazy image completes by
    itself: every file fetched, blob digest and diff id checked, state complete."""
    engine = _engine(make_backing)
    try:
        assert _run(engine, "pull", image, lazy="1")[0] == 0
        top = _top(engine, image)
        chain = [layer.chain_id for layer in engine.graph.get_image(image).layers]
        engine.driver.get(top)
        try:
            deadline = time.monotonic() + 120  # a hang guard, not a speed goal
            while time.monotonic() < deadline and any(engine.driver.lazy_status(c)["State"] != "complete"
                                                      for c in chain):
                time.sleep(0.2)
            assert [engine.driver.lazy_status(c)["State"] for c in chain] == ["complete", "complete"]
            last = engine.driver.lazy_status(top)
            assert last["FilesFetched"] == last["FilesTotal"] and last["BytesFetched"] == last["BytesTotal"]
        finally:
            engine.driver.put(top)
        # a complete layer mounts as an ordinary branch (passed through where the kernel can)
        status, out, err = _run(engine, "run", image, "cat", "/data/other.txt", rm="1")
        assert (status, out) == (0, "another file\n"), err
    finally:
        engine.close()


# -- refusals ----------------------------------------------------------------------------------


def test_lazy_refused_by_name(make_backing, registry: RegistryServer, image: str, tmp_path) -> None:
    """A driver that cannot serve lazily, and an image that is not eStargz, are refused
    by name and change nothing."""
    root = os.path.join(make_backing("ext4").mountpoint, "root")
    os.mkdir(root)
    vfs = Engine(root, "vfs", {})
    try:
        status, _, err = _run(vfs, "pull", image, lazy="1")
        assert status != 0 and "driver 'vfs' cannot pull lazily" in err
        assert vfs.graph.images() == [] and vfs.graph.layers() == []
    finally:
        vfs.close()
    plain = testimages.busybox(str(tmp_path / "plain"))
    push_estargz(registry.host, "lazy/noannotation", "v1", plain.layer_files, str(tmp_path), annotate=False)
    engine = _engine(make_backing)
    try:
        status, _, err = _run(engine, "pull", f"{registry.host}/lazy/noannotation:v1", lazy="1")
        assert status != 0 and "is not eStargz" in err and estargz.TOC_DIGEST_ANNOTATION in err
        assert engine.graph.images() == [] and engine.graph.layers() == []
        assert os.listdir(os.path.join(engine.driver.home, "lazy")) == []
    finally:
        engine.close()


# -- faults ------------------------------------------------------------------------------------


def test_registry_stops_mid_read(make_backing, registry: RegistryServer, image: str) -> None:
    """A registry that stops answering: the reader gets EIO after aufs.lazy_timeout (never
    a hang), the failure names the layer and file; once it answers again, the same read
    succeeds."""
    engine = _engine(make_backing, **{"aufs.lazy_prefetch": "false", "aufs.lazy_timeout": "1s"})
    try:
        assert _run(engine, "pull", image, lazy="1")[0] == 0
        top = _top(engine, image)
        mnt = engine.driver.get(top)
        outcome: list[object] = []

        def read() -> None:
            try:
                outcome.append(_read(os.path.join(mnt, "data/other.txt")))
            except OSError as exc:
                outcome.append(exc.errno)

        assert registry.proc is not None
        registry.proc.send_signal(signal.SIGSTOP)
        try:
            reader = threading.Thread(target=read)
            reader.start()
            reader.join(60)  # a hang guard: the timeout is 1 s
            assert not reader.is_alive()
        finally:
            registry.proc.send_signal(signal.SIGCONT)
        assert outcome == [errno.EIO]
        status = engine.driver.lazy_status(top)
        assert status["State"] == "lazy" and top[:12] in status["LastError"] and "data/other.txt" in status["LastError"]
        assert _read(os.path.join(mnt, "data/other.txt")) == b"another file\n"
        engine.driver.put(top)
    finally:
        engine.close()


def test_corrupted_chunk_is_never_served(make_backing, registry: RegistryServer, layers: list[str],
                                         tmp_path) -> None:
    """A blob whose chunk bytes were altered under an intact TOC: reads get EIO, the layer
    is marked bad (its other files fail too), never complete."""
    work = str(tmp_path)
    pushed = push_estargz(registry.host, "lazy/tampered-src", "v1", layers, work, chunk_size=CHUNK)
    path, layer = pushed["blobs"][1]
    raw = bytearray(_read(path))
    toc, _ = estargz.read_toc(lambda s, e: bytes(raw[s:e]), len(raw))
    first = toc.chunks("data/file.bin")[0]
    start, end = toc.span(first)
    raw[(start + end) // 2] ^= 0xFF
    tampered = os.path.join(work, "tampered.estargz")
    with open(tampered, "wb") as f:
        f.write(raw)
    _push_tampered(registry, pushed, tampered, layer)
    ref = f"{registry.host}/lazy/tampered:v1"
    engine = _engine(make_backing, **{"aufs.lazy_prefetch": "false"})
    try:
        status, _, err = _run(engine, "pull", ref, lazy="1")
        assert status == 0, err
        top = _top(engine, ref)
        mnt = engine.driver.get(top)
        try:
            with pytest.raises(OSError) as caught:
                _read(os.path.join(mnt, "data/file.bin"))
            assert caught.value.errno == errno.EIO
            state = engine.driver.lazy_status(top)
            assert state["State"] == "bad" and "data/file.bin" in state["Reason"]
            with pytest.raises(OSError):
                _read(os.path.join(mnt, "data/other.txt"))
        finally:
            engine.driver.put(top)
        status, err = _save(engine, ref, os.path.join(work, "x.tar"))
        assert status != 0 and "is bad" in err
    finally:
        engine.close()


def _push_tampered(registry: RegistryServer, pushed: dict, tampered: str, layer: estargz.EstargzLayer) -> None:
    """The tampered blob under a manifest that names it (same TOC annotation, same config)."""
    from engine.registry.client import RegistryClient
    from engine.registry.protocol import MEDIA_OCI_MANIFEST, Manifest

    client = RegistryClient(registry.host)
    digest = "sha256:" + hashlib.sha256(_read(tampered)).hexdigest()
    with open(tampered, "rb") as f:
        client.upload_blob("lazy/tampered", digest, f, os.path.getsize(tampered))
    base_path, base = pushed["blobs"][0]
    with open(base_path, "rb") as f:
        client.upload_blob("lazy/tampered", base.digest, f, base.size)
    config = pushed["config"]
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    import io

    client.upload_blob("lazy/tampered", config_digest, io.BytesIO(config), len(config))
    manifest = client.get_manifest("lazy/tampered-src", "v1").json
    manifest["layers"][1]["digest"] = digest
    body = json.dumps(manifest).encode()
    client.put_manifest("lazy/tampered", "v1", Manifest(MEDIA_OCI_MANIFEST, body,
                                                        "sha256:" + hashlib.sha256(body).hexdigest()))


def test_kill_engine_mid_pull(make_backing, registry: RegistryServer, image: str) -> None:
    """kill -9 of the engine while it fetches the second layer's TOC: the next start
    removes what it left (no image, no layer, no lazy state); a new lazy pull works."""
    top_digest = None

    def second_layer_toc(method: str, path: str, headers: dict[str, str]) -> bool:
        return top_digest is not None and top_digest in path and "Range" in headers

    from engine.registry.client import RegistryClient

    repo, tag = image.split("/", 1)[1].rsplit(":", 1)
    top_digest = RegistryClient(registry.host).get_manifest(repo, tag).json["layers"][1]["digest"]
    root = os.path.join(make_backing("ext4", 1 << 30).mountpoint, "root")
    os.mkdir(root)
    with HoldingProxy(registry.host, second_layer_toc) as proxy:
        ref = f"{proxy.host}/{repo}:{tag}"
        cmd = [sys.executable, "-m", "engine.cli", "--root", root, "--driver", "aufs", "-o", "aufs.backend=fuse",
               "pull", "--lazy", ref]
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            assert proxy.held.wait(120), proc.stderr.read() if proc.poll() is not None else "no request held"
            assert os.listdir(os.path.join(root, "aufs", "lazy"))  # the first layer is made, lazily
        finally:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    engine = Engine(root, "aufs", {"aufs.backend": "fuse", "exec.driver": "native"})
    try:
        assert engine.graph.images() == [] and engine.graph.layers() == []
        assert os.listdir(os.path.join(root, "aufs", "lazy")) == []
        assert os.listdir(os.path.join(root, "aufs", "diff")) == []
        status, _, err = _run(engine, "pull", image, lazy="1")
        assert status == 0, err
        assert _run(engine, "run", image, "cat", "/data/other.txt", rm="1")[1] == "another file\n"
    finally:
        engine.close()


def test_kill_fuse_process_mid_fetch(make_backing, registry: RegistryServer, image: str) -> None:
    """kill -9 of the union's process while it fetches a chunk: the layer stays lazy
    (never complete), the chunk unmarked; a new mount fetches it and the layer completes."""
    engine = _engine(make_backing, **{"aufs.lazy_prefetch": "false", "aufs.lazy_timeout": "60"})
    try:
        from engine.registry.client import RegistryClient

        repo, tag = image.split("/", 1)[1].rsplit(":", 1)
        data_digest = RegistryClient(registry.host).get_manifest(repo, tag).json["layers"][1]["digest"]
        with HoldingProxy(registry.host, lambda m, p, h: data_digest in p and "Range" in h) as proxy:
            proxy_ref = f"{proxy.host}/{repo}:{tag}"
            proxy.hold = lambda m, p, h: False  # the TOC may pass
            assert _run(engine, "pull", proxy_ref, lazy="1")[0] == 0
            proxy.hold = lambda m, p, h: data_digest in p and "Range" in h
            top = _top(engine, proxy_ref)
            mnt = engine.driver.get(top)
            outcome: list[object] = []

            def read() -> None:
                try:
                    outcome.append(_read(os.path.join(mnt, "data/file.bin")))
                except OSError as exc:
                    outcome.append(exc.errno)

            reader = threading.Thread(target=read)
            reader.start()
            assert proxy.held.wait(60)
            process = engine.driver.backend.process(mnt)
            assert process is not None
            process.kill()
            reader.join(60)
            assert outcome and outcome[0] in (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED)
            proxy.hold = lambda m, p, h: False
            proxy.release()
            status = engine.driver.lazy_status(top)
            assert status["State"] == "lazy" and status["FilesFetched"] < status["FilesTotal"]
            engine.driver.put(top)
            mnt = engine.driver.get(top)
            try:
                assert _read(os.path.join(mnt, "data/file.bin")) == DATA
            finally:
                engine.driver.put(top)
            assert engine.driver.lazy_complete(top) is not None
            assert engine.driver.lazy_status(top)["State"] == "complete"
    finally:
        engine.close()


def test_through_the_daemon(make_backing, image: str) -> None:
    """`strata -H HOST run --pull lazy` pulls lazily through the daemon (POST /images/create
    with strata's `lazy`); after `docker rmi`, `docker pull` of the same eStargz image is an
    ordinary full pull."""
    from tests.engine.api.conftest import REPO, start_daemon

    root = os.path.join(make_backing("ext4", 1 << 30).mountpoint, "root")
    os.mkdir(root)
    daemon = start_daemon(root, "aufs")
    try:
        env = {**os.environ, "PYTHONPATH": REPO}
        done = subprocess.run([sys.executable, "-m", "engine.cli", "-H", daemon.host, "run", "--rm", "--pull", "lazy",
                               image, "cat", "/data/other.txt"], env=env, capture_output=True, timeout=120)
        assert (done.returncode, done.stdout) == (0, b"another file\n"), done.stderr
        assert b"Pull complete (lazy: TOC only)" in done.stderr
        assert os.listdir(os.path.join(root, "aufs", "lazy"))
        assert daemon.docker("rmi", image).returncode == 0
        assert os.listdir(os.path.join(root, "aufs", "lazy")) == []
        pulled = daemon.docker("pull", image, timeout=120)
        assert pulled.returncode == 0, pulled.stderr
        ran = daemon.docker("run", "--rm", image, "sha256sum", "/data/hard.bin")
        assert ran.stdout.split()[0].decode() == hashlib.sha256(DATA).hexdigest(), ran.stderr
    finally:
        assert daemon.stop() == 0
