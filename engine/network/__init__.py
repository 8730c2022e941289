"""The networkdriver: `none`, `host` and bridge networks for containers.

`service.Networks` is the engine's network service (networks, membership, the container
hooks, repair); `state` persists networks and address allocations; `links` makes bridges
and veths through netlink; `netns` holds namespaces in files; `nat` renders published
ports and NAT as one nftables table; `ports` parses `-p`; `hostfiles` writes a bridged
container's /etc/hosts, /etc/resolv.conf and /etc/hostname; `jobs` declares the
`network ...` and `port` jobs.
"""
