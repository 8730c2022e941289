"""Job declarations: a job's name, positional arguments and typed options, stated once.

The CLI builds its subcommands' options from these declarations, the API routes pass
options by their declared names, and a Job reads its options through them; so the three
cannot drift apart, and an option nobody declared is refused by name instead of ignored.

Options travel in a job's environment as strings (as Docker's engine jobs carried them);
`JobSpec.parse` turns that environment into typed values, `encode` does the reverse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphdrivers.errors import InvalidOption
from graphdrivers.units import parse_bool

from .errors import UsageError

if TYPE_CHECKING:
    from .job import Job

Handler = Callable[["Job"], int]
OptionType = type[bool] | type[str] | type[int] | type[float] | type[list]


@dataclass(frozen=True)
class Option:
    """One typed option. `flags` are its CLI spellings (none: not a CLI flag of its own)."""

    type: OptionType
    help: str = ""
    flags: tuple[str, ...] = ()
    default: Any = None
    choices: tuple[str, ...] | None = None

    def value(self) -> Any:
        """The value when the option is absent (a fresh list for list options)."""
        if self.type is bool:
            return bool(self.default)
        if self.type is list:
            return list(self.default or [])
        return self.default


JSON = Option(bool, "JSON output", ("--json",))  # the output switch many jobs share
FORMAT = Option(str, "a Go template for each row ({{.ID}}, {{json .}}, table ...; see README)", ("--format",), "")
CHANGE = Option(list, "a Dockerfile instruction for the image's config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, "
                "USER, VOLUME, WORKDIR)", ("-c", "--change"))  # commit's and import's
INSPECT_FORMAT = Option(str, "a Go template for each object ({{.Id}}, {{json .State}}; see README)",
                        ("-f", "--format"), "")


def parse_option(job: str, name: str, option: Option, text: str) -> Any:
    """The typed value of one option given as text; a wrong one is a UsageError naming it."""
    what = f"job {job}: option {name}"
    if option.type is bool:
        try:
            return parse_bool(text, what=what)
        except InvalidOption as exc:
            raise UsageError(str(exc)) from None
    if option.type is list:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{what} must be a JSON list of strings, got {text!r}")
        return value
    if option.type in (int, float):
        try:
            return option.type(text)
        except ValueError:
            raise UsageError(f"{what} must be {'an integer' if option.type is int else 'a number'}, "
                             f"got {text!r}") from None
    if option.choices is not None and text not in option.choices:
        raise UsageError(f"{what} must be one of {', '.join(option.choices)}, not {text!r}")
    return text


def encode(value: Any) -> str:
    """An option value as the string a job's environment carries."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return "" if value is None else str(value)


def _words(usage: str) -> list[str]:
    """The top-level words of a usage line: `IMAGE [COMMAND [ARG...]]` is two."""
    words, depth, word = [], 0, ""
    for ch in usage:
        depth += (ch == "[") - (ch == "]")
        if ch == " " and depth == 0:
            words.append(word)
            word = ""
        else:
            word += ch
    return [w for w in (*words, word) if w]


def _arity(usage: str) -> tuple[int, int | None]:
    """(min, max) positional arguments of a usage line: `[X]` is optional, `X...` repeats."""
    words = _words(usage)
    required = sum(1 for w in words if not w.startswith("["))
    return required, None if any("..." in w for w in words) else len(words)


VERBATIM = ("COMMAND", "PS_OPTION")  # usage words that start a command line passed on as typed
REST = "..."  # the nargs of a verbatim command line: argparse.REMAINDER, flags included


@dataclass(frozen=True)
class Positional:
    """One positional argument of a usage line, as a command-line parser takes it.

    `nargs` is argparse's: None (exactly one), "?", "+", "*", or REST for a command line
    that follows (`run IMAGE ls -l`: `-l` is the command's, not ours)."""

    dest: str
    metavar: str
    nargs: str | None


def positionals(usage: str) -> list[Positional]:
    """The positionals of a usage line, in order, so a CLI parses exactly what a job declares.

    `[X]` is optional, `X...` repeats, and a word starting with a VERBATIM name takes the
    rest of the line as it is (`CONTAINER COMMAND [ARG...]`)."""
    found: list[Positional] = []
    for word in _words(usage):
        optional = word.startswith("[") and word.endswith("]")
        inner = word[1:-1] if optional else word
        if inner.startswith(VERBATIM):
            found.append(Positional("args", inner.split(" ")[0].split("...")[0], REST))
            break
        repeated = inner.endswith("...")
        metavar = inner.removesuffix("...")
        nargs = ("*" if optional else "+") if repeated else ("?" if optional else None)
        found.append(Positional(re.split(r"[^A-Za-z0-9_]", metavar)[0].lower(), metavar, nargs))
    return found


@dataclass(frozen=True)
class JobSpec:
    """A declared job: `usage` names its positional arguments, `options` its typed options."""

    name: str
    handler: Handler
    usage: str = ""
    options: Mapping[str, Option] = field(default_factory=dict)
    help: str = ""

    @property
    def positionals(self) -> list[Positional]:
        return positionals(self.usage)

    def check_args(self, args: list[str]) -> None:
        low, high = _arity(self.usage)
        if len(args) < low or (high is not None and len(args) > high):
            raise UsageError(f"usage: {self.name} {self.usage}".rstrip())

    def parse(self, env: Mapping[str, str]) -> dict[str, Any]:
        """Every declared option's typed value; an empty string means the default."""
        self._refuse_unknown(env)
        return {name: parse_option(self.name, name, option, env[name]) if env.get(name, "") != "" else option.value()
                for name, option in self.options.items()}

    def env(self, values: Mapping[str, Any]) -> dict[str, str]:
        """A job environment for typed values (what the CLI and the API routes pass)."""
        self._refuse_unknown(values)
        return {name: encode(value) for name, value in values.items()}

    def _refuse_unknown(self, names: Mapping[str, Any]) -> None:
        unknown = sorted(set(names) - set(self.options))
        if unknown:
            raise UsageError(f"job {self.name}: unknown option {unknown[0]!r}"
                             f" (options: {', '.join(sorted(self.options)) or 'none'})")


def _normalize(options: Mapping[str, Option | OptionType] | None) -> dict[str, Option]:
    return {name: o if isinstance(o, Option) else Option(o) for name, o in (options or {}).items()}


def declare(name: str, handler: Handler, *, args: str = "", options: Mapping[str, Option | OptionType] | None = None,
            help: str = "") -> JobSpec:
    """A JobSpec; an option may be given as just its type (`{"force": bool}`)."""
    return JobSpec(name, handler, args, _normalize(options), help or (handler.__doc__ or "").split("\n")[0])


class JobTable:
    """The jobs one module declares, in order: `@jobs.job("rmi", args="IMAGE...", options=...)`."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}

    def job(self, name: str, *, args: str = "", options: Mapping[str, Option | OptionType] | None = None,
            help: str = "") -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            self._specs[name] = declare(name, handler, args=args, options=options, help=help)
            return handler
        return add

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self._specs.values())

    def __getitem__(self, name: str) -> JobSpec:
        return self._specs[name]
