"""A union filesystem with aufs semantics, served over FUSE with pyfuse3.

`tree` holds the branch index and every aufs rule (lookup, whiteouts, opaque
directories, copy-up, rename); `ops` adapts it to pyfuse3's low-level operations;
`graphdrivers.aufs.fuse_main` runs one mount per process.
"""
