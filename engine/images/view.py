"""How images are shown: `docker inspect` JSON, `images` table and tree, `history`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from graphdrivers.units import human_size

from .graph import Graph, Image


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def unix_time(text: str | None) -> int:
    """An RFC 3339 time as Unix seconds, as Docker's API gives times (0: none)."""
    when = parse_time(text)
    return int(when.timestamp()) if when else 0


def go_time(text: str | None) -> str:
    """A time as Go's time.String() prints it (docker's CreatedAt): 2023-11-14 22:13:20 +0000 UTC."""
    when = parse_time(text)
    return when.strftime("%Y-%m-%d %H:%M:%S %z %Z") if when else ""


def ago(text: str | None, now: dt.datetime | None = None) -> str:
    """Docker's "N units ago" for an RFC 3339 time."""
    when = parse_time(text)
    if when is None:
        return "N/A"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = ((now or dt.datetime.now(dt.UTC)) - when).total_seconds()
    for unit, length in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400), ("day", 86400),
                         ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            n = int(seconds // length)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago"


def size(n: int) -> str:
    return human_size(n).replace(" ", "")


def inspect(graph: Graph, image: Image) -> dict[str, Any]:
    config = image.config
    top = image.top_layer
    driver_data = graph.driver.metadata(top) if top is not None else {}
    return {
        "Id": image.id,
        "RepoTags": image.tags,
        "RepoDigests": [],
        "Parent": image.parent or "",
        "Comment": _last_comment(config),
        "Created": config.get("created", ""),
        "Container": config.get("container", ""),
        "ContainerConfig": config.get("container_config") or {},
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        "Variant": config.get("variant", ""),
        "Os": config.get("os", ""),
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Name": graph.driver.name, "Data": driver_data},
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
        "Metadata": {"LastTagTime": dt.datetime.fromtimestamp(image.added, dt.UTC).isoformat()},
        "Strata": {"Layers": [layer.chain_id for layer in image.layers], **_lazy(graph, image)},
    }


def _lazy(graph: Graph, image: Image) -> dict[str, Any]:
    """`Lazy`: the progress of each layer still (or once) fetched lazily, by diff id."""
    found = []
    for layer in image.layers:
        status = graph.driver.lazy_status(layer.chain_id)
        if status is not None:
            found.append({"Layer": layer.diff_id, **status})
    return {"Lazy": found} if found else {}


def _last_comment(config: dict[str, Any]) -> str:
    history = config.get("history") or []
    return str(history[-1].get("comment", "")) if history else ""


# The fields of docker's image rows for --format, and their column names in a table.
IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE", "VirtualSize": "SIZE", "Containers": "CONTAINERS"}


def image_rows(images: list[Image]) -> list[dict[str, str]]:
    """One row per tag (an untagged image: one `<none>` row), with docker's field names."""
    rows = []
    for image in images:
        created = image.config.get("created")
        for tag in image.tags or ["<none>:<none>"]:
            repo, _, name = tag.rpartition(":")
            rows.append({"ID": image.short_id, "Repository": repo, "Tag": name, "Digest": "<none>",
                         "CreatedSince": ago(created), "CreatedAt": go_time(created), "Size": size(image.size),
                         "SharedSize": "N/A", "UniqueSize": "N/A", "VirtualSize": size(image.size),
                         "Containers": "N/A"})
    return rows


def images_table(images: list[Image]) -> str:
    columns = ("Repository", "Tag", "ID", "CreatedSince", "Size")
    return table([tuple(IMAGE_HEADERS[c] for c in columns),
                  *(tuple(row[c] for c in columns) for row in image_rows(images))])


def images_tree(graph: Graph, images: list[Image]) -> str:
    """The ancestry recorded in the GraphDB (image -> parent edges), roots first."""
    known = {image.id: image for image in images}
    children: dict[str | None, list[Image]] = {}
    for image in images:
        parent = image.parent if image.parent in known else None
        children.setdefault(parent, []).append(image)
    lines: list[str] = []

    def walk(parent: str | None, indent: str) -> None:
        kids = sorted(children.get(parent, []), key=lambda i: i.id)
        for n, image in enumerate(kids):
            last = n == len(kids) - 1
            tags = f" Tags: {', '.join(image.tags)}" if image.tags else ""
            lines.append(f"{indent}{'└─' if last else '├─'}{image.short_id} Virtual Size: {size(image.size)}{tags}")
            walk(image.id, indent + ("  " if last else "│ "))

    walk(None, "")
    return "\n".join(lines) + ("\n" if lines else "")


def history_rows(graph: Graph, image: Image) -> list[dict[str, Any]]:
    """Newest first, as `docker history` prints them."""
    rows = []
    for entry, layer in graph.history_of(image):
        rows.append({
            "Created": entry.get("created", ""),
            "CreatedBy": entry.get("created_by", ""),
            "Size": layer.size if layer is not None else 0,
            "Comment": entry.get("comment", ""),
            "Layer": layer.chain_id if layer is not None else "",
        })
    rows.reverse()
    if rows:
        rows[0]["Id"] = image.id
    return rows


def history_table(rows: list[dict[str, Any]]) -> str:
    lines = [("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")]
    for row in rows:
        ident = row.get("Id", "<missing>")
        created_by = row["CreatedBy"] if len(row["CreatedBy"]) <= 45 else row["CreatedBy"][:44] + "…"
        lines.append((ident.split(":")[-1][:12] if "Id" in row else ident, ago(row["Created"]), created_by,
                      size(row["Size"]), row["Comment"]))
    return table(lines)


def table(rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as docker prints its lists."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in rows)
