"""The options of `create` and `run`, declared once for the jobs, the CLI and the daemon client.

The client (`strata -H HOST run`) must start in a few milliseconds, and importing argparse
(with dataclasses or typing) costs several, so the options are a plain table: the `create`
and `run` jobs declare their options from it (and the CLI its flags from those), and
`parse_run` reads it for the client, with the same meaning (a test checks it).
"""

from __future__ import annotations

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
    (("-i", "--interactive"), "interactive", "flag", False, "keep stdin open and pass it to the container"),
    (("-t", "--tty"), "tty", "flag", False, "give the container a terminal"),
    (("--restart",), "restart", "value", "no", "restart policy (applied by a daemon): no, on-failure[:N], always, "
     "unless-stopped"),
)
NETWORKS = ("none", "host")


class UsageError(Exception):
    """Arguments `parse_run` cannot take; the message says which."""


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
            if inline and not has_value and not word.startswith("--"):
                values[dest] = True
                argv = [*argv[:i], "-" + inline, *argv[i + 1 :]]  # -it: -i, then -t
                continue
            if has_value or inline:
                raise UsageError(f"option {flag} takes no value")
            values[dest] = True
            i += 1
            continue
        if not (has_value or inline):
            if i + 1 >= len(argv):
                raise UsageError(f"option {flag} needs a value")
            inline, i = argv[i + 1], i + 1
        if dest == "network" and inline not in NETWORKS:
            raise UsageError(f"--network must be one of {', '.join(NETWORKS)}, not {inline!r}")
        if kind == "append":
            values[dest].append(inline)  # type: ignore[union-attr]
        else:
            values[dest] = inline
        i += 1
    if i >= len(argv):
        raise UsageError("run needs an IMAGE (strata -H HOST run [OPTIONS] IMAGE [COMMAND...])")
    return SimpleNamespace(image=argv[i], args=argv[i + 1 :], **values)
