"""The aufs driver: layout, backends, crash recovery, native diff, and a real program
(busybox) running in a union rootfs, compared with overlay2 doing the same work."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import signal
import subprocess
import tarfile

import pytest

import graphdrivers
from graphdrivers import Change, Driver, mountutil
from graphdrivers.aufs import kernel_backend
from graphdrivers.aufs.driver import AufsDriver
from graphdrivers.errors import ChainTooDeep, DriverNotSupported, InvalidOption

from ..conformance.treeutil import mounted, tree
from .aufs_support import aufs, branch, make_root, put_file  # noqa: F401  (aufs is a fixture)

NO_AUFS = "the kernel has no aufs (not in /proc/filesystems)"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_layout_status_and_metadata(aufs: AufsDriver) -> None:  # noqa: F811
    aufs.create("a")
    aufs.create("b", "a")
    aufs.create_read_write("c", "b")
    assert _read(os.path.join(aufs.home, "layers", "c")) == b"b\na\n"  # nearest first
    assert _read(os.path.join(aufs.home, "layers", "a")) == b""
    assert all(os.path.isdir(os.path.join(aufs.home, sub, "c")) for sub in ("diff", "mnt"))
    rows = dict(aufs.status())
    assert rows["Backend"].startswith("fuse") and rows["Backing Filesystem"] == "ext4"
    assert rows["Depth Limit"] and rows["Dirs"] == "3"
    meta = aufs.metadata("c")
    assert meta["Backend"] == "fuse" and meta["Parent"] == "b" and meta["Depth"] == "3"
    with pytest.raises(InvalidOption):
        graphdrivers.get_driver("aufs", root=os.path.dirname(aufs.home), options={"aufs.backend": "nfs"})


def test_removal_renames_first_and_startup_clears_leftovers(aufs: AufsDriver) -> None:  # noqa: F811
    aufs.create("x")
    for sub in ("diff", "layers", "mnt"):
        os.rename(os.path.join(aufs.home, sub, "x"), os.path.join(aufs.home, sub, "x-removing"))  # a crash mid-remove
    again = graphdrivers.get_driver("aufs", root=os.path.dirname(aufs.home))
    try:
        assert not again.exists("x")
        assert all(os.listdir(os.path.join(aufs.home, sub)) == [] for sub in ("diff", "layers", "mnt"))
    finally:
        again.cleanup()


def test_a_chain_deeper_than_the_backend_allows_is_refused(aufs: AufsDriver) -> None:  # noqa: F811
    aufs.max_depth = 2  # kernel aufs' limit is 127; the FUSE backend has none
    aufs.create("one")
    aufs.create("two", "one")
    with pytest.raises(ChainTooDeep, match="exceeds the 2 branches"):
        aufs.create("three", "two")
    assert not aufs.exists("three") and sorted(os.listdir(os.path.join(aufs.home, "diff"))) == ["one", "two"]


def _kill_mount_process(driver: AufsDriver, layer: str) -> None:
    proc = driver.backend.process(os.path.join(driver.home, "mnt", layer))  # type: ignore[union-attr]
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10)
    with pytest.raises(OSError) as info:
        os.listdir(os.path.join(driver.home, "mnt", layer))
    assert info.value.errno == errno.ENOTCONN


def test_sigkill_of_the_fuse_process_is_recovered(aufs: AufsDriver) -> None:  # noqa: F811
    aufs.create("base")
    put_file(branch(aufs, "base", "f"), b"data")
    aufs.create_read_write("ctr", "base")
    mnt = aufs.get("ctr")
    _kill_mount_process(aufs, "ctr")
    assert dict(aufs.status())["Stale Mounts"] == "1"
    aufs.put("ctr")  # succeeds, and nothing stays mounted
    assert not mountutil.is_mountpoint(mnt)
    assert _read(os.path.join(aufs.get("ctr"), "f")) == b"data"  # mounts again
    aufs.put("ctr")
    aufs.get("ctr")
    _kill_mount_process(aufs, "ctr")
    aufs.get("base")
    _kill_mount_process(aufs, "base")
    # startup of a new instance detaches the dead mounts
    again = graphdrivers.get_driver("aufs", root=os.path.dirname(aufs.home), options={"aufs.backend": "fuse"})
    try:
        assert mountutil.mounts_under(os.path.join(aufs.home, "mnt")) == []
        again.remove("ctr")
        assert not again.exists("ctr") and again.exists("base")
    finally:
        again.cleanup()
    aufs.cleanup()  # the first instance still holds references to dead mounts: fine too
    assert mountutil.mounts_under(aufs.home) == []


def test_kernel_backend_is_refused_without_kernel_aufs(make_backing) -> None:
    root = make_root(make_backing, 64 << 20)
    if kernel_backend.available():
        d = graphdrivers.get_driver("aufs", root=root, options={"aufs.backend": "kernel"})
        d.cleanup()
        return
    with pytest.raises(DriverNotSupported, match="the kernel has no aufs"):
        graphdrivers.get_driver("aufs", root=root, options={"aufs.backend": "kernel"})


def test_fuse_server_options_are_honoured_or_refused(make_backing) -> None:
    """pyfuse3 serves file data itself: asking it for passthrough is refused, not ignored."""
    root = make_root(make_backing, 64 << 20)
    with pytest.raises(InvalidOption, match=r"aufs\.fuse_passthrough=true needs aufs\.fuse_server=direct"):
        graphdrivers.get_driver(
            "aufs", root=root, options={"aufs.fuse_server": "pyfuse3", "aufs.fuse_passthrough": "true"}
        )
    with pytest.raises(InvalidOption, match=r"aufs\.fuse_server"):
        graphdrivers.get_driver("aufs", root=root, options={"aufs.fuse_server": "libfuse2"})
    for key, value in (("aufs.fuse_passthrough", "false"), ("aufs.fuse_server", "direct")):
        with pytest.raises(InvalidOption, match=rf"{key} applies to the FUSE backend, not to kernel aufs"):
            graphdrivers.get_driver("aufs", root=root, options={"aufs.backend": "kernel", key: value})
    d = graphdrivers.get_driver("aufs", root=root, options={"aufs.backend": "fuse", "aufs.fuse_server": "pyfuse3"})
    try:
        assert isinstance(d, AufsDriver) and not d.backend.passthrough  # type: ignore[attr-defined]
        assert dict(d.status())["Backend"] == "fuse (pyfuse3, served)"
    finally:
        d.cleanup()


@pytest.mark.skipif(not kernel_backend.available(), reason=NO_AUFS)
def test_kernel_backend_stacks_branches(make_backing) -> None:
    d = graphdrivers.get_driver("aufs", root=make_root(make_backing), options={"aufs.backend": "kernel"})
    try:
        parent = None
        for i in range(40):  # more branches than fit in one page of mount options: remounts append
            d.create(f"k{i}", parent)
            put_file(branch(d, f"k{i}", "files", str(i)), str(i).encode())  # type: ignore[arg-type]
            parent = f"k{i}"
        put_file(branch(d, "k0", "gone"), b"x")  # type: ignore[arg-type]
        put_file(branch(d, "k1", ".wh.gone"))  # type: ignore[arg-type]
        path = d.get(parent)
        try:
            assert sorted(os.listdir(os.path.join(path, "files")), key=int) == [str(i) for i in range(40)]
            assert not os.path.exists(os.path.join(path, "gone"))
            assert ("Backend", "kernel (aufs)") in d.status()
        finally:
            d.put(parent)
    finally:
        d.cleanup()


# -- a real program in a union rootfs --------------------------------------------------

APPLETS = ("sh", "echo", "cat", "mv", "rm", "ln", "chmod", "chown", "mkdir", "ls", "touch", "cp")

SCRIPT = """
set -e
echo created > /new
echo appended >> /etc/hostname
mv /etc/data/keep /etc/data/kept
rm /etc/data/gone
ln /new /new-link
ln /etc/passwd /etc/passwd-link
chmod 600 /etc/passwd
mkdir -p /a/b/c
echo deep > /a/b/c/file
rm -rf /var/lib/old
mkdir -p /var/lib/old
echo fresh > /var/lib/old/file2
mv /opt/tool /opt/tool2
cat /etc/hostname /a/b/c/file
"""

EXPECTED_CHANGES = [
    "A /a",
    "A /a/b",
    "A /a/b/c",
    "A /a/b/c/file",
    "C /etc",
    "C /etc/data",
    "D /etc/data/gone",
    "D /etc/data/keep",
    "A /etc/data/kept",
    "C /etc/hostname",
    "C /etc/passwd",
    "A /etc/passwd-link",
    "A /new",
    "A /new-link",
    "C /opt",
    "D /opt/tool",
    "A /opt/tool2",
    "A /opt/tool2/bin",
    "C /var",
    "C /var/lib",
    "C /var/lib/old",
    "D /var/lib/old/file",
    "A /var/lib/old/file2",
]


def _busybox_layer(root: str) -> None:
    os.makedirs(f"{root}/bin")
    shutil.copy2("/bin/busybox", f"{root}/bin/busybox")
    for applet in APPLETS:
        os.symlink("busybox", f"{root}/bin/{applet}")
    put_file(f"{root}/etc/hostname", b"strata\n")
    put_file(f"{root}/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    put_file(f"{root}/etc/data/keep", b"keep")
    put_file(f"{root}/etc/data/gone", b"gone")
    put_file(f"{root}/var/lib/old/file", b"old")
    put_file(f"{root}/opt/tool/bin", b"#!/bin/sh\n", 0o755)


def _run_script(driver: Driver, base_tar: bytes, script: str) -> tuple[list[Change], dict[str, tuple], dict]:
    """Apply the busybox layer, run `script` in a container layer over it; its output,
    changes, diff and final tree."""
    driver.create("busybox")
    driver.apply_diff("busybox", None, io.BytesIO(base_tar))
    driver.create_read_write("ctr", "busybox")
    path = driver.get("ctr")
    try:
        out = subprocess.run(["chroot", path, "/bin/sh", "-c", script], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        final = tree(path)
    finally:
        driver.put("ctr")
    with contextlib.closing(driver.diff("ctr", "busybox")) as stream:
        return driver.changes("ctr", "busybox"), _tar_summary(stream.read()), {"stdout": out.stdout, "tree": final}


def _tar_summary(data: bytes) -> dict[str, tuple]:
    """name -> what a layer tar entry carries, minus times (and whiteouts' modes: markers)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            name = m.name.rstrip("/")
            if os.path.basename(name).startswith(".wh."):
                out[name] = ("whiteout",)
                continue
            digest = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isfile() else ""  # type: ignore[union-attr]
            out[name] = (m.type, m.mode, m.uid, m.gid, m.size, m.linkname, digest)
    return out


def _busybox_tar(tmp_path) -> bytes:
    src = tmp_path / "busybox-rootfs"
    src.mkdir()
    _busybox_layer(str(src))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(src)):
            tar.add(src / name, arcname=name)
    return buf.getvalue()


