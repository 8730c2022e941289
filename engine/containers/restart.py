"""Restart policies (`--restart`): what they mean, and the daemon's manager that applies them.

Like Docker's: `no`; `on-failure[:N]` restarts a container that exited non-zero (at most N
times); `always` restarts it whatever its status, and starts it again when the daemon
starts; `unless-stopped` is `always` except after a user's stop. A stop by a user is never
undone by the policy. Restarts back off as Docker's do: 100 ms, doubled each time, reset
once the container ran for RESET_AFTER seconds. Only a daemon (`strata daemon`) applies
policies: an engine CLI process ends with its command.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..errors import EngineError, UsageError
from ..events import Event

if TYPE_CHECKING:
    from .record import Container
    from .store import Containers

log = logging.getLogger(__name__)

POLICIES = ("no", "on-failure", "always", "unless-stopped")
FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def parse_policy(text: str) -> str:
    """A `--restart` value, checked: "" is "no"; a count only with on-failure."""
    name, sep, count = (text or "no").partition(":")
    if name not in POLICIES:
        raise UsageError(f"invalid restart policy {text!r}: use one of no, on-failure[:N], always, unless-stopped")
    if sep:
        if name != "on-failure":
            raise UsageError(f"invalid restart policy {text!r}: only on-failure takes a maximum retry count")
        if not count.isdigit():
            raise UsageError(f"invalid restart policy {text!r}: the maximum retry count must be a number")
        return f"{name}:{int(count)}"
    return name


def should_restart(c: Container) -> bool:
    """After the container's process ended: does its policy restart it?"""
    name, _, count = c.restart_policy.partition(":")
    if c.manually_stopped or name == "no":
        return False
    if name == "on-failure":
        return c.state.exit_code != 0 and (not count or c.restart_count < int(count))
    return True


class RestartManager:
    """Watches the containers that run with a policy; restarts them when they end."""

    def __init__(self, store: Containers) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._watched: set[str] = set()
        self._stopping = threading.Event()
        store.events.listen(self._on_event)

    def start(self) -> None:
        """At daemon start: start what `always` (and `unless-stopped` not stopped by a user) keeps
        running, and watch every running container that has a policy."""
        for c in self.store.list(include_stopped=True):
            name = c.restart_policy.partition(":")[0]
            if c.state.running:
                self._watch(c.id)
            elif name == "always" or (name == "unless-stopped" and not c.manually_stopped):
                self._restart(c.id, delay=0.0)

    def stop(self) -> None:
        """No more restarts (the daemon is shutting down and stops every container)."""
        self._stopping.set()

    def _on_event(self, event: Event) -> None:
        if event.type == "container" and event.action == "start":
            self._watch(event.actor)

    def _watch(self, container_id: str) -> None:
        try:
            c = self.store.get(container_id)
        except EngineError:
            return
        if c.restart_policy == "no":
            return
        with self._lock:
            if container_id in self._watched:
                return
            self._watched.add(container_id)
        threading.Thread(target=self._wait, args=(container_id,), name=f"restart-{container_id[:12]}",
                         daemon=True).start()

    def _wait(self, container_id: str) -> None:
        try:
            c = self.store.get(container_id)
            started = time.monotonic()
            self.store.wait(c)  # records the end
            c = self.store.get(container_id)
        except EngineError:
            return
        finally:
            with self._lock:
                self._watched.discard(container_id)
        if self._stopping.is_set() or not should_restart(c):
            return
        ran = time.monotonic() - started
        delay = FIRST_DELAY if ran >= RESET_AFTER else min(MAX_DELAY, FIRST_DELAY * 2 ** c.restart_count)
        self._restart(container_id, delay)

    def _restart(self, container_id: str, delay: float) -> None:
        if self._stopping.wait(delay):
            return
        try:
            c = self.store.get(container_id)
            if (c.manually_stopped and c.restart_policy.partition(":")[0] != "always") or c.state.running:
                return
            log.info("restarting container %s (policy %s, restart %d)", c.short_id, c.restart_policy,
                     c.restart_count + 1)
            self.store.start(c, by_policy=True)
        except EngineError as exc:
            log.warning("restart policy of %s: the start failed: %s", container_id[:12], exc)
