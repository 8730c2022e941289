"""The container subcommands of `strata`: argument parsing and the jobs they build."""

from __future__ import annotations

import argparse
import json
import sys

from .engine import Engine
from .errors import NoSuchContainer
from .job import Job

COMMANDS = ("create", "run", "start", "wait", "logs", "stop", "kill", "rm", "ps", "diff", "commit", "export")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, help_text in (("create", "create a container"), ("run", "create and start a container")):
        c = sub.add_parser(name, help=help_text)
        if name == "run":
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
    c = sub.add_parser("start", help="start containers")
    c.add_argument("containers", nargs="+", metavar="CONTAINER")
    c = sub.add_parser("wait", help="wait for containers to stop; print their exit codes")
    c.add_argument("containers", nargs="+", metavar="CONTAINER")
    c = sub.add_parser("logs", help="a container's output")
    c.add_argument("-f", "--follow", action="store_true")
    c.add_argument("container", metavar="CONTAINER")
    c = sub.add_parser("stop", help="SIGTERM, then SIGKILL after a timeout")
    c.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    c.add_argument("containers", nargs="+", metavar="CONTAINER")
    c = sub.add_parser("kill", help="signal containers")
    c.add_argument("-s", "--signal", default="KILL")
    c.add_argument("containers", nargs="+", metavar="CONTAINER")
    c = sub.add_parser("rm", help="remove containers")
    c.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    c.add_argument("containers", nargs="+", metavar="CONTAINER")
    c = sub.add_parser("ps", help="list containers")
    c.add_argument("-a", "--all", action="store_true")
    c.add_argument("-q", "--quiet", action="store_true")
    c.add_argument("--json", action="store_true")
    c = sub.add_parser("diff", help="the files a container changed")
    c.add_argument("container", metavar="CONTAINER")
    c = sub.add_parser("commit", help="make an image of a container's changes")
    c.add_argument("-m", "--message", default="")
    c.add_argument("-a", "--author", default="")
    c.add_argument("container", metavar="CONTAINER")
    c.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    c = sub.add_parser("export", help="a container's filesystem as a tar")
    c.add_argument("-o", "--output", default=None, help="tar file (default: stdout)")
    c.add_argument("container", metavar="CONTAINER")


def job_for(engine: Engine, ns: argparse.Namespace) -> tuple[Job, str | None] | None:
    """The job of a container command (and the file its stdout goes to), None for others."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    cmd = ns.command
    if cmd == "inspect" and _all_containers(engine, ns.images):
        return engine.job("container_inspect", *ns.images, stdout=out, stderr=err), None
    if cmd not in COMMANDS:
        return None
    if cmd in ("create", "run"):
        env = {"env": json.dumps(ns.env), "workdir": ns.workdir, "user": ns.user, "name": ns.name,
               "hostname": ns.hostname, "network": ns.network, "rm": str(ns.rm),
               "detach": str(getattr(ns, "detach", False))}  # fmt: skip
        return engine.job(cmd, ns.image, *ns.args, env=env, stdout=out, stderr=err), None
    if cmd in ("start", "wait"):
        return engine.job(cmd, *ns.containers, stdout=out, stderr=err), None
    if cmd == "logs":
        return engine.job("logs", ns.container, env={"follow": str(ns.follow)}, stdout=out, stderr=err), None
    if cmd == "stop":
        return engine.job("stop", *ns.containers, env={"time": str(ns.time)}, stdout=out, stderr=err), None
    if cmd == "kill":
        return engine.job("kill", *ns.containers, env={"signal": ns.signal}, stdout=out, stderr=err), None
    if cmd == "rm":
        return engine.job("rm", *ns.containers, env={"force": str(ns.force)}, stdout=out, stderr=err), None
    if cmd == "ps":
        env = {"all": str(ns.all), "quiet": str(ns.quiet), "json": str(ns.json)}
        return engine.job("ps", env=env, stdout=out, stderr=err), None
    if cmd == "diff":
        return engine.job("diff", ns.container, stdout=out, stderr=err), None
    if cmd == "commit":
        args = [ns.container] + ([ns.repository] if ns.repository else [])
        env = {"message": ns.message, "author": ns.author}
        return engine.job("commit", *args, env=env, stdout=out, stderr=err), None
    return engine.job("export", ns.container, stdout=out, stderr=err), ns.output


def _all_containers(engine: Engine, refs: list[str]) -> bool:
    """`inspect` names containers first, as Docker's does; images otherwise."""
    for ref in refs:
        try:
            engine.containers.get(ref)
        except NoSuchContainer:
            return False
    return True