def test_busybox_script_in_a_union_rootfs(aufs: AufsDriver, make_backing, tmp_path) -> None:  # noqa: F811
    base_tar = _busybox_tar(tmp_path)
    changes, diff, seen = _run_script(aufs, base_tar, SCRIPT)
    assert seen["stdout"] == "strata\nappended\ndeep\n"
    assert [str(c) for c in changes] == EXPECTED_CHANGES
    assert changes == Driver.changes(aufs, "ctr", "busybox"), "native changes differ from the generic comparison"
    assert {n for n, v in diff.items() if v == ("whiteout",)} == {
        "etc/data/.wh.gone",
        "etc/data/.wh.keep",
        "opt/.wh.tool",
        "var/lib/old/.wh..wh..opq",
    }
    up = branch(aufs, "ctr")
    assert os.lstat(f"{up}/new").st_ino == os.lstat(f"{up}/new-link").st_ino
    assert os.lstat(f"{up}/etc/passwd").st_mode & 0o777 == 0o600
    _same_as_overlay2(make_backing, base_tar, SCRIPT, changes, diff, seen)


TRICKY_SCRIPT = """
set -e
mkdir /x; echo 1 > /x/f; mv /x /y; ls /y
mv /etc/data /etc/data2
mkdir -p /q/r; echo z > /q/r/z; mv /q /etc/data2/q
rm -rf /etc/data2/q/r; mkdir /etc/data2/q/r
echo x >> /var/lib/old/file; mv /var/lib/old/file /var/f
chmod 751 /var; chown 1:2 /var/f
cp -a /bin/busybox /bb2
: > /opt/tool/bin
ln -s /etc/hostname /sl; cat /sl
mkdir /d; touch /d/a; rm -rf /d
rm /etc/passwd; mkdir /etc/passwd; echo in > /etc/passwd/in
rm -rf /etc; mkdir /etc; echo new > /etc/hostname
mv /etc/hostname /etc/hn; ln /etc/hn /etc/hn2; rm /etc/hn
rm /bin/ls; ln -s busybox /bin/ls
"""


