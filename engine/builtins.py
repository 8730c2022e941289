"""The one place built-in job handlers are installed: each module here has `register(engine)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import api
from .containers import jobs as containerjobs
from .images import jobs as images
from .registry import jobs as registryjobs

if TYPE_CHECKING:
    from .engine import Engine

MODULES = [images, containerjobs, registryjobs, api]


def install(engine: Engine) -> None:
    for module in MODULES:
        module.register(engine)
