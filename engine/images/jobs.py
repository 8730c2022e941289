"""The image jobs: load, save, import, tag, rmi, inspect, history, images."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

from ..errors import EngineError, InvalidArchive, InvalidReference, NoSuchImage
from ..job import Job
from ..jobspec import CHANGE, FORMAT, INSPECT_FORMAT, JSON, JobTable, Option
from ..reference import image_hex, normalize_tag
from ..system import host
from ..templates import render_all
from . import instructions, testimages
from . import view as imageview
from .graph import Graph, NewImage, diff_id_of_file
from .layerblob import ESTARGZ_HELP, LayerBlobs
from .load import ImagePlan, open_bundle, plan
from .save import OutImage, write_docker_archive

jobs = JobTable()


@contextlib.contextmanager
def _input_path(job: Job) -> Iterator[str]:
    """The archive path: the job's argument, or stdin spooled to a temp file (tar needs seeking)."""
    if job.args and job.args[0] != "-":
        yield job.args[0]
        return
    tmpdir = os.path.join(job.engine.root, "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmpdir, prefix="stdin-") as spool:
        shutil.copyfileobj(job.stdin, spool, 1 << 20)
        spool.flush()
        yield spool.name


# -- load ----------------------------------------------------------------------------------


@jobs.job("load", args="[FILE|DIR|-]", help="load images from a docker save archive or an OCI layout")
def load(job: Job) -> int:
    """`load [FILE|DIR|-]`: docker save archives and OCI layouts; all images or none."""
    graph: Graph = job.engine.graph
    with _input_path(job) as path:
        bundle = open_bundle(path)
        try:
            plans = plan(bundle)
            results = _apply_plans(job, graph, plans)
        finally:
            bundle.close()
    tagged = any(p.tags for p in plans)
    for (image_id, moved), p in zip(results, plans, strict=True):
        for old in moved:
            job.error_line(f"The image {', '.join(p.tags)} already existed; the old image {old} lost that tag")
        for t in p.tags:
            job.write(f"Loaded image: {t}\n")
        if not tagged:  # as docker load: ids only when the archive names no image
            job.write(f"Loaded image ID: {image_id}\n")
    return 0


def _apply_plans(job: Job, graph: Graph, plans: list[ImagePlan]) -> list[tuple[str, list[str]]]:
    total = sum(p.total_bytes for p in plans)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        job.report(action="load", current=done, total=total)

    with graph.lease() as lease:
        new_images = []
        for p in plans:
            parent = None
            layers = []
            for diff_id, source in zip(p.diff_ids, p.layers, strict=True):
                job.report(action="layer", item=source.name, diff_id=diff_id)
                layer, _ = graph.ensure_layer(lease, parent, diff_id, source, advance)
                layers.append(layer)
                parent = layer.chain_id
            new_images.append(NewImage(p.config_bytes, layers, p.tags, p.parent))
        return graph.commit(lease, new_images)


# -- import --------------------------------------------------------------------------------


@jobs.job("import", args="FILE|- [REPOSITORY[:TAG]]", help="make a one-layer image from a rootfs tar", options={
    "change": CHANGE,
    "message": Option(str, "the history comment (default: Imported from FILE)", ("-m", "--message"), ""),
    "platform": Option(str, "OS/ARCH[/VARIANT] the image is for (default: this machine's)", ("--platform",), "")})
def import_(job: Job) -> int:
    """`import FILE|- [REPOSITORY[:TAG]]`: a one-layer image from a rootfs tar (plain, gzip, zstd);
    change: Dockerfile instructions for its config, message: its history comment, platform: its os/arch."""
    tags = [normalize_tag(job.args[1])] if len(job.args) > 1 else []
    os_name, arch, variant = host.parse_platform(job.options["platform"])
    inner = instructions.apply({"Env": [host.DEFAULT_PATH]}, job.options["change"])
    graph: Graph = job.engine.graph
    with _input_path(job) as path:
        if not os.path.isfile(path):
            raise InvalidArchive(f"{path}: no such file")
        diff_id = diff_id_of_file(path)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        source_name = job.args[0] if job.args[0] != "-" else "-"
        config = {
            "architecture": arch,
            "os": os_name,
            **({"variant": variant} if variant else {}),
            "created": now,
            "config": inner,
            "history": [{"created": now, "created_by": f"strata import {source_name}",
                         "comment": job.options["message"] or "Imported from " + source_name}],
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
        with graph.lease() as lease:
            layer = graph.layer_from_file(lease, None, path, source_name, diff_id)
            [(image_id, _)] = graph.commit(lease, [NewImage(config_bytes, [layer], tags)])
    job.write(image_id + "\n")
    return 0


# -- save ----------------------------------------------------------------------------------


@jobs.job("save", args="IMAGE...", help="write images to a docker save archive", options={
    "estargz": Option(bool, ESTARGZ_HELP, ("--estargz",))})
def save(job: Job) -> int:
    """`save IMAGE...`: a docker save archive on stdout.

    As in Docker, an image named by a tag carries that tag; one named by id carries none.
    With `--estargz` the layer blobs are eStargz (and the configs list their diff ids).
    """
    graph: Graph = job.engine.graph
    chosen: dict[str, OutImage] = {}
    with LayerBlobs(graph, os.path.join(job.engine.root, "tmp"), estargz=job.options["estargz"]) as blobs:
        for ref in job.args:
            image = graph.get_image(ref)
            out = chosen.get(image.id)
            if out is None:
                out = chosen[image.id] = blobs.image(image)
            tag = _tag_of(ref)
            if tag is not None and tag in image.tags and tag not in out.tags:
                out.tags.append(tag)
        for out in chosen.values():
            if out.parent in chosen:  # an eStargz config has a new id: link to the parent's
                out.parent = chosen[out.parent].id
        write_docker_archive(job.stdout, list(chosen.values()))
    return 0


def _tag_of(ref: str) -> str | None:
    if image_hex(ref) is not None:
        return None
    try:
        return normalize_tag(ref)
    except InvalidReference:
        return None


# -- tag, rmi ------------------------------------------------------------------------------


@jobs.job("tag", args="SOURCE_IMAGE TARGET_IMAGE[:TAG]", help="name an image")
def tag(job: Job) -> int:
    """`tag SOURCE TARGET`."""
    source, target = job.args
    job.engine.graph.tag(source, target)
    return 0


@jobs.job("rmi", args="IMAGE...", help="remove images", options={
    "force": Option(bool, "untag everywhere; delete despite containers", ("-f", "--force")),
    "no_prune": Option(bool, "keep the untagged parents nothing else needs", ("--no-prune",))})
def rmi(job: Job) -> int:
    """`rmi IMAGE...` (force: untag everywhere / delete despite containers; no_prune: keep
    untagged parents).

    Like docker rmi, every image is tried; the first failure is raised at the end.
    """
    force = job.options["force"]
    failures: list[EngineError] = []
    for ref in job.args:
        try:
            for line in job.engine.graph.delete(ref, force=force, prune=not job.options["no_prune"]):
                job.write(line + "\n")
        except EngineError as exc:
            if len(job.args) > 1:
                job.error_line(f"Error: {exc}")
            failures.append(exc)
    if failures:
        raise failures[0]
    return 0


# -- inspect, history, images ------------------------------------------------------------


@jobs.job("inspect", args="IMAGE...", help="image details as JSON", options={"format": INSPECT_FORMAT})
def inspect(job: Job) -> int:
    """`inspect IMAGE...`: Docker-like JSON list of those found; the first missing one is raised."""
    graph: Graph = job.engine.graph
    job.write_json_each(job.args, lambda ref: imageview.inspect(graph, graph.get_image(ref)), NoSuchImage,
                        job.options["format"])
    return 0


@jobs.job("history", args="IMAGE", options={"json": JSON}, help="the layers an image was built from")
def history(job: Job) -> int:
    """`history IMAGE` (json: JSON rows)."""
    (ref,) = job.args
    graph: Graph = job.engine.graph
    rows = imageview.history_rows(graph, graph.get_image(ref))
    if job.options["json"]:
        job.write_json(rows)
    else:
        job.write(imageview.history_table(rows))
    return 0


@jobs.job("images", help="list images", options={
    "all": Option(bool, "include intermediate images", ("-a", "--all")),
    "tree": Option(bool, "show the image ancestry", ("--tree",)), "json": JSON,
    "quiet": Option(bool, "image ids only", ("-q", "--quiet")), "format": FORMAT})
def images(job: Job) -> int:
    """`images` table; tree: the ancestry tree, json: JSON, all: include intermediate images
    (untagged parents of other images), which docker also hides; quiet: ids; format: a template."""
    graph: Graph = job.engine.graph
    shown = graph.images()
    if not job.options["all"] and not job.options["tree"]:
        shown = [i for i in shown if i.tags or not graph.db.children_of(i.id)]
    if job.options["json"]:
        containers = job.engine.containers.list(include_stopped=True)
        job.write_json([{"Id": i.id, "RepoTags": i.tags, "RepoDigests": i.digests,
                         "Labels": (i.config.get("config") or {}).get("Labels") or {},
                         "ParentId": i.parent or "", "Size": i.size,
                         "Created": i.config.get("created", ""), "Layers": [la.chain_id for la in i.layers],
                         "Containers": sum(1 for c in containers if c.image == i.id)}
                        for i in shown])
    elif job.options["quiet"]:
        job.write("".join(row["ID"] + "\n" for row in imageview.image_rows(shown)))
    elif job.options["format"]:
        job.write(render_all(job.options["format"], imageview.image_rows(shown), headers=imageview.IMAGE_HEADERS))
    elif job.options["tree"]:
        job.write(imageview.images_tree(graph, shown))
    else:
        job.write(imageview.images_table(shown))
    return 0


# -- testimage ---------------------------------------------------------------------------


@jobs.job("testimage", help="build the offline busybox image from the host's busybox-static", options={
    "name": Option(str, "the image's name (default busybox:latest)", ("--name",), "busybox:latest"),
    "archive": Option(str, "write a docker-load-able archive to FILE instead of loading it", ("-o", "--output"),
                      "")})
def testimage(job: Job) -> int:
    """`testimage` (name, output): the image tests and the README use, without a network."""
    if not os.path.exists(testimages.BUSYBOX):
        raise EngineError(f"{testimages.BUSYBOX} is missing: install busybox-static (apt-get install busybox-static)")
    name = normalize_tag(job.options["name"])
    tmpdir = os.path.join(job.engine.root, "tmp")
    with tempfile.TemporaryDirectory(dir=tmpdir, prefix="testimage-") as work:
        image = dataclasses.replace(testimages.busybox(work), tags=[name])
        output = job.options["archive"]
        if output:
            partial = f"{output}.tmp-{os.getpid()}"
            try:
                testimages.write(partial, [image])
                os.replace(partial, output)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
            job.write(f"Wrote {name} ({image.id}) to {output}\n")
            return 0
        archive = testimages.write(os.path.join(work, "image.tar"), [image])
        load_job = job.engine.job("load", archive, stdout=job.stdout, stderr=io.BytesIO())
        load_job.run(check=True)
    return 0
