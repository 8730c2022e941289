"""The options of `create` and `run`, declared once for the jobs, the CLI and the daemon client.

The client (`strata -H HOST run`) must start in a few milliseconds, and importing argparse
(with dataclasses or typing) costs several, so the options are a plain table: the `create`
and `run` jobs declare their options from it (and the CLI its flags from those), and
`parse_run` reads it for the client, with the same meaning (a test checks it).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

# (flags, destination, kind, default, help): kind is "flag", "value" or "append".
OPTIONS: tuple[tuple[tuple[str, ...], str, str, object, str], ...] = (
    (("-d", "--detach"), "detach", "flag", False, "print the id and leave it running (run only)"),
    (("--rm",), "rm", "flag", False, "remove the container when it exits"),
    (("-e", "--env"), "env", "append", None, "KEY=VALUE for the container's environment"),
    (("-w", "--workdir"), "workdir", "value", "", "working directory inside the container"),
    (("-u", "--user"), "user", "value", "", "USER[:GROUP] to run as"),
    (("--name",), "name", "value", "", "the container's name"),
    (("--hostname",), "hostname", "value", "", "the container's hostname"),
    (("--net", "--network"), "network", "value", "none", "none (loopback only) or host"),
    (("--pull",), "pull", "value", "missing", "pull the image first: missing (default), always or never"),
)
NETWORKS = ("none", "host")
PULL_POLICIES = ("missing", "always", "never")
CHOICES = {"network": NETWORKS, "pull": PULL_POLICIES}  # the options whose values are one of a few


NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # Docker's rule (at least two characters)
MAX_NAME = 255  # a name is a GraphDB key and appears in every listing: bounded
HOSTNAME_LABEL_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?")  # RFC 1123
MAX_HOSTNAME = 64  # the kernel's HOST_NAME_MAX: sethostname(2) refuses longer


class UsageError(Exception):
    """Arguments `parse_run` cannot take; the message says which."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a container (None: it can)."""
    if len(name) > MAX_NAME:
        return f"invalid container name ({len(name)} characters): at most {MAX_NAME} are allowed"
    if not NAME_RE.fullmatch(name):
        return f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is allowed"
    return None


def hostname_problem(hostname: str) -> str | None:
    """Why `hostname` cannot be a container's hostname (None: it can)."""
    if len(hostname) > MAX_HOSTNAME or not all(HOSTNAME_LABEL_RE.fullmatch(label) for label in hostname.split(".")):
        return (f"invalid hostname {hostname[:80]!r}: RFC 1123 labels (letters, digits, inner hyphens) joined by "
                f"dots, at most {MAX_HOSTNAME} characters")
    return None


def parse_run(argv: list[str]) -> SimpleNamespace:
    """`run`'s arguments as argparse would read them with `add_create_arguments`: options
    (`-e X`, `-eX`, `--env=X`) up to the image, everything after it is the command."""
    table = {flag: (dest, kind) for flags, dest, kind, _default, _help in OPTIONS for flag in flags}
    values: dict[str, object] = {dest: ([] if kind == "append" else default)
                                 for _flags, dest, kind, default, _help in OPTIONS}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        word = argv[i]
        if word == "--":
            i += 1
            break
        flag, has_value, inline = word.partition("=") if word.startswith("--") else (word[:2], False, word[2:])
        if flag not in table:
            raise UsageError(f"unknown option {word!r} (see strata run --help)")
        dest, kind = table[flag]
        if kind == "flag":
            if has_value or inline:
                raise UsageError(f"option {flag} takes no value")
            values[dest] = True
            i += 1
            continue
        if not (has_value or inline):
            if i + 1 >= len(argv):
                raise UsageError(f"option {flag} needs a value")
            inline, i = argv[i + 1], i + 1
        if dest in CHOICES and inline not in CHOICES[dest]:
            raise UsageError(f"{flag} must be one of {', '.join(CHOICES[dest])}, not {inline!r}")
        if kind == "append":
            values[dest].append(inline)  # type: ignore[union-attr]
        else:
            values[dest] = inline
        i += 1
    if i >= len(argv):
        raise UsageError("run needs an IMAGE (strata -H HOST run [OPTIONS] IMAGE [COMMAND...])")
    return SimpleNamespace(image=argv[i], args=argv[i + 1 :], **values)
