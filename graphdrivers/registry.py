"""Driver registration and selection, in the order Docker's engine (moby 20.10) uses.

Automatic selection tries, in priority order: btrfs (only when the root is on btrfs, which
the driver itself checks), overlay2, kernel aufs, dm-thin devmapper, vfs. strata's own
stand-ins for missing kernel features (aufs's FUSE union, devmapper's reflink pool) are
used when named or when the root already holds their layers, never picked by default: a
registration's `auto_options` pin the kernel backend for automatic selection.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .driver import Driver
from .errors import AmbiguousPriorStorage, DriverError, DriverNotSupported

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/var/lib/strata"

Factory = Callable[[str, Mapping[str, str]], Driver]


@dataclass(frozen=True)
class Registration:
    """A registered driver.

    `backing_fs` is the filesystem the driver wants under its root (tests and the bench
    give it a loop-mounted one of that kind); `factory(home, options)` builds the driver
    and raises `DriverNotSupported` when its prerequisites fail.
    """

    name: str
    factory: Factory
    priority: int
    backing_fs: str
    auto_options: Mapping[str, str] = field(default_factory=dict)


_registry: dict[str, Registration] = {}


def register(name: str, factory: Factory, priority: int, *, backing_fs: str = "ext4",
             auto_options: Mapping[str, str] | None = None) -> None:
    """`auto_options`: what automatic selection adds to the options (the kernel backend only)."""
    if name in _registry:
        raise DriverError(f"driver {name!r} is registered twice")
    _registry[name] = Registration(name, factory, priority, backing_fs, dict(auto_options or {}))


def registered() -> list[str]:
    """Names in priority order (the order automatic selection tries them)."""
    return [r.name for r in sorted(_registry.values(), key=lambda r: (r.priority, r.name))]


def registration(name: str) -> Registration:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(registered())
        raise DriverNotSupported(name, f"no such driver (known: {known})") from None


def _prior_storage(root: str) -> list[str]:
    found = []
    for name in registered():
        path = os.path.join(root, name)
        try:
            if os.path.isdir(path) and os.listdir(path):
                found.append(name)
        except OSError:
            continue
    return found


def get_driver(name: str | None = None, root: str = DEFAULT_ROOT, options: Mapping[str, str] | None = None) -> Driver:
    """Select and build a driver: explicit name, $DOCKER_DRIVER, prior storage, priority."""
    options = dict(options or {})
    chosen = name or os.environ.get("DOCKER_DRIVER") or None
    if chosen:
        return _build(chosen, root, options)
    prior = _prior_storage(root)
    if len(prior) > 1:
        raise AmbiguousPriorStorage(
            f"{root} holds layers of several drivers ({', '.join(prior)}); "
            "choose one with --driver or DOCKER_DRIVER"
        )
    if prior:
        log.info("using driver %s: %s holds its layers", prior[0], root)
        return _build(prior[0], root, options)
    reasons = []
    for candidate in registered():
        try:
            return _build(candidate, root, {**registration(candidate).auto_options, **options})
        except DriverNotSupported as exc:
            log.debug("driver %s cannot run here: %s", candidate, exc.reason)
            reasons.append(f"{candidate}: {exc.reason}")
    raise DriverNotSupported("any", "no driver can run here: " + "; ".join(reasons))


def _build(name: str, root: str, options: Mapping[str, str]) -> Driver:
    reg = registration(name)
    home = os.path.join(root, name)
    return reg.factory(home, options)
