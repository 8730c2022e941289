"""The FUSE structs strata-aufs packs have the kernel's sizes (include/uapi/linux/fuse.h):
a wrong size is a protocol error the kernel answers by failing the mount or the request."""

from __future__ import annotations

from graphdrivers.aufs.unionfs import abi


def test_struct_sizes_match_the_kernel() -> None:
    sizes = {
        abi.IN_HEADER: 40,
        abi.OUT_HEADER: 16,
        abi.INIT_OUT: 64,
        abi.ATTR: 88,
        abi.ENTRY_OUT_WITH_ATTR: 128,
        abi.ATTR_OUT: 16,
        abi.SETATTR_IN: 88,
        abi.OPEN_OUT: 16,
        abi.READ_IN: 40,
        abi.RELEASE_IN: 24,
        abi.STATFS_OUT: 80,
        abi.FALLOCATE_IN: 32,
        abi.LSEEK_IN: 24,
        abi.BACKING_MAP: 16,
    }
    wrong = {s.format: (s.size, size) for s, size in sizes.items() if s.size != size}
    assert wrong == {}
    assert abi.DEV_IOC_BACKING_OPEN == (1 << 30) | (abi.BACKING_MAP.size << 16) | (229 << 8) | 1


def test_dirents_are_padded_to_8_bytes() -> None:
    for name in (b"a", b"abcdefgh", b"abcdefghi"):
        packed = abi.dirent(7, 3, name, 0o100644)
        assert len(packed) % 8 == 0
        ino, off, namelen, kind = abi.DIRENT.unpack_from(packed)
        assert (ino, off, namelen, kind) == (7, 3, len(name), 8)  # DT_REG
        assert packed[abi.DIRENT.size : abi.DIRENT.size + namelen] == name