def test_renames_recreations_and_links_agree_with_the_generic_diff(aufs: AufsDriver, make_backing, tmp_path) -> None:  # noqa: F811
    base_tar = _busybox_tar(tmp_path)
    changes, diff, seen = _run_script(aufs, base_tar, TRICKY_SCRIPT)
    assert seen["stdout"] == "f\nstrata\n"
    assert changes == Driver.changes(aufs, "ctr", "busybox")
    assert sorted(os.listdir(os.path.join(aufs.get("ctr"), "etc"))) == ["hn2"]
    aufs.put("ctr")
    _same_as_overlay2(make_backing, base_tar, TRICKY_SCRIPT, changes, diff, seen)


def _same_as_overlay2(make_backing, base_tar: bytes, script: str, changes, diff, seen) -> None:
    """The same script over the same layers on overlay2: same tree, changes and diff entries."""
    if "overlay2" not in graphdrivers.registered():
        return
    overlay = graphdrivers.get_driver("overlay2", root=make_root(make_backing))
    try:
        o_changes, o_diff, o_seen = _run_script(overlay, base_tar, script)
    finally:
        overlay.cleanup()
    assert o_seen == seen
    assert o_changes == changes
    # whiteouts may differ in form (overlay also marks some new directories opaque)
    assert {n: v for n, v in o_diff.items() if v != ("whiteout",)} == {
        n: v for n, v in diff.items() if v != ("whiteout",)
    }


