"""The one table of the engine's job modules; each declares its jobs in a `jobs` JobTable.

Both the Engine (to run jobs) and the CLI (to build subcommands before any engine
exists) read the declarations from here, so a job added to a module is everywhere at once.
"""

from __future__ import annotations

from . import api
from .containers import exec_jobs, lifecycle, observe
from .containers import jobs as containers
from .containers import volumejobs as volumes
from .images import jobs as images
from .jobspec import JobSpec
from .network import jobs as network
from .registry import jobs as registry
from .system import events
from .system import info as system

MODULES = (images, containers, exec_jobs, lifecycle, observe, volumes, network, registry, system, events, api)


def specs() -> dict[str, JobSpec]:
    """Every built-in job by name."""
    return {spec.name: spec for module in MODULES for spec in module.jobs}
