"""Layers a scenario made, so they can be released and removed after each repetition,
after a failure, or on Ctrl-C -- a benchmark must never leave a layer mounted."""

from __future__ import annotations

import itertools
from types import TracebackType

import graphdrivers

_serial = itertools.count()


class Layers:
    def __init__(self, driver: graphdrivers.Driver, prefix: str) -> None:
        self.driver = driver
        self.prefix = prefix
        self.created: list[str] = []
        self.mounted: list[str] = []

    def new_id(self, label: str) -> str:
        return f"{self.prefix}-{label}-{next(_serial)}"

    def created_layer(self, layer_id: str) -> None:
        self.created.append(layer_id)

    def got(self, layer_id: str) -> None:
        self.mounted.append(layer_id)

    def put(self, layer_id: str) -> None:
        self.driver.put(layer_id)
        self.mounted.remove(layer_id)

    def removed(self, layer_id: str) -> None:
        self.created.remove(layer_id)

    def container(self, top: str) -> str:
        """A fresh container layer over image layer `top`, mounted; the path `get` returned."""
        cid = self.new_id("c")
        self.driver.create_read_write(cid, top)
        self.created_layer(cid)
        path = self.driver.get(cid)
        self.got(cid)
        return path

    def release(self) -> None:
        """Put every outstanding get and remove every layer, newest first."""
        errors = []
        while self.mounted:
            layer_id = self.mounted.pop()
            try:
                self.driver.put(layer_id)
            except Exception as exc:
                errors.append(f"put {layer_id}: {exc}")
        while self.created:
            layer_id = self.created.pop()
            try:
                self.driver.remove(layer_id)
            except Exception as exc:
                errors.append(f"remove {layer_id}: {exc}")
        if errors:
            raise graphdrivers.errors.DriverError("could not release benchmark layers: " + "; ".join(errors))

    def __enter__(self) -> Layers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release; a release error is raised only when nothing else is already propagating
        (it must never mask a failure or a Ctrl-C), otherwise it is attached as a note."""
        try:
            self.release()
        except graphdrivers.errors.DriverError as err:
            if exc is None:
                raise
            exc.add_note(str(err))
