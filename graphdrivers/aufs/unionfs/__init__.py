"""A union filesystem with aufs semantics, served over FUSE.

`tree` holds the branch index and every aufs rule (lookup, whiteouts, opaque
directories, copy-up, rename); `ops` answers the kernel's FUSE operations with it and
decides how file data moves (passthrough or served); `session` speaks the kernel
protocol (`abi`) on /dev/fuse; `graphdrivers.aufs.fuse_main` runs one mount per process.
"""
