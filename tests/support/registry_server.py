"""The tests' loopback registry is the bench's (one implementation): Debian's docker-registry on 127.0.0.1."""

from bench.registryserver import RegistryServer

__all__ = ["RegistryServer"]
