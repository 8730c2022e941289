"""The FUSE server answers malformed requests with an errno and logs them; it never
crashes on one (only an unmount ends it). Requests go through a seqpacket socket pair
standing in for /dev/fuse, which keeps one request per read as the device does."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterator

import pytest

from graphdrivers.aufs.unionfs import abi
from graphdrivers.aufs.unionfs.session import Session


@pytest.fixture
def wire() -> Iterator[tuple[Session, socket.socket]]:
    kernel, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    session = Session(None, "/nonexistent", passthrough=False, fsname="test")  # type: ignore[arg-type]
    session.fd = server.detach()
    yield session, kernel
    session.close()
    kernel.close()


def _request(opcode: int, unique: int, body: bytes = b"", *, length: int | None = None) -> bytes:
    size = abi.IN_HEADER.size + len(body) if length is None else length
    return abi.IN_HEADER.pack(size, opcode, unique, 1, 0, 0, 0, 0, 0) + body


def _answer(kernel: socket.socket) -> tuple[int, int]:
    _, error, unique = abi.OUT_HEADER.unpack(kernel.recv(4096)[: abi.OUT_HEADER.size])
    return unique, -error


def test_malformed_requests_get_an_errno_and_a_log_line(wire, caplog) -> None:
    session, kernel = wire
    caplog.set_level(logging.WARNING, logger="graphdrivers.aufs.unionfs.session")

    kernel.send(b"\0" * 10)  # shorter than a header: nothing to answer
    assert session._serve_one()
    kernel.send(_request(abi.GETATTR, 7, length=200))  # says 200 bytes, has 40
    assert session._serve_one() and _answer(kernel) == (7, errno.EIO)
    kernel.send(_request(abi.MKNOD, 8))  # no mknod_in at all
    assert session._serve_one() and _answer(kernel) == (8, errno.EINVAL)
    for unique in (9, 10):  # an opcode nobody implements: logged once
        kernel.send(_request(99, unique))
        assert session._serve_one() and _answer(kernel) == (unique, errno.ENOSYS)

    messages = [r.getMessage() for r in caplog.records]
    assert any("shorter than its header" in m for m in messages)
    assert any("header says 200" in m for m in messages)
    assert any("opcode 8" in m and "malformed" in m for m in messages)
    assert sum("opcode 99" in m for m in messages) == 1
