"""Jobs: every engine operation runs like a Unix process.

A job has a name, arguments, an environment, three byte streams and an exit status. The
CLI and the HTTP API never call engine internals directly: they build a job and run it,
so every operation has exactly one implementation and one way to report errors.
"""

from __future__ import annotations

import io
import json
import traceback
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

from graphdrivers.errors import DriverError
from graphdrivers.units import parse_bool

from .errors import EngineError, NoSuchJob

if TYPE_CHECKING:
    from .engine import Engine

Handler = Callable[["Job"], int]


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
        self.status: int | None = None
        self.error: BaseException | None = None
        # Set by a caller that shows progress (the CLI's bars): called with event dicts
        # such as {"action": "load", "current": bytes, "total": bytes, "item": name}.
        self.progress: Callable[[dict[str, Any]], None] | None = None

    def __repr__(self) -> str:
        return f"Job({self.name!r}, args={self.args!r}, status={self.status!r})"

    # -- environment helpers -----------------------------------------------------------

    def getenv(self, key: str, default: str | None = None) -> str | None:
        return self.env.get(key, default)

    def getenv_bool(self, key: str, default: bool = False) -> bool:
        value = self.env.get(key)
        return default if value in (None, "") else parse_bool(value, what=f"job {self.name}: environment {key}")

    def getenv_json(self, key: str, default: Any = None) -> Any:
        value = self.env.get(key)
        if value in (None, ""):
            return default
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise EngineError(f"job {self.name}: environment {key} is not valid JSON: {exc}") from None

    def setenv_json(self, key: str, value: Any) -> None:
        self.env[key] = json.dumps(value)

    # -- output helpers ----------------------------------------------------------------

    def write(self, text: str) -> None:
        self.stdout.write(text.encode())

    def write_json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, indent=4).encode() + b"\n")

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
            handler = self.engine.handler(self.name)
            status = handler(self)
            self.status = 0 if status is None else int(status)
        except (EngineError, DriverError) as exc:
            self.error = exc
            self.status = getattr(exc, "status", 1) if isinstance(exc, EngineError) else 1
            self.error_line("Error: " + " ".join(str(exc).split("\n")))
            if check:
                raise
        except Exception as exc:
            self.error = exc
            self.status = 1
            self.error_line(f"Error: internal error in job {self.name}: {exc!r}")
            self.stderr.write(traceback.format_exc().encode())
            if check:
                raise
        if check and self.status != 0:
            raise EngineError(f"job {self.name} failed with status {self.status}")
        return self.status

    def output(self) -> bytes:
        """What the job wrote to stdout, when stdout is the default in-memory buffer."""
        if not isinstance(self.stdout, io.BytesIO):
            raise EngineError(f"job {self.name}: stdout is not captured")
        return self.stdout.getvalue()

    def json(self) -> Any:
        return json.loads(self.output())


def lookup(handlers: Mapping[str, Handler], name: str) -> Handler:
    try:
        return handlers[name]
    except KeyError:
        raise NoSuchJob(name) from None