def test_a_mount_that_cannot_start_is_a_clear_error(aufs: AufsDriver) -> None:  # noqa: F811
    aufs.create("lost")
    os.rmdir(os.path.join(aufs.home, "mnt", "lost"))  # nowhere to mount
    with pytest.raises(graphdrivers.errors.DriverError, match=r"did not start.*lost"):
        aufs.get("lost")
    assert aufs.refcount("lost") == 0
    os.mkdir(os.path.join(aufs.home, "mnt", "lost"))
    with mounted(aufs, "lost") as path:  # the same zygote mounts the next one
        assert os.listdir(path) == []


def test_apply_diff_to_a_mounted_layer_goes_through_the_union(aufs: AufsDriver) -> None:  # noqa: F811
    aufs.create("low")
    put_file(branch(aufs, "low", "old"), b"old")
    aufs.create_read_write("up", "low")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("new", b"new"), (".wh.old", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    with mounted(aufs, "up") as path:
        assert os.listdir(path) == ["old"]  # the union has indexed the directory
        assert aufs.apply_diff("up", "low", buf) == 3
        assert os.listdir(path) == ["new"]  # and sees the applied changes at once
    assert sorted(os.listdir(branch(aufs, "up"))) == [".wh.old", "new"]
    assert [str(c) for c in aufs.changes("up", "low")] == ["A /new", "D /old"]
