"""tar-split: a layer tar is reproduced byte for byte from its headers and the layer's files."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import subprocess
import tarfile
import zlib

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.images import layerstream


def _tar(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        def add(name: str, data: bytes | None = None, **attrs) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = 1
            for key, value in attrs.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)

        add("d", type=tarfile.DIRTYPE, mode=0o755)
        add("d/a", b"hello" * 300)
        add("./d/empty", b"")
        add("d/" + ("long" * 60 if fmt != tarfile.USTAR_FORMAT else "x" * 99), b"y" * 1024)
        add("d/link", type=tarfile.SYMTYPE, linkname="a")
        add("d/hard", type=tarfile.LNKTYPE, linkname="d/a")
        if fmt == tarfile.PAX_FORMAT:
            add("d/ünïcode", b"uni")
    return buf.getvalue() + bytes(4096)  # trailing padding must survive too


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_reassembled_tar_is_identical(tmp_path, fmt: int) -> None:
    raw = _tar(fmt)
    ts_path = str(tmp_path / "layer.tarsplit")
    out, commit = layerstream.write_tarsplit(ts_path)
    splitter = layerstream.TarSplitter(out)
    for i in range(0, len(raw), 333):  # odd chunk sizes cross every block boundary
        splitter.feed(raw[i : i + 333])
    splitter.close()
    commit()
    layer = tmp_path / "layer"
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        tf.extractall(layer, filter="fully_trusted")
    assert layerstream.tarsplit_size(ts_path) == len(raw)
    assert b"".join(layerstream.reassemble(ts_path, str(layer))) == raw


def test_reassembly_never_follows_a_symlink_out_of_the_layer(tmp_path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("etc/secret")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"12345"))
    ts_path = str(tmp_path / "t.tarsplit")
    out, commit = layerstream.write_tarsplit(ts_path)
    splitter = layerstream.TarSplitter(out)
    splitter.feed(buf.getvalue())
    splitter.close()
    commit()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"HOST!")
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "etc").symlink_to(outside)
    with pytest.raises(OSError):
        b"".join(layerstream.reassemble(ts_path, str(layer)))


@pytest.mark.parametrize("compress", [lambda b: b, gzip.compress, lambda b: zstandard.ZstdCompressor().compress(b)])
def test_decompressed_detects_the_compression(compress) -> None:
    raw = _tar(tarfile.PAX_FORMAT)
    assert layerstream.decompressed(io.BytesIO(compress(raw))).read() == raw


_NAMES = st.text(alphabet="abcdefghij-_.ü", min_size=1, max_size=150).filter(lambda n: n not in (".", ".."))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(_NAMES, st.binary(max_size=3000)), min_size=1, max_size=8,
                        unique_by=lambda e: e[0]),
       fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]),
       chunk=st.integers(min_value=1, max_value=5000))
def test_any_flat_tar_round_trips(tmp_path_factory, entries, fmt, chunk) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    work = tmp_path_factory.mktemp("ts")
    ts_path = str(work / "t.tarsplit")
    out, commit = layerstream.write_tarsplit(ts_path)
    splitter = layerstream.TarSplitter(out)
    for i in range(0, len(raw), chunk):
        splitter.feed(raw[i : i + chunk])
    splitter.close()
    commit()
    for name, data in entries:
        (work / name).write_bytes(data)
    assert b"".join(layerstream.reassemble(ts_path, str(work))) == raw


@pytest.mark.parametrize("fmt", ["posix", "gnu"])
def test_sparse_members_are_kept_verbatim(tmp_path, fmt: str) -> None:
    """GNU tar's sparse encodings store a map before the data; tar-split must not treat that
    payload as the file's bytes (the layer holds the expanded file)."""
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "holes", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(archive), "-C", str(src), "holes"], check=True)
    raw = archive.read_bytes()
    ts_path = str(tmp_path / "t.tarsplit")
    out, commit = layerstream.write_tarsplit(ts_path)
    splitter = layerstream.TarSplitter(out)
    splitter.feed(raw)
    splitter.close()
    commit()
    layer = tmp_path / "layer"
    layer.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(layer)], check=True)
    assert b"".join(layerstream.reassemble(ts_path, str(layer))) == raw


# -- ReadAhead ------------------------------------------------------------------------------


def test_read_ahead_gives_every_byte_in_order() -> None:
    data = os.urandom(3 * layerstream.CHUNK + 12345)
    with contextlib.closing(layerstream.ReadAhead(io.BytesIO(data), depth=2)) as ahead:
        got = [ahead.read(1000), ahead.read(512), io.BufferedReader(ahead).read()]  # type: ignore[arg-type]
        assert ahead.read(10) == b""
    assert b"".join(got) == data


class _Failing(io.RawIOBase):
    """Gives `good` bytes, then fails like a corrupt gzip stream."""

    def __init__(self, good: bytes) -> None:
        self.good = good

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.good:
            out, self.good = self.good[:n], self.good[n:]
            return out
        raise zlib.error("invalid block type")


def test_read_ahead_raises_the_readers_error_where_the_reader_is() -> None:
    with contextlib.closing(layerstream.ReadAhead(_Failing(b"x" * 100))) as ahead:
        assert ahead.read(100) == b"x" * 100
        with pytest.raises(zlib.error, match="invalid block type"):
            ahead.read(1)
        assert ahead.read(1) == b""  # after the error: the end


def test_read_ahead_closed_early_stops_its_thread() -> None:
    ahead = layerstream.ReadAhead(io.BytesIO(os.urandom(64 * layerstream.CHUNK)), depth=1)
    assert len(ahead.read(10)) == 10
    ahead.close()  # the consumer failed: the thread must not stay blocked on the full queue
    assert not ahead._thread.is_alive()
