"""Lazy layers: a layer whose files arrive from a registry when they are first read.

Shared by the drivers that can serve a layer before its data is local (today the aufs
driver's FUSE union). `source` says where the blob is and fetches byte ranges of it;
`layer` keeps a lazy layer's state directory (TOC, which chunks have arrived, the local
copy of the blob) and fetches, verifies and stores files on demand, in the background
and, at the end, checks the whole blob against its digest and diff id.
"""
