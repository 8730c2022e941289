"""/_ping, /version, /info, /system/df."""

from __future__ import annotations

import hashlib
import os
import platform

from ... import __version__
from ...engine import Engine
from ...system import host
from ..http import Reply, Request, Router

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def add_routes(router: Router, engine: Engine) -> None:
    @router.route("GET", "/_ping")
    def ping(req: Request) -> Reply:
        return Reply(200, b"OK", content_type="text/plain; charset=utf-8",
                     headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"})

    @router.route("GET", "/version")
    def version(req: Request) -> Reply:
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": _arch(),
                   "KernelVersion": platform.release(), "GitCommit": "", "GoVersion": platform.python_version()}
        return Reply(200, {
            "Platform": {"Name": "strata"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__,
            **details,
            "BuildTime": "",
        })

    @router.route("GET", "/info")
    def info(req: Request) -> Reply:
        store = engine.containers
        containers = store.list(include_stopped=True)
        running = sum(1 for c in containers if c.state.running)
        execdriver = store.execdriver
        return Reply(200, {
            "ID": hashlib.sha256(engine.root.encode()).hexdigest()[:32],
            "Containers": len(containers),
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": len(containers) - running,
            "Images": len(engine.graph.images()),
            "Driver": engine.driver.name,
            "DriverStatus": [list(row) for row in engine.driver.status()],
            "ExecutionDriver": store.exec_name,
            "ExecutionDriverStatus": [list(row) for row in execdriver.status()],
            "DockerRootDir": engine.root,
            "Plugins": {"Volume": [], "Network": ["none", "host"], "Authorization": None, "Log": ["json-file"]},
            "MemoryLimit": False, "SwapLimit": False, "KernelMemory": False, "CpuCfsPeriod": False,
            "CpuCfsQuota": False, "CPUShares": False, "CPUSet": False, "PidsLimit": False, "IPv4Forwarding": False,
            "BridgeNfIptables": False, "BridgeNfIp6tables": False, "Debug": False,
            "NFd": len(os.listdir("/proc/self/fd")),
            "OomKillDisable": False, "NGoroutines": 0, "SystemTime": "", "LoggingDriver": "json-file",
            "CgroupDriver": "none", "CgroupVersion": "1", "NEventsListener": 0,
            **host.facts(), "OSVersion": "", "OSType": "linux",
            "Architecture": platform.machine(), "IndexServerAddress": "", "RegistryConfig": None,
            "GenericResources": None, "HttpProxy": "",
            "HttpsProxy": "", "NoProxy": "", "Name": platform.node(), "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": __version__, "Runtimes": {}, "DefaultRuntime": store.exec_name,
            "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False, "NodeID": "", "NodeAddr": "",
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": False, "Isolation": "", "InitBinary": "", "SecurityOptions": [],
            "Warnings": [],
        })

    @router.route("GET", "/system/df")
    def system_df(req: Request) -> Reply:
        images = engine.graph.images()
        layers_size = sum(layer.size for layer in engine.graph.layers())
        containers = engine.containers.list(include_stopped=True)
        return Reply(200, {
            "LayersSize": layers_size,
            "Images": [{"Id": i.id, "ParentId": i.parent or "", "RepoTags": i.tags, "RepoDigests": [],
                        "Created": 0, "Size": i.size, "SharedSize": -1, "VirtualSize": i.size, "Labels": {},
                        "Containers": sum(1 for c in containers if c.image == i.id)} for i in images],
            "Containers": [{"Id": c.id, "Names": ["/" + c.name], "Image": c.image_ref, "ImageID": c.image,
                            "Command": " ".join(c.args), "Created": 0, "State": c.state.status, "Status": "",
                            "SizeRw": 0, "SizeRootFs": 0, "Labels": {}, "Mounts": []} for c in containers],
            "Volumes": [],
            "BuildCache": [],
        })
