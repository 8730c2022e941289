"""Driver options as one typed, frozen structure per driver, parsed once.

A driver declares its options as a frozen dataclass deriving from `DriverOptions`, one
field per option key made with `option(key, parser, default)`. `parse` refuses unknown
keys and values the parser rejects (`InvalidOption`, naming the key), so a driver reads
typed attributes (`self.options.copy`) instead of looking strings up in a dict, and the
list of keys it accepts is the structure itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from .errors import InvalidOption

OptionParser = Callable[[str], Any]

_O = TypeVar("_O", bound="DriverOptions")


def option(key: str, parse: OptionParser, default: Any) -> Any:
    """A field of a `DriverOptions` dataclass: storage option `key`, parsed by `parse`."""
    return field(default=default, metadata={"key": key, "parse": parse})


@dataclass(frozen=True)
class DriverOptions:
    """Base of every driver's options; `given` holds the keys the user set."""

    given: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def parse(cls: type[_O], driver: str, options: Mapping[str, str]) -> _O:
        keyed = {f.metadata["key"]: f for f in fields(cls) if "key" in f.metadata}
        values: dict[str, Any] = {}
        for key, text in options.items():
            spec = keyed.get(key)
            if spec is None:
                known = ", ".join(sorted(keyed)) or "none"
                raise InvalidOption(f"unknown option {key!r} for driver {driver!r} (known: {known})")
            values[spec.name] = spec.metadata["parse"](text)
        return cls(given=frozenset(options), **values)
