"""The registry tests' loopback registry: Debian's docker-registry, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.registry_server import RegistryServer


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(str(tmp_path_factory.mktemp("registry"))) as server:
        yield server
