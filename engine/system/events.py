"""The `events` job: the engine's events (engine/events.py), past and as they come."""

from __future__ import annotations

import json
import threading

from ..events import parse_filters, parse_when
from ..job import Job
from ..jobspec import JSON, JobTable, Option

jobs = JobTable()


@jobs.job("events", help="container and image events: those since --since, then new ones until --until", options={
    "since": Option(str, "from this time (unix seconds, RFC 3339, or a duration such as 10m)", ("--since",), ""),
    "until": Option(str, "until this time (as --since); without it, until interrupted", ("--until",), ""),
    "filter": Option(list, "type=, event=, container=, image= (same key: any; different keys: all)",
                     ("-f", "--filter")),
    "json": JSON})
def events(job: Job) -> int:
    since, until = parse_when(job.options["since"]), parse_when(job.options["until"])
    filters = parse_filters(job.options["filter"])
    stop: threading.Event | None = getattr(job, "cancelled", None)
    try:
        for event in job.engine.events.follow(since, until, filters, stop):
            job.write(json.dumps(event.json()) + "\n" if job.options["json"] else event.line() + "\n")
            job.stdout.flush()
    except BrokenPipeError:  # the reader went away: the end of a stream, not an error
        pass
    return 0
