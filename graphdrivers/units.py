"""Human sizes in Docker's style ("10G", "512m", "100MB"), binary multiples as docker uses."""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import InvalidOption

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes in `text`; suffixes k/m/g/t/p (optionally followed by b or ib) are powers of 1024."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise InvalidOption(f"{what}: {text!r} is not a size (examples: 512M, 10G, 1048576)")
    number, unit = match.group(1), match.group(2).lower()
    return int(float(number) * _MULT[unit])


def size_parser(what: str) -> Callable[[str], int]:
    """A parser for size option `what`."""
    return lambda text: parse_size(text, what=what)


def parse_bool(text: str, *, what: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise InvalidOption(f"{what}: {text!r} is not a boolean (true or false)")


def parse_choice(text: str, choices: tuple[str, ...], *, what: str) -> str:
    """`text` when it is one of `choices` (an option such as dm.fs or aufs.backend)."""
    if text not in choices:
        raise InvalidOption(f"{what}: {text!r} is not one of {', '.join(choices)}")
    return text


def choice(what: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    """A parser for option `what` whose value must be one of `choices`."""
    return lambda text: parse_choice(text, choices, what=what)


def bool_parser(what: str) -> Callable[[str], bool]:
    """A parser for boolean option `what`."""
    return lambda text: parse_bool(text, what=what)


_SECONDS_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


def parse_seconds(text: str, *, what: str) -> float:
    """A positive duration: `5`, `2.5s` or `500ms` (Docker's style for timeouts)."""
    match = _SECONDS_RE.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise InvalidOption(f"{what}: {text!r} is not a positive duration (examples: 5, 2.5s, 500ms)")
    return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


def seconds_parser(what: str) -> Callable[[str], float]:
    """A parser for duration option `what`."""
    return lambda text: parse_seconds(text, what=what)


def human_size(n: float) -> str:
    """The inverse for display, as `docker info` prints sizes (decimal units, 3 significant digits)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.4g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError("unreachable")
