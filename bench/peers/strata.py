"""strata's own Engine, driven like a peer for the steps a peer is measured on.

The steps a peer's CLI does that no strata scenario measures otherwise (load the workload
archive, pull, create) are measured for strata through its Engine and jobs, in process, on
an engine root beside the driver's sandbox root (same backing filesystem, same driver and
options): the same step on the same data, though a peer's row also holds its CLI client's
start and the API round trip, which an in-process row does not (README "Peers and floors")."""

from __future__ import annotations

import logging
import shutil
import time

from engine.engine import Engine

from ..results import STRATA

log = logging.getLogger(__name__)


class StrataEngine:
    system = STRATA

    def __init__(self, driver: str, root: str, options: dict[str, str]) -> None:
        self.root = root
        self.engine = Engine(root, driver, options)

    def _job(self, name: str, *args: str, **options: object) -> tuple[float, str]:
        job = self.engine.job(name, *args, options=options)
        t0 = time.perf_counter()
        job.run(check=True)
        t1 = time.perf_counter()
        return t1 - t0, job.output().decode().strip()

    def load(self, archive: str) -> float:
        return self._job("load", archive)[0]

    def pull(self, reference: str) -> float:
        return self._job("pull", reference)[0]

    def rmi(self, image: str) -> None:
        self._job("rmi", image, force=True)

    def create(self, image: str, *cmd: str) -> tuple[float, str]:
        seconds, out = self._job("create", image, *cmd)
        return seconds, out.splitlines()[-1]

    def rm(self, container: str) -> None:
        self._job("rm", container, force=True)

    def close(self) -> None:
        """Remove what an interrupted step left (containers), unmount, delete the root."""
        try:
            for container_id in self.engine.containers.ids():
                self.rm(container_id)
        finally:
            self.engine.close()
            shutil.rmtree(self.root, ignore_errors=True)
