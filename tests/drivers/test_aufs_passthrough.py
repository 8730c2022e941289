"""How file data moves through the FUSE union: passed through by the kernel to the branch
files (FUSE passthrough), or served by the mount's own process -- observed from that
process's I/O counters, and checked against aufs' rule that a copy-up leaves files opened
before it on the lower version."""

from __future__ import annotations

import mmap
import os

from graphdrivers import mountutil
from graphdrivers.aufs.driver import AufsDriver

from .aufs_support import aufs, branch, put_file  # noqa: F401  (aufs is a fixture)

SIZE = 8 << 20


def _io(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def test_file_data_bypasses_the_fuse_process_only_with_passthrough(aufs: AufsDriver) -> None:  # noqa: F811
    passthrough = aufs.backend.passthrough
    data = os.urandom(SIZE)
    aufs.create("base")
    put_file(branch(aufs, "base", "blob"), data)
    aufs.create_read_write("ctr", "base")
    mnt = aufs.get("ctr")
    try:
        proc = aufs.backend.process(mnt)
        assert proc is not None
        before = _io(proc.pid)
        with open(f"{mnt}/blob", "rb") as f:
            assert f.read() == data
        with open(f"{mnt}/copy", "wb") as f:
            f.write(data)
        after = _io(proc.pid)
        with open(branch(aufs, "ctr", "copy"), "rb") as f:
            assert f.read() == data
    finally:
        aufs.put("ctr")
    read, written = after["rchar"] - before["rchar"], after["wchar"] - before["wchar"]
    if passthrough:
        assert read < SIZE // 8 and written < SIZE // 8, (read, written)
        assert aufs.backend_description() == "fuse (direct, passthrough)"
    else:
        assert read >= SIZE and written >= SIZE, (read, written)
        assert aufs.backend_description() == f"fuse ({aufs.backend.server}, served)"


def test_copy_up_leaves_earlier_opens_on_the_lower_file(aufs: AufsDriver) -> None:  # noqa: F811
    aufs.create("base")
    lower = branch(aufs, "base", "f")
    put_file(lower, b"lower data\n")
    aufs.create_read_write("ctr", "base")
    mnt = aufs.get("ctr")
    try:
        with open(f"{mnt}/f", "rb") as before:
            assert before.read(6) == b"lower "
            with open(f"{mnt}/f", "ab") as writer:  # the first write open copies the file up
                writer.write(b"appended\n")
            with open(f"{mnt}/f", "rb") as after:
                assert after.read() == b"lower data\nappended\n"
                with mmap.mmap(after.fileno(), 0, prot=mmap.PROT_READ) as m:
                    assert m[:] == b"lower data\nappended\n"
            assert before.read() == b"data\n"  # as in aufs: an open file keeps its branch
        with open(f"{mnt}/f", "r+b") as f:  # every earlier open closed: a fresh start
            f.seek(0)
            f.write(b"L")
            with mmap.mmap(f.fileno(), 0) as m:
                m[1:2] = b"O"
        with open(f"{mnt}/f", "rb") as f:
            assert f.read() == b"LOwer data\nappended\n"
    finally:
        aufs.put("ctr")
    with open(lower, "rb") as f:
        assert f.read() == b"lower data\n"
    with open(branch(aufs, "ctr", "f"), "rb") as f:
        assert f.read() == b"LOwer data\nappended\n"


def test_status_says_how_data_moves_before_any_mount(aufs: AufsDriver) -> None:  # noqa: F811
    """A fresh driver probes the kernel with an empty union, and leaves nothing behind."""
    backend = dict(aufs.status())["Backend"]
    server = aufs.backend.server
    assert backend == f"fuse ({server}, {'passthrough' if aufs.backend.passthrough else 'served'})"
    mnt = os.path.join(aufs.home, "mnt")
    assert os.listdir(mnt) == []
    assert mountutil.mounts_under(mnt) == []
