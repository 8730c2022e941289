"""graphdrivers.archive.estargz: blobs that are plain gzip tars to every reader, whose TOC
is found through the footer with two range reads, whose every chunk inflates alone and
verifies against the TOC, and whose corrupt chunks never yield bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

from graphdrivers.archive import apply_layer
from graphdrivers.archive import estargz as esgz
from graphdrivers.errors import ChunkDigestMismatch, EstargzError
from tests.unit.archive_tools import build_tar, member, snapshot, without_root_and_times_of

CHUNK = 64 << 10
BIG = os.urandom(5 * CHUNK + 1234)  # six chunks, the last one short
EXACT = os.urandom(2 * CHUNK)  # two full chunks, nothing left over
EXTRA = {esgz.TOC_NAME, esgz.NO_PREFETCH_LANDMARK, esgz.PREFETCH_LANDMARK}


def _layer() -> bytes:
    return build_tar([
        member("etc", tarfile.DIRTYPE, mode=0o755),
        member("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n", uid=0, gid=0),
        member("data", tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000),
        member("data/big", data=BIG, mode=0o600, uid=1000, gid=1000, xattrs={"user.k": b"\x00\xffv"},
               pax={"mtime": "1600000000.123456789"}),
        member("data/exact", data=EXACT),
        member("data/empty"),
        member("data/hard", tarfile.LNKTYPE, linkname="data/big"),
        member("data/link", tarfile.SYMTYPE, linkname="../etc/passwd", mode=0o777),
        member("data/fifo", tarfile.FIFOTYPE),
        member("data/null", tarfile.CHRTYPE, dev=(1, 3), mode=0o666),
        member("data/.wh.gone"),
    ])


def _convert(tar: bytes, **kwargs) -> tuple[bytes, esgz.EstargzLayer]:
    out = io.BytesIO()
    layer = esgz.write_estargz(io.BytesIO(tar), out, chunk_size=CHUNK, **kwargs)
    return out.getvalue(), layer


def _read(blob: bytes) -> tuple[esgz.Toc, str, list[tuple[int, int]]]:
    ranges: list[tuple[int, int]] = []

    def read_range(start: int, end: int) -> bytes:
        ranges.append((start, end))
        return blob[start:end]

    toc, digest = esgz.read_toc(read_range, len(blob))
    return toc, digest, ranges


def test_blob_describes_itself_and_toc_is_found_with_two_range_reads() -> None:
    blob, layer = _convert(_layer())
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.size == len(blob)
    plain = gzip.decompress(blob)
    assert layer.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert layer.uncompressed_size == len(plain)
    toc, digest, ranges = _read(blob)
    assert digest == layer.toc_digest
    assert ranges == [(len(blob) - esgz.FOOTER_SIZE, len(blob)), (toc.toc_offset, len(blob) - esgz.FOOTER_SIZE)]
    assert esgz.parse_footer(blob[-esgz.FOOTER_SIZE:]) == toc.toc_offset


def test_every_chunk_inflates_alone_and_verifies() -> None:
    blob, _ = _convert(_layer())
    toc, _, _ = _read(blob)
    chunks = toc.chunks("data/big")
    assert [c.type for c in chunks] == ["reg"] + ["chunk"] * 5
    assert [c.chunk_offset for c in chunks] == [i * CHUNK for i in range(6)]
    assert [c.chunk_size for c in chunks] == [CHUNK] * 5 + [1234]
    assert [c.type for c in toc.chunks("/data/exact/")] == ["reg", "chunk"]
    for name, data in (("data/big", BIG), ("data/exact", EXACT), ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")):
        got = b"".join(esgz.decompress_chunk(blob[slice(*toc.span(c))], c) for c in toc.chunks(name))
        assert got == data
        assert toc.get(name).digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert toc.chunks("data/empty") == []
    with pytest.raises(EstargzError, match="not a regular file"):
        toc.chunks("data/link")


def test_toc_entries_carry_the_metadata() -> None:
    blob, _ = _convert(_layer())
    toc, _, _ = _read(blob)
    big = toc.get("data/big")
    assert (big.type, big.size, big.mode, big.uid, big.gid) == ("reg", len(BIG), 0o600, 1000, 1000)
    assert big.xattrs == {"user.k": b"\x00\xffv"}
    assert big.mod_time == "2020-09-13T12:26:40Z" and big.mtime == 1_600_000_000
    assert big.num_link == 2  # data/big and data/hard
    assert toc.get("data").name == "data/" and toc.get("data").type == "dir"
    assert toc.get("data/hard").link_name == "data/big"
    assert toc.get("data/link").type == "symlink" and toc.get("data/link").link_name == "../etc/passwd"
    assert toc.get("data/fifo").type == "fifo"
    null = toc.get("data/null")
    assert (null.type, null.dev_major, null.dev_minor) == ("char", 1, 3)
    assert toc.get("data/.wh.gone").type == "reg"
    assert toc.entries[0].name == esgz.NO_PREFETCH_LANDMARK
    assert esgz.TOC_NAME not in {e.path for e in toc.entries}


def test_flipped_byte_in_a_chunk_yields_no_bytes() -> None:
    blob, _ = _convert(_layer())
    toc, _, _ = _read(blob)
    chunk = toc.chunks("data/big")[2]
    start, end = toc.span(chunk)
    for where in (start + 20, (start + end) // 2, end - 30):
        raw = bytearray(blob[start:end])
        raw[where - start] ^= 0x40
        with pytest.raises(ChunkDigestMismatch) as e:
            esgz.decompress_chunk(bytes(raw), chunk)
        assert e.value.name == "data/big" and e.value.chunk_offset == 2 * CHUNK
    with pytest.raises(ChunkDigestMismatch):
        esgz.decompress_chunk(blob[start:end], toc.chunks("data/big")[3])  # another chunk's bytes


def test_plain_gzip_readers_see_the_input_tar(tmp_path) -> None:
    tar = _layer()
    blob, _ = _convert(tar)
    listing = subprocess.run("gzip -dc | tar -t", shell=True, input=blob, capture_output=True, check=True)
    names = listing.stdout.decode().split()
    assert names[-1] == esgz.TOC_NAME and names[0] == esgz.NO_PREFETCH_LANDMARK
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as plain:
        assert plain.extractfile("data/big").read() == BIG
        assert plain.getmember("data/big").pax_headers["SCHILY.xattr.user.k"] is not None
        assert json.loads(plain.extractfile(esgz.TOC_NAME).read())["version"] == 1
    for name, data in (("orig", tar), ("esgz", gzip.decompress(blob))):
        os.mkdir(tmp_path / name)
        apply_layer(str(tmp_path / name), io.BytesIO(data))
    got = without_root_and_times_of(snapshot(str(tmp_path / "esgz")))
    want = without_root_and_times_of(snapshot(str(tmp_path / "orig")))
    assert {k: v for k, v in got.items() if k not in EXTRA} == want
    assert set(got) - set(want) == {esgz.TOC_NAME, esgz.NO_PREFETCH_LANDMARK}


def test_prioritized_files_come_first_then_the_landmark() -> None:
    blob, layer = _convert(_layer(), prioritized=["data/hard", "etc/passwd"])
    toc, digest, _ = _read(blob)
    assert digest == layer.toc_digest
    assert toc.prefetch_names() == ["data", "data/big", "data/hard", "etc", "etc/passwd"]
    order = [e.path for e in toc.entries if e.type != "chunk"]
    assert order.index(esgz.PREFETCH_LANDMARK) == 5
    assert sorted(order[6:]) == sorted(["data/exact", "data/empty", "data/link", "data/fifo", "data/null",
                                        "data/.wh.gone"])
    assert b"".join(esgz.decompress_chunk(blob[slice(*toc.span(c))], c) for c in toc.chunks("data/big")) == BIG
    no_prefetch, _, _ = _read(_convert(_layer())[0])
    assert no_prefetch.prefetch_names() == []
    with pytest.raises(EstargzError, match="'nope' is not in the layer"):
        _convert(_layer(), prioritized=["nope"])
    implicit, _ = _convert(build_tar([member("a/b/f", data=b"x"), member("g", data=b"y")]), prioritized=["a/b/f"])
    assert _read(implicit)[0].prefetch_names() == ["a/b/f"]  # no directory entries to pull in


def test_converting_twice_keeps_one_toc_and_one_landmark() -> None:
    blob, _ = _convert(_layer())
    again, layer = _convert(gzip.decompress(blob))
    toc, digest, _ = _read(again)
    assert digest == layer.toc_digest
    names = [e.path for e in toc.entries if e.type != "chunk"]
    assert names.count(esgz.NO_PREFETCH_LANDMARK) == 1 and esgz.TOC_NAME not in names
    with tarfile.open(fileobj=io.BytesIO(again), mode="r:gz") as plain:
        assert plain.getnames().count(esgz.TOC_NAME) == 1


def test_toc_json_round_trips_and_bad_json_names_the_field() -> None:
    blob, _ = _convert(_layer())
    toc, _, _ = _read(blob)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as plain:
        raw = plain.extractfile(esgz.TOC_NAME).read()
    assert toc.to_json() == raw
    again = esgz.Toc.from_json(toc.to_json(), toc_offset=toc.toc_offset)
    assert again.entries == toc.entries
    last = json.loads(raw)["entries"]
    assert [e.get("chunkSize", 0) for e in last if e["name"] == "data/big"] == [CHUNK] * 5 + [0]
    for doc, field in (
        (b"{", "JSON"),
        (b"[]", "object"),
        (b'{"version": 2, "entries": []}', "'version'"),
        (b'{"version": 1, "entries": {}}', "'entries'"),
        (b'{"version": 1, "entries": [{"name": "a", "type": "reg", "size": "1"}]}', "'size'"),
        (b'{"version": 1, "entries": [{"name": "a", "type": "sock"}]}', "'type'"),
        (b'{"version": 1, "entries": [{"name": "a", "type": "dir", "mode": true}]}', "'mode'"),
        (b'{"version": 1, "entries": [{"name": "a", "type": "dir", "modtime": "today"}]}', "'modtime'"),
        (b'{"version": 1, "entries": [{"name": "a", "type": "dir", "xattrs": {"k": "!"}}]}', "'xattrs'"),
        (b'{"version": 1, "entries": [{"type": "dir"}]}', "'name'"),
        (b'{"version": 1, "entries": [{"type": "chunk", "offset": 5}]}', "chunk"),
        (b'{"version": 1, "entries": [{"name": "h", "type": "hardlink", "linkName": "x"}]}', "links to"),
    ):
        with pytest.raises(EstargzError, match=field):
            esgz.Toc.from_json(doc)


def test_footers_and_blobs_that_are_not_estargz_are_refused() -> None:
    blob, _ = _convert(_layer())
    foot = blob[-esgz.FOOTER_SIZE:]
    assert gzip.decompress(foot) == b""
    for bad in (foot[:-1], b"\0" + foot[1:], foot[:16] + b"zz" + foot[18:], foot[:32] + b"STARGY" + foot[38:]):
        with pytest.raises(EstargzError):
            esgz.parse_footer(bad)
    plain = gzip.compress(_layer())
    with pytest.raises(EstargzError):
        esgz.read_toc(lambda s, e: plain[s:e], len(plain))
    with pytest.raises(EstargzError, match="too small"):
        esgz.read_toc(lambda s, e: b"", 10)
    past = blob[:-esgz.FOOTER_SIZE] + esgz.footer(len(blob))
    with pytest.raises(EstargzError, match="past the blob"):
        esgz.read_toc(lambda s, e: past[s:e], len(past))
    short = blob[:-esgz.FOOTER_SIZE]
    with pytest.raises(EstargzError, match="gave"):
        esgz.read_toc(lambda s, e: short[s:e], len(blob))
