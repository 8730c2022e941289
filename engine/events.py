"""The engine's event stream (`docker events`): what happened to containers and images, when.

Events are appended to `<root>/events.jsonl` as they happen, so that `since` reaches back
past an engine's restart (the last KEEP of them at least), and are handed to the followers of the
stream and to the engine's own listeners (the restart manager). Actions and attributes
are Docker's: container create/start/die/destroy/..., image pull/tag/delete/...
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError

log = logging.getLogger(__name__)

KEEP = 1024
FILE = "events.jsonl"
MAX_FILE = 1 << 20  # bytes: past this, the file is cut back to the last KEEP events
FILTER_KEYS = ("type", "event", "container", "image")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Event:
    type: str  # container, image
    action: str
    actor: str  # a container id, an image id or reference
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0

    def json(self) -> dict[str, Any]:
        """Docker's message shape (with the legacy status/id/from fields the old clients read)."""
        out: dict[str, Any] = {"Type": self.type, "Action": self.action,
                               "Actor": {"ID": self.actor, "Attributes": dict(self.attributes)},
                               "scope": "local", "time": self.time_nano // 1_000_000_000, "timeNano": self.time_nano}
        out.update({"status": self.action, "id": self.actor})
        if "image" in self.attributes:
            out["from"] = self.attributes["image"]
        return out

    def line(self) -> str:
        """`docker events`' text form: time, type, action, actor, (attributes)."""
        when = dt.datetime.fromtimestamp(self.time_nano / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(self.attributes.items()))
        return f"{when} {self.type} {self.action} {self.actor}" + (f" ({attrs})" if attrs else "")


def parse_when(text: str, now: float | None = None) -> float | None:
    """A `since`/`until` value: unix seconds (`1700000000.5`), a duration before now (`10m`),
    or an RFC 3339 time; "" is None."""
    if not text:
        return None
    now = time.time() if now is None else now
    with contextlib.suppress(ValueError):
        return float(text)
    found = _DURATION.match(text)
    if found:
        return now - float(found.group(1)) * _UNITS[found.group(2)]
    with contextlib.suppress(ValueError):
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    raise UsageError(f"{text!r} is not a time: give unix seconds, a duration such as 10m, or an RFC 3339 time")


def parse_filters(items: list[str]) -> dict[str, set[str]]:
    """`--filter KEY=VALUE` items (type, event, container, image) as {key: values}."""
    filters: dict[str, set[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise UsageError(f"invalid event filter {item!r}: use KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}")
        filters.setdefault(key, set()).add(value)
    return filters


def matches(event: Event, filters: dict[str, set[str]]) -> bool:
    def any_of(key: str, *candidates: str) -> bool:
        return key not in filters or any(c and (c in filters[key] or any(c.startswith(v) for v in filters[key]
                                                                          if key != "event" and len(v) >= 12))
                                         for c in candidates)

    container = (event.actor, event.attributes.get("name", "")) if event.type == "container" else ("",)
    image = (event.attributes.get("image", ""),) if event.type == "container" else \
        (event.actor, event.attributes.get("name", ""))
    return (any_of("type", event.type) and any_of("event", event.action, event.action.split(":")[0])
            and any_of("container", *container) and any_of("image", *image))


# Image jobs and the event each of their arguments gets: (action, which argument is the actor).
IMAGE_JOBS = {"pull": ("pull", 0), "push": ("push", 0), "tag": ("tag", 0), "rmi": ("delete", None),
              "import": ("import", 1), "save": ("save", None)}


class Events:
    """The events of one engine root: a bounded log on disk, read when first followed (opening
    an engine costs nothing), and its followers and listeners."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, FILE)
        self._cond = threading.Condition()
        self._recent: deque[Event] | None = None  # the last KEEP, once someone follows
        self._listeners: list[Callable[[Event], None]] = []
        self._latest = 0  # time_nano of the last event emitted by this process

    def _load(self) -> deque[Event]:
        """The file's last KEEP events (a torn last line, from a crash, is skipped)."""
        if self._recent is None:
            events: deque[Event] = deque(maxlen=KEEP)
            with contextlib.suppress(FileNotFoundError), open(self.path) as f:
                for line in f:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        raw = json.loads(line)
                        events.append(Event(raw["type"], raw["action"], raw["actor"], raw["attributes"],
                                            raw["time_nano"]))
            self._recent = events
        return self._recent

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` for every event from now on (quickly: it runs in the emitter)."""
        with self._cond:
            self._listeners.append(callback)

    def emit(self, type_: str, action: str, actor: str, **attributes: str) -> Event:
        event = Event(type_, action, actor, {k: str(v) for k, v in attributes.items() if v != ""}, time.time_ns())
        with self._cond:
            if self._recent is not None:
                self._recent.append(event)
            with open(self.path, "a") as f:
                f.write(_record(event))
                size = f.tell()
            if size > MAX_FILE:
                self._trim()
            listeners = list(self._listeners)
            self._latest = event.time_nano
            self._cond.notify_all()
        for callback in listeners:
            try:
                callback(event)
            except Exception:
                log.exception("an event listener failed on %s %s", event.type, event.action)
        return event

    def wait_newer(self, time_nano: int, timeout: float) -> bool:
        """Block until an event later than `time_nano` is emitted (True) or `timeout` passes:
        a waiter for a change of state (a start, a removal) sleeps until something happens."""
        with self._cond:
            return self._cond.wait_for(lambda: self._latest > time_nano, timeout)

    def _trim(self) -> None:
        """Keep the file to the last KEEP events."""
        events = self._load()
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(_record(e) for e in events))
        os.replace(tmp, self.path)

    def job_succeeded(self, name: str, args: list[str]) -> None:
        """The image events of a finished job (its arguments name the images)."""
        if name not in IMAGE_JOBS or not args:
            return
        action, index = IMAGE_JOBS[name]
        if name == "tag":
            self.emit("image", action, args[0], name=args[1] if len(args) > 1 else "")
        elif index is None:
            for ref in args:
                self.emit("image", action, ref, name=ref)
        elif index < len(args):
            self.emit("image", action, args[index], name=args[index])

    def follow(self, since: float | None, until: float | None, filters: dict[str, set[str]],
               stop: threading.Event | None = None) -> Iterator[Event]:
        """The events from `since` (None: from now) to `until` (None: until `stop` is set), as they come."""
        start = time.time_ns() if since is None else int(since * 1e9)
        end = None if until is None else int(until * 1e9)
        seen = start - 1
        while True:
            with self._cond:
                batch = [e for e in self._load() if e.time_nano > seen]
                if not batch:
                    now = time.time_ns()
                    if end is not None and now >= end:
                        return
                    timeout = 1.0 if end is None else min(1.0, (end - now) / 1e9)
                    self._cond.wait(timeout)
                    batch = [e for e in self._load() if e.time_nano > seen]
            for event in batch:
                seen = event.time_nano
                if end is not None and event.time_nano > end:
                    return
                if matches(event, filters):
                    yield event
            if stop is not None and stop.is_set():
                return
            if end is not None and time.time_ns() >= end and not batch:
                return


def _record(event: Event) -> str:
    return json.dumps({"type": event.type, "action": event.action, "actor": event.actor,
                       "attributes": event.attributes, "time_nano": event.time_nano}) + "\n"
