"""A union filesystem with aufs semantics, served over FUSE.

`tree` holds the branch index and every aufs rule (lookup, whiteouts, opaque
directories, copy-up, rename); `ops` answers the kernel's FUSE operations with it and
decides how file data moves (passthrough or served). Two servers adapt those operations
to the kernel: `session` speaks the protocol (`abi`) on /dev/fuse itself (the only one
that can pass file data through), `pyfuse3_server` goes through pyfuse3 and libfuse 3.
`graphdrivers.aufs.fuse_main` runs one mount per process with either.
"""
