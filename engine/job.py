"""Jobs: every engine operation runs like a Unix process.

A job has a name, arguments, an environment, three byte streams and an exit status. The
CLI and the HTTP API never call engine internals directly: they build a job and run it,
so every operation has exactly one implementation and one way to report errors.
"""

from __future__ import annotations

import io
import json
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

from graphdrivers.errors import DriverError

from . import templates
from .errors import EngineError, NoSuchJob
from .jobspec import JobSpec
from .system import space

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

BROKEN_PIPE = 141  # a job whose reader went away ends as a process killed by SIGPIPE does (128 + 13)


class Job:
    """One run of a handler; `status` is None until `run()` finishes."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        args: list[str],
        env: Mapping[str, str] | None = None,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        self.args = [str(a) for a in args]
        self.env: dict[str, str] = dict(env or {})
        self.stdin: IO[bytes] = stdin if stdin is not None else io.BytesIO()
        self.stdout: IO[bytes] = stdout if stdout is not None else io.BytesIO()
        self.stderr: IO[bytes] = stderr if stderr is not None else io.BytesIO()
        # The typed values of the declared options, read from `env` when the job runs.
        self.options: dict[str, Any] = {}
        self.status: int | None = None
        self.error: BaseException | None = None
        # Set by a caller that shows progress (the CLI's bars): called with event dicts
        # such as {"action": "load", "current": bytes, "total": bytes, "item": name}.
        self.progress: Callable[[dict[str, Any]], None] | None = None

    def __repr__(self) -> str:
        return f"Job({self.name!r}, args={self.args!r}, status={self.status!r})"

    # -- output helpers ----------------------------------------------------------------

    def write(self, text: str) -> None:
        self.stdout.write(text.encode())

    def write_json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, indent=4).encode() + b"\n")

    def write_json_each(self, refs: list[str], view: Callable[[str], Any], missing: type[EngineError],
                        template: str = "") -> None:
        """Docker's inspect of several objects: the JSON list of those found (or each through
        the --format `template`), then every missing one on stderr and the first raised (so
        the API can answer 404)."""
        found, errors = [], []
        for ref in refs:
            try:
                found.append(view(ref))
            except missing as exc:
                errors.append(exc)
        if template:
            self.write(templates.render_all(template, [templates.as_go_json(v) for v in found], strict=False))
        else:
            self.write_json(found)
        if errors:
            for exc in errors[1:]:
                self.error_line(f"Error: {exc}")
            raise errors[0]

    def error_line(self, text: str) -> None:
        self.stderr.write(text.rstrip("\n").encode() + b"\n")

    def report(self, **event: Any) -> None:
        if self.progress is not None:
            self.progress(event)

    # -- running -----------------------------------------------------------------------

    def run(self, check: bool = False) -> int:
        """Run the handler; returns the status. Errors go to stderr (and re-raise if `check`).

        Typed errors (engine and driver errors) are user-facing: one line on stderr. Any
        other exception is a bug: its traceback goes to stderr so it can be reported.
        """
        if self.status is not None:
            raise EngineError(f"job {self.name} has already run")
        try:
            spec = self.engine.spec(self.name)
            spec.check_args(self.args)
            self.options = spec.parse(self.env)
            log.debug("job %s args=%s options=%s", self.name, self.args, sorted(self.env))  # values may be secrets
            status = spec.handler(self)
            self.status = 0 if status is None else int(status)
            if self.status == 0:
                self.engine.events.job_succeeded(self.name, self.args)
        except BrokenPipeError as exc:  # whoever read the output went away (`strata export c | head`)
            self.error = exc
            self.status = BROKEN_PIPE
        except (EngineError, DriverError, OSError) as exc:
            full = _no_space_cause(exc)
            if full is None and isinstance(exc, OSError) and not isinstance(exc, EngineError | DriverError):
                self._internal_error(exc, check)
            else:
                self._failed(exc if full is None else space.no_space(full, self._paths()), check)
        except Exception as exc:
            self._internal_error(exc, check)
        if check and self.status != 0:
            raise EngineError(f"job {self.name} failed with status {self.status}")
        return self.status

    def _failed(self, exc: EngineError | DriverError, check: bool) -> None:
        """A user-facing error: one line on stderr."""
        self.error = exc
        self.status = getattr(exc, "status", 1) if isinstance(exc, EngineError) else 1
        self.error_line("Error: " + " ".join(str(exc).split("\n")))
        if check:
            raise exc

    def _internal_error(self, exc: Exception, check: bool) -> None:
        """A bug: its traceback goes to stderr so it can be reported."""
        self.error = exc
        self.status = 1
        log.error("internal error in job %s", self.name, exc_info=exc)
        self.error_line(f"Error: internal error in job {self.name}: {exc!r}")
        self.stderr.write("".join(traceback.format_exception(exc)).encode())
        if check:
            raise exc

    def _paths(self) -> list[str]:
        """Where the engine writes: the filesystems an ENOSPC may be about."""
        driver = getattr(self.engine, "driver", None)
        return [self.engine.root, *([driver.home] if driver is not None else [])]

    def output(self) -> bytes:
        """What the job wrote to stdout, when stdout is the default in-memory buffer."""
        if not isinstance(self.stdout, io.BytesIO):
            raise EngineError(f"job {self.name}: stdout is not captured")
        return self.stdout.getvalue()

    def json(self) -> Any:
        return json.loads(self.output())


def _no_space_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT OSError `exc` is or was raised from, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in space.NO_SPACE:
            return current
        current = current.__cause__ or current.__context__
    return None


def lookup(specs: Mapping[str, JobSpec], name: str) -> JobSpec:
    try:
        return specs[name]
    except KeyError:
        raise NoSuchJob(name) from None
