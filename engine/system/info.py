"""The system jobs: `info` (docker info) and `df` (docker system df).

One implementation each: the CLI prints their text, the API's /info and /system/df return
their JSON, so the CLI and a docker client always agree on what the engine reports.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
from collections.abc import Callable
from typing import Any

from graphdrivers.errors import DriverError

from .. import __version__
from ..containers.jobs import status_text
from ..images.view import size, table, unix_time
from ..job import Job
from ..jobspec import JSON, JobTable
from . import host

jobs = JobTable()

API_VERSION = "1.41"  # the Docker Engine API version strata serves
MIN_API_VERSION = "1.24"


def version_facts() -> dict[str, Any]:
    """docker version's server fields (GoVersion carries the Python version strata runs on)."""
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
               "Arch": host.arch(),
               "KernelVersion": platform.release(), "GitCommit": "", "GoVersion": platform.python_version()}
    return {"Platform": {"Name": "strata"}, "Components": [{"Name": "Engine", "Version": __version__,
                                                             "Details": details}],
            "Version": __version__, **details, "BuildTime": ""}


@jobs.job("version", options={"json": JSON}, help="strata's version and the API version it serves")
def version(job: Job) -> int:
    """`version` (json: the API's /version JSON)."""
    return _write(job, version_facts(), lambda v: (
        f"Version:         {v['Version']}\nAPI version:     {v['ApiVersion']} (minimum version {v['MinAPIVersion']})\n"
        f"Python version:  {v['GoVersion']}\nOS/Arch:         {v['Os']}/{v['Arch']}\n"
        f"Kernel version:  {v['KernelVersion']}\n"))


def facts(job: Job) -> dict[str, Any]:
    """docker info's fields, with strata's own (Layers, ExecutionDriver) among them."""
    engine = job.engine
    containers = engine.containers.list(include_stopped=True)
    running = sum(1 for c in containers if c.state.running)
    exec_name = engine.containers.exec_name
    return {
        "ID": hashlib.sha256(engine.root.encode()).hexdigest()[:32],
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": len(containers) - running,
        "Images": len(engine.graph.images()),
        "Layers": len(engine.graph.layers()),
        "Driver": engine.driver.name,
        "DriverStatus": [list(row) for row in engine.driver.status()],
        "ExecutionDriver": exec_name,
        "ExecutionDriverStatus": [list(row) for row in engine.containers.execdriver.status()],
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
        "ServerVersion": __version__, "Runtimes": {}, "DefaultRuntime": exec_name,
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False, "NodeID": "", "NodeAddr": "",
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False, "Isolation": "", "InitBinary": "", "SecurityOptions": [],
        "Warnings": [],
    }


def _write(job: Job, data: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> int:
    """The JSON the API returns (option json), else the text the CLI prints."""
    if job.options["json"]:
        job.write_json(data)
    else:
        job.write(text(data))
    return 0


@jobs.job("info", options={"json": JSON}, help="engine and storage driver facts")
def info(job: Job) -> int:
    """`info`: counts, the storage driver and its status rows, the root (json: docker info's JSON)."""
    return _write(job, facts(job), info_text)


def info_text(data: dict[str, Any]) -> str:
    lines = [f"Containers: {data['Containers']}", f"Images: {data['Images']}", f"Layers: {data['Layers']}",
             f"Storage Driver: {data['Driver']}"]
    lines += [f" {key}: {value}" for key, value in data["DriverStatus"]]
    lines.append(f"Execution Driver: {data['ExecutionDriver']}")
    lines += [f" {key}: {value}" for key, value in data["ExecutionDriverStatus"] if key != "Execution Driver"]
    lines.append(f"Docker Root Dir: {data['DockerRootDir']}")
    lines += [f"Kernel Version: {data['KernelVersion']}", f"Operating System: {data['OperatingSystem']}",
              f"CPUs: {data['NCPU']}", f"Total Memory: {size(data['MemTotal'])}"]
    return "\n".join(lines) + "\n"


def usage(job: Job) -> dict[str, Any]:
    """docker system df's data: images (with the bytes they share with other images, so an
    in-use image is not counted reclaimable), containers with the bytes their layers add."""
    graph = job.engine.graph
    store = job.engine.containers
    containers = store.list(include_stopped=True)
    images = graph.images()
    users: dict[str, int] = {}  # layer -> how many images hold it
    for image in images:
        for layer in image.layers:
            users[layer.chain_id] = users.get(layer.chain_id, 0) + 1
    sizes = {image.id: image.size for image in images}
    now = dt.datetime.now(dt.UTC)
    rows = []
    for c in containers:
        size_rw = _layer_bytes(job, c.layer, c.parent_layer)
        rows.append({"Id": c.id, "Names": ["/" + c.name], "Image": c.image_ref, "ImageID": c.image,
                     "Command": " ".join(c.args), "Created": unix_time(c.created), "State": c.state.status,
                     "Status": status_text(c, now), "SizeRw": size_rw,
                     "SizeRootFs": size_rw + sizes.get(c.image, 0), "Labels": {}, "Mounts": []})
    return {
        "LayersSize": sum(layer.size for layer in graph.layers()),
        "Images": [{"Id": i.id, "ParentId": i.parent or "", "RepoTags": i.tags, "RepoDigests": i.digests,
                    "Created": unix_time(i.config.get("created", "")), "Size": i.size,
                    "SharedSize": sum(la.size for la in i.layers if users[la.chain_id] > 1), "VirtualSize": i.size,
                    "Labels": {}, "Containers": sum(1 for c in containers if c.image == i.id)} for i in images],
        "Containers": rows,
        "Volumes": [],
        "BuildCache": [],
    }


def _layer_bytes(job: Job, layer: str, parent: str | None) -> int:
    """The bytes a container's layer adds over its image (0 when the driver cannot tell)."""
    try:
        return job.engine.driver.diff_size(layer, parent)
    except DriverError:
        return 0


@jobs.job("df", options={"json": JSON}, help="disk usage of images and containers")
def df(job: Job) -> int:
    """`df`: images and containers, how many are in use and the bytes of their layers."""
    return _write(job, usage(job), df_text)


def df_text(data: dict[str, Any]) -> str:
    """docker system df's table, reclaimable space computed as the docker CLI does."""
    images, containers = data["Images"], data["Containers"]
    active = sum(1 for i in images if i["Containers"])
    used = sum(i["Size"] - i["SharedSize"] for i in images if i["Containers"])
    running = [c for c in containers if c["State"] == "running"]
    rw_total = sum(c["SizeRw"] for c in containers)
    rw_reclaimable = rw_total - sum(c["SizeRw"] for c in running)
    return table([("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"),
                  ("Images", str(len(images)), str(active), size(data["LayersSize"]),
                   _reclaimable(data["LayersSize"] - used, data["LayersSize"])),
                  ("Containers", str(len(containers)), str(len(running)), size(rw_total),
                   _reclaimable(rw_reclaimable, rw_total)),
                  ("Local Volumes", "0", "0", size(0), _reclaimable(0, 0)),
                  ("Build Cache", "0", "0", size(0), _reclaimable(0, 0))])


def _reclaimable(part: int, total: int) -> str:
    return f"{size(part)} ({100 * part // total}%)" if total else size(part)
