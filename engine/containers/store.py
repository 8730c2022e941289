"""The container store: create, start, wait, stop, remove, diff, commit, export.

A container is a read-write driver layer over its image's top layer, a record
(`engine.container.Container`) and, while it runs, a process started by an execdriver
in the mounted layer. The engine that starts a container holds a driver reference
(`get`) on its layer until it sees the process end. An engine can die (kill -9) or end
while its containers run; the monitors keep them going and record their exit status, so
a later engine on the same root `restore`s: containers whose process ended are marked
exited with that status and the mount the dead engine left is released.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import IO, Any

from graphdrivers import Driver, mountutil, naivediff
from graphdrivers.archive import export_paths
from graphdrivers.errors import DriverError, LayerNotFound

from .. import execdrivers
from ..errors import Conflict, ContainerStartError, EngineError, NoSuchContainer, NoSuchImage, NoSuchVolume, UsageError
from ..events import Events
from ..execdrivers import ExecDriver, ExitStatus, Handle, MonitorInfo, ProcessSpec
from ..execdrivers.base import ExecProcess
from ..execdrivers.cgroupfs import ContainerCgroups
from ..execdrivers.settings import Mount, Resources, Settings
from ..images import instructions
from ..images.graph import Graph, Image, LayerSource, NewImage
from ..images.graphdb import NAMES, GraphDB
from ..network import ports
from ..network.service import NULL_MODE, Networks
from ..reference import normalize_tag
from ..system import host as hostfacts
from ..system.host import DEFAULT_PATH
from . import args as containerargs
from . import command, etcfiles, logfile
from .exec import Execs
from .hostconfig import HostConfig, signal_name, signal_number
from .record import CREATED, EXITED, RUNNING, Container, iso, now_iso
from .restart import parse_policy
from .stdio import ProcessIO
from .volumes import Volumes

log = logging.getLogger(__name__)

MOUNT_POINTS = ("proc", "dev", "sys")
ETC_FILES = tuple(f"etc/{name}" for name in etcfiles.FILES)  # bound over from the container's directory
DEFAULT_STOP_TIMEOUT = 10.0
STATUS_START_FAILED = 126  # Docker's exit code when the container's setup fails (unknown user, group...)
# update's limits (HostConfig names) that the process's spec carries (Resources fields);
# NanoCpus is carried as the CpuQuota and CpuPeriod update sets beside it
UPDATED_RESOURCES = {"Memory": "memory", "MemorySwap": "memory_swap", "MemoryReservation": "memory_reservation",
                     "CpuShares": "cpu_shares",
                     "CpuPeriod": "cpu_period", "CpuQuota": "cpu_quota", "CpusetCpus": "cpuset_cpus",
                     "PidsLimit": "pids_limit"}


class Containers:
    """The containers of one engine root: records in the GraphDB, layers in the driver,
    images from the Graph, processes through the execdriver `exec.driver` chooses."""

    def __init__(self, root: str, driver: Driver, db: GraphDB, graph: Graph, exec_options: dict[str, str],
                 network: Networks, events: Events) -> None:
        self.root = root
        self.network = network
        self.events = events
        self.driver = driver
        self.db = db
        self.graph = graph
        self.dir = os.path.join(root, "containers")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.exec_options = dict(exec_options)
        self.exec_name = self.exec_options.pop("exec.driver", None) or execdrivers.DEFAULT
        self._execdrivers: dict[tuple[str, tuple], ExecDriver] = {}
        self.execdriver = self._execdriver(self.exec_name, self.exec_options)  # fails early if unusable
        self._lock = threading.RLock()
        self._handles: dict[str, Handle] = {}
        self._mounted: set[str] = set()  # containers whose layer this engine holds a `get` on
        self.volumes = Volumes(root)
        network.files_changed = self._rewrite_etc
        self._io: dict[str, ProcessIO] = {}  # stdin and terminal of the containers this engine started
        self.execs = Execs(self)
        self.restore()

    def _execdriver(self, name: str, options: dict[str, str]) -> ExecDriver:
        key = (name, tuple(sorted(options.items())))
        if key not in self._execdrivers:
            root = os.path.join(self.root, "execdriver", name)
            self._execdrivers[key] = execdrivers.get_execdriver(name, root, options)
        return self._execdrivers[key]

    def event(self, c: Container, action: str, **attributes: str) -> None:
        """Emit a container event, with the attributes Docker gives every one (image, name)."""
        self.events.emit("container", action, c.id, image=c.image_ref, name=c.name, **attributes)

    # -- lookup ------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return self.db.entities("container")

    def get(self, ref: str) -> Container:
        """A container by full id, name (with or without the leading /) or unique id prefix."""
        ids = self.ids()
        if ref in ids:
            return self._load(ref)
        found = self.db.resolve_name(ref.lstrip("/"))
        if found is not None:
            return self._load(found)
        matches = [i for i in ids if ref and i.startswith(ref)]
        if len(matches) > 1:
            raise Conflict(f"container id prefix {ref!r} is ambiguous ({len(matches)} containers match)")
        if not matches:
            raise NoSuchContainer(ref)
        return self._load(matches[0])

    def _load(self, container_id: str) -> Container:
        try:
            return Container.load(self.dir, container_id)
        except FileNotFoundError:
            raise NoSuchContainer(container_id) from None

    def list(self, include_stopped: bool = False) -> list[Container]:
        found = []
        for container_id in self.ids():
            with contextlib.suppress(NoSuchContainer):
                c = self.refresh(self._load(container_id))
                if include_stopped or c.state.running:
                    found.append(c)
        return sorted(found, key=lambda c: c.created, reverse=True)

    # -- create ------------------------------------------------------------------------

    def create(
        self,
        image_ref: str,
        cmd: list[str],
        *,
        entrypoint: list[str] | None = None,
        env: list[str] | None = None,
        workdir: str = "",
        user: str = "",
        name: str = "",
        hostname: str = "",
        network: str = "default",
        publish: list[str] | None = None,
        publish_all: bool = False,
        expose: list[str] | None = None,
        aliases: list[str] | None = None,
        ip: str = "",
        auto_remove: bool = False,
        keep_mounted: bool = False,
        host: HostConfig | None = None,
        tty: bool = False,
        open_stdin: bool = False,
        stdin_once: bool = False,
        console_size: list[int] | None = None,
        restart_policy: str = "no",
        platform: str = "",
    ) -> Container:
        """A new container (`host`: its settings, mounts, limits, labels... from hostconfig.parse);
        `entrypoint` replaces the image's (`[""]`: none), see command.resolve."""
        host = host or HostConfig(Settings())
        image = self.graph.get_image(image_ref)
        cfg = image.config.get("config") or {}
        if platform:
            _check_platform(image_ref, image.config, platform)
        entrypoint, cmd = command.resolve(cfg, entrypoint or [], cmd or [])
        restart_policy = parse_policy(restart_policy)
        if restart_policy != "no" and auto_remove:
            raise UsageError("conflicting options: a restart policy and --rm (auto-remove)")
        host.warnings.extend(_unmounted_image_volumes(cfg, host))
        network = self.network.resolve_mode(network)
        bindings = [b for spec in publish or [] for b in ports.parse_publish(spec)]
        exposed = {*(cfg.get("ExposedPorts") or {}), *(k for e in expose or [] for k in ports.parse_expose(e)),
                   *(b.key for b in bindings)}
        if (bindings or publish_all) and network in (NULL_MODE, "host"):
            raise UsageError(f"published ports (-p, -P) need a bridge network; this container's is {network}")
        merged_env = _merge_env(cfg.get("Env") or [DEFAULT_PATH], env or [])
        workdir = workdir or cfg.get("WorkingDir") or "/"
        if not workdir.startswith("/"):
            raise UsageError(f"the working directory must be an absolute path, got {workdir!r}")
        container_id = secrets.token_hex(32)
        problem = (name and containerargs.name_problem(name)) or (hostname and containerargs.hostname_problem(hostname))
        if problem:
            raise UsageError(problem)
        if not name:
            name = f"strata_{container_id[:12]}"
        c = Container(
            id=container_id,
            name=name,
            created=now_iso(),
            image=image.id,
            image_ref=image_ref,
            args=[*entrypoint, *cmd],
            entrypoint=entrypoint,
            cmd=cmd,
            env=merged_env,
            workdir=workdir,
            user=user or cfg.get("User") or "",
            hostname=hostname or container_id[:12],
            network=network,
            ports=[b.to_json() for b in bindings],
            publish_all=publish_all,
            exposed=sorted(exposed),
            auto_remove=auto_remove,
            tty=tty,
            open_stdin=open_stdin,
            stdin_once=stdin_once,
            console_size=[int(n) for n in console_size or []],
            restart_policy=restart_policy,
            layer=container_id,
            parent_layer=image.top_layer,
            execdriver=self.exec_name,
            exec_options=self.exec_options,
            settings=host.settings.to_json(),
            labels={**(cfg.get("Labels") or {}), **host.labels},  # as Docker merges them: the user's win
            stop_signal=host.stop_signal or _image_stop_signal(cfg),
            stop_timeout=host.stop_timeout,
            volumes=[list(v) for v in host.volumes],
            etc={"extra_hosts": [list(h) for h in host.extra_hosts], "dns": host.dns, "dns_search": host.dns_search,
                 "dns_options": host.dns_options},
        )
        with self.db.transaction():  # the name is taken or not, atomically
            if self.db.resolve_name(name) is not None:
                raise Conflict(f'the container name "/{name}" is already in use by container '
                               f"{self.db.resolve_name(name)}; remove it or choose another name")
            self.db.add_entity(container_id, "container")
            self.db.add_edge(NAMES, name, container_id)
            self.db.add_edge(container_id, "image", image.id)
        made: list[str] = []  # the named volumes this create made: a failed create removes them
        try:
            self._make_volumes([volume for volume, _dest, _ro in host.volumes], made)
            os.makedirs(c.paths(self.dir)[0], mode=0o700)
            self._write_etc(c)
            self._create_layers(c)
            c.save(self.dir)
            self.network.join(c.id, c.name, c.hostname, network, aliases, ip)
        except BaseException:
            self._discard(c)
            for volume in made:
                with contextlib.suppress(EngineError):  # another container took it up meanwhile
                    self.volumes.remove(volume, self.volume_users(volume))
            raise
        if not keep_mounted:
            self._unmount(c)
        self.event(c, "create")
        return c

    def _make_volumes(self, names: list[str], made: list[str]) -> None:
        """As Docker does, a named volume is made on first use; each one made is added to `made`."""
        for name in names:
            try:
                self.volumes.inspect(name)
            except NoSuchVolume:
                self.volumes.create(name)
                made.append(name)

    def _create_layers(self, c: Container) -> None:
        """The read-write layer; under it an init layer when the image lacks mount points.

        The execdrivers mount /proc, /dev and /sys over directories; creating them in the
        container's own layer would show them in `diff` and put them in `commit`s, so
        (like Docker's -init layer) they go into a layer between image and container.
        """
        self.driver.create_read_write(c.layer, c.parent_layer)
        path = self._mount(c)
        missing = [m for m in MOUNT_POINTS if not _is_dir(os.path.join(path, m))]
        missing += [f for f in ETC_FILES if not _is_file(os.path.join(path, f))]
        if not missing:
            return
        self._unmount(c)
        self.driver.remove(c.layer)
        c.init_layer = f"{c.id}-init"
        self.driver.create_read_write(c.init_layer, c.parent_layer)
        init_path = self.driver.get(c.init_layer)
        try:
            for m in missing:
                with contextlib.suppress(FileExistsError):
                    if m in ETC_FILES:
                        os.makedirs(os.path.dirname(os.path.join(init_path, m)), 0o755, exist_ok=True)
                        os.close(os.open(os.path.join(init_path, m), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                    else:
                        os.mkdir(os.path.join(init_path, m), 0o755)
        finally:
            self.driver.put(c.init_layer)
        c.parent_layer = c.init_layer
        self.driver.create_read_write(c.layer, c.init_layer)
        self._mount(c)

    def _discard(self, c: Container) -> None:
        """Undo a create that failed half way (also the last step of `remove`).

        The order makes a crash safe: the GraphDB entry goes first (one transaction: the
        container is then gone for every listing), its directory last; a directory without
        an entry is a removal that died half way, which `restore` finishes."""
        self._unmount(c)
        self.network.forget(c.id)
        self.db.remove_entity(c.id)
        self._remove_leftovers(c.id)

    def _remove_leftovers(self, container_id: str) -> None:
        """The layers and the directory of a container that has no GraphDB entry any more."""
        for layer in (container_id, f"{container_id}-init"):
            with contextlib.suppress(LayerNotFound):
                self.driver.remove(layer)
        shutil.rmtree(Container.dir_of(self.dir, container_id), ignore_errors=True)

    # -- mounts ------------------------------------------------------------------------

    def _mount(self, c: Container) -> str:
        with self._lock:
            path = self.driver.get(c.layer)
            if c.id in self._mounted:
                self.driver.put(c.layer)  # exactly one reference per container
            self._mounted.add(c.id)
            return path

    def _unmount(self, c: Container) -> None:
        with self._lock:
            if c.id in self._mounted:
                self._mounted.discard(c.id)
                self.driver.put(c.layer)
            elif c.rootfs and not c.state.running and (self.driver.is_disowned(c.layer)
                                                       or mountutil.is_mountpoint(c.rootfs)):
                # left mounted for a detached container by an engine that ended, or that died
                self.driver.adopt(c.layer, c.rootfs)
                self.driver.put(c.layer)

    def close(self) -> None:
        """Before the engine releases the driver: layers of containers that still run stay
        mounted past this process (a detached container keeps its rootfs); a later engine
        releases them when it sees the container's end."""
        with self._lock:
            for container_id in sorted(self._mounted):
                handle = self._handles.get(container_id)
                if handle is None or handle.exit_status() is not None:
                    continue
                try:
                    self.driver.disown(container_id)  # the layer id is the container id
                except DriverError as exc:
                    log.warning("container %s loses its filesystem: %s", container_id[:12], exc)
                    continue
                self._mounted.discard(container_id)

    # -- start, wait, signals ------------------------------------------------------------

    def start(self, c: Container, *, by_policy: bool = False) -> Handle:
        """Start the container's process; `by_policy`: a restart by its restart policy (the
        count goes on), else a user's start (the count and a manual stop are forgotten)."""
        c = self.refresh(c)
        if c.state.running:
            raise Conflict(f"container {c.short_id} is already running")
        if by_policy:
            c.restart_count += 1
        else:
            c.restart_count, c.manually_stopped = 0, False
        directory, log_path, exec_dir = c.paths(self.dir)
        path = self._mount(c)
        driver = self._execdriver(c.execdriver, c.exec_options)
        copier = None
        try:
            spec = self._process_spec(c, path)
            copier = logfile.start_copier(directory, c.id)
            handle = driver.start(c.id, spec, exec_dir, *logfile.fifo_paths(directory))
        except BaseException as exc:
            if copier is not None:
                copier.abandon()
            self.network.detach(c.id)
            self._unmount(c)
            if isinstance(exc, execdrivers.ExecError):
                # Ended before it began: waiters and attachers see it exit, as with an exec failure.
                c.state.status, c.state.exit_code, c.state.error = EXITED, STATUS_START_FAILED, str(exc)
                c.state.finished_at = now_iso()
                c.save(self.dir)
                if c.auto_remove:
                    self.remove(c, force=True)
                raise ContainerStartError(str(exc), 125) from None
            raise
        with self._lock:
            self._handles[c.id] = handle
            if handle.stdin is not None or handle.console is not None:
                self._io[c.id] = ProcessIO(c.id, handle.stdin, handle.console, log_path,
                                           resize=lambda rows, cols, h=handle: h.driver.resize(h, rows, cols))
            c.state.status = RUNNING
            c.state.pid = handle.info.pid or 0
            c.state.exit_code, c.state.error, c.state.finished_at = 0, "", ""
            c.state.started_at = now_iso()
            copier.started(handle.monitor_pid)
            c.monitor = {**handle.info.to_json(), "logger": copier.to_json()}
            c.rootfs = path
            c.save(self.dir)
        rest = {key: value for key, value in c.resources.items() if key not in UPDATED_RESOURCES}
        if rest and not handle.start_error:  # the limits a spec cannot carry, set once it runs
            with contextlib.suppress(EngineError):  # a process that already ended has no cgroups to limit
                self.cgroups(c).set_limits(rest)
        self.event(c, "start")
        if handle.start_error:  # known at once (native): report like Docker's start does
            status = self.wait(c)
            with self._lock:
                if os.path.isdir(c.paths(self.dir)[0]):  # (unless --rm removed it already)
                    c.state.error = handle.start_error
                    c.save(self.dir)
            raise ContainerStartError(handle.start_error, status.code)
        return handle

    def _settings(self, c: Container) -> Settings:
        """The container's settings plus the mounts the engine adds: /etc files, named volumes."""
        settings = Settings.from_json(c.settings)
        d = c.paths(self.dir)[0]
        extra = [Mount("/" + f, "bind", os.path.join(d, os.path.basename(f)), ("rbind", "rprivate"))
                 for f in ETC_FILES]
        for name, dest, read_only in c.volumes:
            path = self.volumes.mountpoint(name)
            if not os.path.isdir(path):
                raise Conflict(f"volume {name!r} of container {c.short_id} was removed")
            extra.append(Mount(dest, "bind", path, ("rbind", "rprivate", *(("ro",) if read_only else ()))))
        return replace(settings, mounts=(*extra, *settings.mounts),
                       resources=_with_updates(settings.resources, c.resources))

    def _write_etc(self, c: Container) -> None:
        """The container's /etc files (etcfiles is their one writer): its hostname, --add-host
        and --dns*, and on bridge networks its address and its running peers' names."""
        own, peers = self.network.host_entries(c.id, c.network)
        hc = HostConfig(Settings(), extra_hosts=[(h, a) for h, a in c.etc.get("extra_hosts", [])],
                        dns=c.etc.get("dns", []), dns_search=c.etc.get("dns_search", []),
                        dns_options=c.etc.get("dns_options", []))
        etcfiles.write(c.paths(self.dir)[0], etcfiles.contents(c.hostname, c.settings.get("domainname", ""), c.network,
                                                              hc, own, peers))

    def _rewrite_etc(self, container_id: str) -> None:
        """The networkdriver's report that a container's addresses or peers changed."""
        try:
            c = Container.load(self.dir, container_id)
        except FileNotFoundError:
            return  # removed meanwhile: nothing to rewrite
        self._write_etc(c)

    def volume_users(self, name: str) -> list[str]:
        """The containers (short ids) that name the volume `name`."""
        return [c.short_id for c in self.list(include_stopped=True) if any(v[0] == name for v in c.volumes)]

    def _process_spec(self, c: Container, path: str) -> ProcessSpec:
        """What the execdriver runs; a bridged container's network is set up here."""
        spec = ProcessSpec(path, c.args, c.env, c.workdir, c.user, c.hostname, c.network,
                           tty=c.tty, open_stdin=c.open_stdin, settings=self._settings(c),
                           console_size=(c.console_size[0], c.console_size[1]) if c.console_size else None)
        wanted = c.port_bindings()
        if c.publish_all:
            bound = {b.key for b in wanted}
            wanted += [ports.PortBinding(int(k.split("/")[0]), k.split("/")[1]) for k in c.exposed if k not in bound]
        attachment = self.network.attach(c.id, c.network, wanted)
        if attachment is not None:
            spec.network, spec.netns_path = "netns", attachment.netns_path
        return spec

    def handle(self, c: Container) -> Handle | None:
        """The running process of `c` (re-attached after an engine restart), or None; waiting on
        it does not record the end, which `wait`/`refresh` do."""
        with self._lock:
            handle = self._handles.get(c.id)
            if handle is None and c.state.running and c.monitor is not None:
                driver = self._execdriver(c.execdriver, c.exec_options)
                handle = driver.attach(c.id, c.paths(self.dir)[2], MonitorInfo.from_json(c.monitor))
                self._handles[c.id] = handle
            return handle

    def process_io(self, c: Container) -> ProcessIO | None:
        """The stdin and terminal of `c`'s process, if this engine started it with either."""
        with self._lock:
            return self._io.get(c.id)

    def refresh(self, c: Container) -> Container:
        """`c` with its state brought up to date (a process that ended is marked exited)."""
        if not c.state.running:
            return c
        handle = self.handle(c)
        status = handle.exit_status() if handle is not None else None
        if handle is None or status is not None:
            self._finish(c, status)
        return c

    def wait(self, c: Container, timeout: float | None = None) -> ExitStatus:
        """Block until the container's process ends; its exit status (stored if it had ended)."""
        if c.state.running:
            handle = self.handle(c)
            status = handle.wait(timeout) if handle is not None else None
            if status is None and handle is not None:
                raise EngineError(f"container {c.short_id} still runs after {timeout}s")
            self._finish(c, status)
        return ExitStatus(c.state.exit_code, 0.0, c.state.error)

    def _finish(self, c: Container, status: ExitStatus | None) -> None:
        """Record the end of the process and release the layer's mount; idempotent. Its log
        is complete first: whoever sees the end may read the log once more and stop."""
        logfile.wait_written(c.monitor)
        with self._lock:
            fresh = self._load(c.id)
            if fresh.state.status != RUNNING:
                c.state = fresh.state
                return
            vars(c).update(vars(fresh))  # the record as it is now (a stop, a rename may have changed it)
            if status is None:
                status = ExitStatus(execdrivers.base.STATUS_LOST, time.time(), "the container's monitor is gone")
            c.state.status = EXITED
            c.state.exit_code = status.code
            c.state.error = status.error
            c.state.finished_at = iso(status.finished_at or time.time())
            c.state.pid = 0
            c.state.paused = False
            c.monitor = None
            self._handles.pop(c.id, None)
            stdio = self._io.pop(c.id, None)
            if stdio is not None:
                stdio.close()
            self._unmount(c)
            c.rootfs = None
            self._execdriver(c.execdriver, c.exec_options).release(c.id, c.paths(self.dir)[2])
            self.network.detach(c.id)
            c.save(self.dir)
        self.event(c, "die", exitCode=str(c.state.exit_code))
        if c.auto_remove:
            self.remove(c, force=True)

    def exec_in(self, c: Container, spec: ProcessSpec) -> ExecProcess:
        """Start `spec` in the running container `c` (its rootfs and namespaces)."""
        c = self.refresh(c)
        handle = self.handle(c)
        if not c.state.running or handle is None or not c.rootfs:
            raise Conflict(f"container {c.short_id} is not running")
        spec.rootfs = c.rootfs
        # the process joins the container's namespaces; of its settings it takes the process
        # section (capabilities, rlimits, no_new_privs, user), so the spec's network stays "none";
        # as Docker's, an exec runs without the container's --init
        spec.settings = replace(Settings.from_json(c.settings), init="")
        return self._execdriver(c.execdriver, c.exec_options).exec(handle, spec)

    def kill(self, c: Container, sig: int = signal.SIGKILL) -> None:
        c = self.refresh(c)
        handle = self.handle(c)
        if not c.state.running or handle is None:
            raise Conflict(f"container {c.short_id} is not running")
        self._stopped_by_user(c)  # as Docker's kill: no restart policy undoes it
        try:
            handle.kill(sig)
        except execdrivers.ExecError as exc:
            raise Conflict(str(exc)) from None
        self.event(c, "kill", signal=str(sig))
        if c.state.paused and sig in (signal.SIGKILL, signal.SIGTERM):
            self.unpause(c)  # as Docker does: a frozen process cannot act on the signal

    # -- cgroups: pause, limits, statistics ------------------------------------------------

    def cgroups(self, c: Container) -> ContainerCgroups:
        """The cgroups of the running container `c`."""
        c = self.refresh(c)
        handle = self.handle(c)
        pid = handle.pid() if handle is not None and c.state.running else None
        if pid is None:
            raise Conflict(f"container {c.short_id} is not running")
        return ContainerCgroups.of_process(pid)

    def pause(self, c: Container) -> None:
        """Freeze every process of the container (the freezer cgroup)."""
        groups = self.cgroups(c)
        with self._lock:
            c = self._load(c.id)
            if c.state.paused:
                raise Conflict(f"container {c.short_id} is already paused")
            groups.freeze()
            c.state.paused = True
            c.save(self.dir)
        self.event(c, "pause")

    def unpause(self, c: Container) -> None:
        groups = self.cgroups(c)
        with self._lock:
            c = self._load(c.id)
            if not c.state.paused:
                raise Conflict(f"container {c.short_id} is not paused")
            groups.thaw()
            c.state.paused = False
            c.save(self.dir)
        self.event(c, "unpause")

    def update(self, c: Container, limits: dict[str, int | str], policy: str | None) -> None:
        """Record new cgroup limits (applied at every start) and/or a restart policy."""
        with self._lock:
            c = self._load(c.id)
            c.resources.update(limits)
            if policy is not None:
                c.restart_policy = policy
            c.save(self.dir)
        self.event(c, "update")

    def rename(self, c: Container, new_name: str) -> None:
        problem = containerargs.name_problem(new_name)
        if problem:
            raise UsageError(problem)
        with self._lock, self.db.transaction():
            c = self._load(c.id)
            owner = self.db.resolve_name(new_name)
            if owner is not None:
                raise Conflict(f'the container name "/{new_name}" is already in use by container {owner}')
            self.db.remove_edge(NAMES, c.name)
            self.db.add_edge(NAMES, new_name, c.id)
            old_name, c.name = c.name, new_name
            c.save(self.dir)
            self.network.rename(c.id, new_name)  # peers' /etc/hosts name it anew
        self.event(c, "rename", oldName="/" + old_name)

    def _stopped_by_user(self, c: Container) -> None:
        """Before the signal: a restart policy must not undo a user's stop (or rm -f)."""
        with self._lock:
            c.manually_stopped = True
            c.save(self.dir)

    def stop(self, c: Container, timeout: float | None = None, *, by_user: bool = True) -> ExitStatus:
        """The stop signal (SIGTERM unless --stop-signal), then SIGKILL if it still runs after
        `timeout` seconds (default: its --stop-timeout, else 10) (docker stop).
        `by_user`: a user's stop, which no restart policy undoes (a daemon's shutdown is not)."""
        c = self.refresh(c)
        if not c.state.running:
            return ExitStatus(c.state.exit_code, 0.0, c.state.error)
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT if c.stop_timeout is None else float(c.stop_timeout)
        handle = self.handle(c)
        assert handle is not None
        log.info("stopping container %s: %s, then SIGKILL after %gs", c.short_id, c.stop_signal or "SIGTERM", timeout)
        if by_user:
            self._stopped_by_user(c)
        with contextlib.suppress(execdrivers.ExecError):
            handle.kill(signal_number(c.stop_signal or "SIGTERM", "stop signal"))
        if c.state.paused:
            with contextlib.suppress(EngineError):
                self.unpause(c)
        if handle.wait(timeout) is None:
            with contextlib.suppress(execdrivers.ExecError):
                handle.kill(signal.SIGKILL)
        status = self.wait(c)
        self.event(c, "stop")
        return status

    # -- remove ------------------------------------------------------------------------

    def remove(self, c: Container, force: bool = False) -> None:
        c = self.refresh(c)
        if c.state.running:
            if not force:
                raise Conflict(f"you cannot remove a running container {c.short_id}: stop it first or use -f")
            self._stopped_by_user(c)
            with contextlib.suppress(Conflict):
                self.kill(c, signal.SIGKILL)
            self.wait(c)
            if not os.path.isdir(c.paths(self.dir)[0]):
                return  # auto-removed when it finished
        with self._lock:
            self._execdriver(c.execdriver, c.exec_options).release(c.id, c.paths(self.dir)[2])
            self._discard(c)
        self.execs.forget_container(c.id)
        self.event(c, "destroy")

    # -- restore after an engine restart -----------------------------------------------

    def restore(self) -> None:
        """Mark containers whose process ended while no engine watched; release their mounts;
        finish creates and removals a dead engine left half done."""
        ids = self.ids()
        for orphan in sorted(set(os.listdir(self.dir)) - set(ids)):
            log.warning("finishing the removal of container %s", orphan[:12])
            with contextlib.suppress(NoSuchContainer):
                self._unmount(self._load(orphan))  # a mount the dead engine left
            self._remove_leftovers(orphan)
        for container_id in ids:
            try:
                c = self._load(container_id)
            except NoSuchContainer:  # a create that died before its record was written
                log.warning("removing container %s: its create never finished", container_id[:12])
                self.db.remove_entity(container_id)
                self._remove_leftovers(container_id)
                continue
            if c.state.running:
                self.refresh(c)
            elif c.rootfs:
                self._unmount(c)
        running = {c.id for c in self.list()}
        self.network.repair(running)

    # -- filesystem views --------------------------------------------------------------

    def changes(self, c: Container) -> list:
        return self.driver.changes(c.layer, c.parent_layer)

    def sizes(self, c: Container) -> tuple[int, int]:
        """`docker ps -s`: the bytes of the files the container changed (SizeRw), and of its
        whole filesystem, the image's included (SizeRootFs)."""
        changed = self.driver.diff_size(c.layer, c.parent_layer)
        return changed, changed + self.graph.get_image(c.image).size

    def export(self, c: Container) -> IO[bytes]:
        """A tar stream of the container's whole filesystem; close it to release the mount."""
        path = self.driver.get(c.layer)
        try:
            everything = naivediff.changes(path, None)
        except BaseException:
            self.driver.put(c.layer)
            raise
        return export_paths(path, everything, on_close=lambda: self.driver.put(c.layer))

    def commit(self, c: Container, tag: str = "", *, message: str = "", author: str = "",
               changes: list[str] | None = None, pause: bool = True) -> str:
        """The container's changes as a new image layer over its image; returns the image id.
        `changes`: Dockerfile instructions applied to the new image's config (images.instructions);
        `pause`: freeze a running container while its changes are read, so the layer is one moment's."""
        tags = [normalize_tag(tag)] if tag else []
        graph = self.graph
        image = graph.get_image(c.image)
        config = instructions.apply(container_config(image.config.get("config") or {}, c), changes or [])
        c = self.refresh(c)
        frozen = pause and c.state.running and not c.state.paused
        if frozen:
            self.pause(c)
        try:
            with self._spooled_diff(c) as (path, diff_id):
                return self._commit_layer(c, image, path, diff_id, tags,
                                          _committed_config(image.config, c, config, diff_id, message, author))
        finally:
            if frozen:
                with contextlib.suppress(Conflict):  # it ended meanwhile: nothing is frozen any more
                    self.unpause(c)

    def _commit_layer(self, c: Container, image: Image, path: str, diff_id: str, tags: list[str],
                      config: dict[str, Any]) -> str:
        """The spooled diff at `path` as a new layer over `image`, and the image of `config` on it."""
        graph = self.graph
        source = LayerSource(name=f"container {c.short_id}", open=lambda: open(path, "rb"),
                             size=os.path.getsize(path))
        with graph.lease() as lease:
            parent = None
            for layer in image.layers:  # pin the image's layers for the commit
                graph.ensure_layer(lease, parent, layer.diff_id, _NO_SOURCE)
                parent = layer.chain_id
            new_layer, _ = graph.ensure_layer(lease, image.top_layer, diff_id, source)
            config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
            [(image_id, _)] = graph.commit(lease, [NewImage(config_bytes, [*image.layers, new_layer], tags,
                                                            image.id)])
        return image_id

    @contextlib.contextmanager
    def _spooled_diff(self, c: Container) -> Iterator[tuple[str, str]]:
        tmpdir = os.path.join(self.root, "tmp")
        os.makedirs(tmpdir, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=tmpdir, prefix="commit-") as spool:
            stream = self.driver.diff(c.layer, c.parent_layer)
            try:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    spool.write(chunk)
            finally:
                stream.close()
            spool.flush()
            yield spool.name, "sha256:" + digest.hexdigest()

    def log_path(self, c: Container) -> str:
        return c.paths(self.dir)[1]

    def inspect(self, c: Container) -> dict[str, Any]:
        c = self.refresh(c)
        if not os.path.isdir(c.paths(self.dir)[0]):
            raise NoSuchContainer(c.id)
        data = c.inspect(self.driver.name, _safe_metadata(self.driver, c.layer), self.log_path(c))
        for m in data["Mounts"]:
            if m["Type"] == "volume":
                m["Source"] = self.volumes.mountpoint(m["Name"])
        data["NetworkSettings"] = self.network.settings(c.id, c.network, c.exposed)
        d = c.paths(self.dir)[0]
        data.update({"ResolvConfPath": os.path.join(d, "resolv.conf"), "HostnamePath": os.path.join(d, "hostname"),
                     "HostsPath": os.path.join(d, "hosts")})
        if c.state.running and not data["State"]["Pid"]:
            handle = self.handle(c)
            with contextlib.suppress(execdrivers.ExecError):
                data["State"]["Pid"] = (handle.pid() if handle else None) or 0
        return data


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _safe_metadata(driver: Any, layer: str) -> dict[str, str]:
    try:
        return dict(driver.metadata(layer))
    except Exception:  # inspect must not fail because a driver cannot describe a layer
        return {}


def _with_updates(resources: Resources, updated: dict[str, int]) -> Resources:
    """The create-time limits with those `update` set since (Docker's HostConfig names; 0
    keeps a limit, -1 lifts it), so the process starts under them rather than being limited
    after it began."""
    changes: dict[str, int] = {}
    for key, value in updated.items():
        name = UPDATED_RESOURCES.get(key)
        if name and value:
            changes[name] = value if value != -1 or name == "memory_swap" else 0  # swap -1: unlimited swap
    return replace(resources, **changes)


def _merge_env(base: list[str], override: list[str]) -> list[str]:
    merged: dict[str, str] = {}
    for item in [*base, *override]:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"environment entries must be KEY=VALUE, got {item!r}")
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def _no_source() -> Any:
    raise EngineError("an image layer the commit builds on is missing from the driver")


_NO_SOURCE = LayerSource(name="existing layer", open=_no_source)


def container_config(image_config: dict[str, Any], c: Container) -> dict[str, Any]:
    """The container's Config as a commit starts from it: its image's, with what the container runs
    and carries (command, environment, user, labels, ports, stop signal) in place of the image's."""
    config = json.loads(json.dumps(image_config))
    config.update({"Cmd": c.cmd or None, "Entrypoint": c.entrypoint or None, "Env": c.env, "WorkingDir": c.workdir,
                   "User": c.user, "Hostname": c.hostname, "Labels": c.labels or None,
                   "ExposedPorts": {key: {} for key in c.exposed} or None})
    if c.stop_signal:
        config["StopSignal"] = c.stop_signal
    return config


def _committed_config(base: dict[str, Any], c: Container, inner: dict[str, Any], diff_id: str, message: str,
                      author: str) -> dict[str, Any]:
    """The image config of a commit: the base image's, with `inner` as its `config` and the new layer."""
    config = json.loads(json.dumps(base))
    created = now_iso()
    config["config"] = inner
    config["container"] = c.id
    config["container_config"] = {"Cmd": c.args, "Image": c.image_ref}
    config["created"] = created
    if author:
        config["author"] = author
    entry: dict[str, Any] = {"created": created, "created_by": " ".join(c.args)}
    if message:
        entry["comment"] = message
    if author:
        entry["author"] = author
    config["history"] = [*config.get("history", []), entry]
    rootfs = dict(config.get("rootfs") or {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), diff_id]
    config["rootfs"] = rootfs
    return config


__all__ = ["CREATED", "EXITED", "RUNNING", "Containers"]


def _check_platform(ref: str, config: dict[str, Any], wanted: str) -> None:
    """docker create --platform: the local image must be for that platform (else, as dockerd
    answers, there is no such image: the client may pull the one asked for)."""
    want = hostfacts.parse_platform(wanted)
    have = (config.get("os") or "linux", config.get("architecture") or hostfacts.arch(), config.get("variant") or "")
    if want[:2] != have[:2] or (want[2] and want[2] != have[2]):
        raise NoSuchImage(f"{ref} (the image is for {'/'.join(p for p in have if p)}, not the platform asked for: "
                          f"{'/'.join(p for p in want if p)})")


def _image_stop_signal(cfg: dict[str, Any]) -> str:
    """The image's STOPSIGNAL; one no signal parser takes is SIGTERM, as Docker's StopSignal() does."""
    text = cfg.get("StopSignal") or ""
    try:
        return signal_name(text, "image STOPSIGNAL") if text else ""
    except UsageError:
        log.warning("the image's STOPSIGNAL %r is not a signal: the container stops with SIGTERM", text)
        return ""


def _unmounted_image_volumes(cfg: dict, host: HostConfig) -> list[str]:
    """Docker gives each VOLUME an image declares an anonymous volume; strata makes none, so
    a declared path that no mount covers is said, not silently left in the container layer."""
    mounted = {dest.rstrip("/") or "/" for dest in [*(m.destination for m in host.settings.mounts),
                                                    *(v[1] for v in host.volumes)]}
    missing = sorted(v for v in cfg.get("Volumes") or {} if (v.rstrip("/") or "/") not in mounted)
    if not missing:
        return []
    return [f"the image declares VOLUME {', '.join(missing)}: strata creates no anonymous volumes, so what is "
            "written there stays in the container's layer (mount a named volume there with -v NAME:PATH)"]
