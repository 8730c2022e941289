"""The networkdriver: `none`, `host` and bridge networks for containers.

`service.Networks` is the engine's network service (networks, membership, the container
hooks, repair); `state` persists networks and address allocations; `links` makes bridges
and veths through netlink; `netns` holds namespaces in files; `nat` renders published
ports and NAT as one nftables table; `ports` parses `-p`; `jobs` declares the `network ...` and
`port` jobs. A container's /etc files are written by the container store
(`containers.etcfiles`) from what `Networks.host_entries` reports.
"""
