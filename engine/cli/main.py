"""The `strata` command's entry point: a daemon client for `-H HOST run`, else the engine CLI.

The decision is made before anything heavy is imported, so that `strata -H HOST run`
starts as fast as a client should (see engine/cli/client.py).
"""

from __future__ import annotations

import os
import sys

_WITH_VALUE = {"--root", "--driver", "-s", "-o", "--storage-opt", "-H", "--host"}


def _split(argv: list[str]) -> tuple[str | None, int]:
    """The -H/--host value among the global options, and the index of the command word."""
    host, i = None, 0
    while i < len(argv) and argv[i].startswith("-"):
        word = argv[i]
        if word.startswith("--host="):
            host = word.split("=", 1)[1]
        elif word in ("-H", "--host") and i + 1 < len(argv):
            host = argv[i + 1]
        i += 2 if word in _WITH_VALUE else 1
    return host, i


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    host, command = _split(argv)
    host = host or os.environ.get("STRATA_HOST")
    if host and command < len(argv) and argv[command] == "run":
        from . import client

        return client.run(host, argv[command + 1 :])
    from . import app

    return app.main(argv)


if __name__ == "__main__":
    sys.exit(main())
