"""The options of `create` and `run`, shared by the engine's CLI and the daemon client.

Kept free of engine imports: the client (`strata -H HOST run`) must start in a few
milliseconds, so it parses the same options without loading the engine.
"""

from __future__ import annotations

import argparse


def add_create_arguments(c: argparse.ArgumentParser, *, run: bool) -> None:
    if run:
        c.add_argument("-d", "--detach", action="store_true", help="print the id and leave it running")
    c.add_argument("--rm", action="store_true", help="remove the container when it exits")
    c.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("-w", "--workdir", default="")
    c.add_argument("-u", "--user", default="", metavar="USER[:GROUP]")
    c.add_argument("--name", default="")
    c.add_argument("--hostname", default="")
    c.add_argument("--net", "--network", dest="network", default="none", choices=("none", "host"))
    c.add_argument("image", metavar="IMAGE")
    c.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND")
