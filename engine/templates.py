"""`--format`: the part of Go's text/template that docker users write, done faithfully.

Supported, with Go's meaning:
- text, and `{{ACTION}}` with Go's `{{-`/`-}}` whitespace trimming;
- `{{.}}` and field access `{{.Field}}`, `{{.Field.Sub}}` (keys of the JSON objects);
- `{{json X}}` and `{{X | json}}`: X as JSON (Go's encoding: compact, sorted object keys,
  `<`, `>`, `&` escaped);
- a leading `table` (images, ps): a header row of Docker's column names, then the rows,
  aligned in columns as Docker's tabwriter does (cells at least 10 wide, 3 spaces apart);
- `\\t` and `\\n` written as two characters mean a tab and a newline, as in docker.

Values print as Go's fmt does: strings as they are, `true`/`false`, `[a b]` for lists,
`map[k:v]` for objects (sorted keys), `<nil>` for null, `<no value>` for a missing key.
Anything else (range, if, with, variables, other functions) is refused by name with a
UsageError, never printed as if it were text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .errors import UsageError

TABLE = "table"
MIN_WIDTH, PADDING = 10, 3  # docker's tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_FIELD = re.compile(r"^\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?$")
SUPPORTED = "field access ({{.Field}}), json and table"


@dataclass(frozen=True)
class _Action:
    path: tuple[str, ...]  # () is `.`
    json: bool

    @property
    def source(self) -> str:
        dotted = "." + ".".join(self.path)
        return f"json {dotted}" if self.json else dotted


@dataclass(frozen=True)
class Template:
    """A parsed --format: text and actions in order, and whether it starts with `table`."""

    parts: tuple[str | _Action, ...]
    table: bool

    def render(self, value: Any, strict: bool) -> str:
        """The template applied to one value; `strict`: a missing field is an error (Docker's
        list rows are Go structs), else `<no value>` (inspect's are maps)."""
        return "".join(p if isinstance(p, str) else _show(_lookup(value, p, strict), p.json) for p in self.parts)

    def header(self, names: Mapping[str, str]) -> str:
        """The table's header: each field action replaced by its column name."""
        return "".join(p if isinstance(p, str) else names.get(".".join(p.path), "") for p in self.parts)


def parse(text: str) -> Template:
    text = text.replace("\\t", "\t").replace("\\n", "\n")
    table = text.startswith(TABLE) and (len(text) == len(TABLE) or text[len(TABLE)].isspace())
    if table:
        text = text[len(TABLE):].lstrip(" ")
    parts: list[str | _Action] = []
    pos = 0
    for found in _ACTION.finditer(text):
        literal = text[pos:found.start()]
        if found.group(1):
            literal = literal.rstrip()
        parts.append(literal)
        parts.append(_action(found.group(2).strip()))
        pos = found.end()
        if found.group(3):
            while pos < len(text) and text[pos].isspace():
                pos += 1
    rest = text[pos:]
    if "{{" in rest:
        raise UsageError(f"template: unclosed action in {text!r}")
    parts.append(rest)
    return Template(tuple(p for p in parts if p != ""), table)


def _action(source: str) -> _Action:
    words = [w.strip() for w in source.split("|")]
    wants_json = False
    if len(words) == 2 and words[1] == "json":
        words, wants_json = [words[0]], True
    if len(words) != 1:
        raise UsageError(f"template: unsupported pipeline {{{{{source}}}}}: strata's --format supports {SUPPORTED}")
    tokens = words[0].split()
    if len(tokens) == 2 and tokens[0] == "json" and not wants_json:
        tokens, wants_json = tokens[1:], True
    if len(tokens) != 1 or not _FIELD.match(tokens[0]):
        word = tokens[0] if tokens else source
        raise UsageError(f"template: unsupported {word!r} in {{{{{source}}}}}: strata's --format supports "
                         f"{SUPPORTED}")
    path = tuple(tokens[0][1:].split(".")) if tokens[0] != "." else ()
    return _Action(path, wants_json)


_MISSING = object()


def _lookup(value: Any, action: _Action, strict: bool) -> Any:
    for i, name in enumerate(action.path):
        if not isinstance(value, Mapping):
            where = "." + ".".join(action.path[:i]) if i else "."
            if value is _MISSING or value is None:
                raise UsageError(f"template: {{{{{action.source}}}}}: nil pointer evaluating {where}.{name}")
            raise UsageError(f"template: {{{{{action.source}}}}}: can't evaluate field {name} in a "
                             f"{_kind(value)}")
        if name not in value:
            if strict:
                raise UsageError(f"template: {{{{{action.source}}}}}: can't evaluate field {name} "
                                 f"(fields: {', '.join(sorted(value))})")
            value = _MISSING
            continue
        value = value[name]
    return value


def _kind(value: Any) -> str:
    return {str: "string", bool: "bool", int: "number", float: "number", list: "list"}.get(type(value), "value")


def _show(value: Any, as_json: bool) -> str:
    if as_json:
        if value is _MISSING:
            return "null"
        text = json.dumps(_json_numbers(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return go_value(value)


def go_value(value: Any) -> str:
    """A value as Go's fmt %v prints the JSON-decoded value text/template sees."""
    if value is _MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _go_float(x: float) -> str:
    """Go's %v of a float64 (strconv 'g', shortest): 1e+06, 123456, 1.5, 1e-05."""
    if x == 0:
        return "0"
    _sign, digits, exponent = Decimal(repr(abs(x))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + int(exponent)  # where the decimal point falls in `text`
    exp = point - 1
    minus = "-" if x < 0 else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return minus + text + "0" * (point - len(text))
    return f"{minus}{text[:point]}.{text[point:]}"


def _json_numbers(value: Any) -> Any:
    """Whole floats as integers, as Go's JSON encoder writes a float64 like 1234."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_numbers(v) for k, v in value.items()}
    return value


def as_go_json(value: Any) -> Any:
    """A JSON value as Go's text/template sees it decoded into interface{}: numbers are float64."""
    return json.loads(json.dumps(value), parse_int=float)


def tabulate(lines: list[str]) -> str:
    """Tab-separated lines in aligned columns, as Go's tabwriter with docker's settings."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):  # the last cell of a line is not a column
            widths[i] = max(widths.get(i, MIN_WIDTH), len(cell) + PADDING)
    return "".join("".join(cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])) + cells[-1] + "\n"
                   for cells in rows)


def render_all(template_text: str, values: list[Any], *, headers: Mapping[str, str] | None = None,
               strict: bool = True) -> str:
    """Every value through the template, a line each; a `table` template gets a header row
    (`headers` maps field names to column names; None: the command has no table form)."""
    template = parse(template_text)
    if template.table and headers is None:
        raise UsageError("template: this command has no table format: strata's --format supports "
                         "field access ({{.Field}}) and json here")
    lines = [template.render(v, strict) for v in values]
    if not template.table:
        return "".join(line + "\n" for line in lines)
    return tabulate([template.header(headers or {}), *lines])
