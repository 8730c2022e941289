"""Image endpoints: list, inspect, history, load, save, pull, push, search, tag, delete."""

from __future__ import annotations

import base64
import binascii
import json

from ...engine import Engine
from ...errors import NoSuchImage
from ...images.view import unix_time
from .. import jobio
from ..http import ApiError, Reply, Request, Router, json_lines


def registry_auth(req: Request) -> dict[str, str]:
    """The username and password options from X-Registry-Auth (base64url JSON, as the docker CLI sends them)."""
    header = req.headers.get("X-Registry-Auth")
    if not header:
        return {}
    try:
        padded = header + "=" * (-len(header) % 4)
        auth = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        raise ApiError(400, "X-Registry-Auth is not base64-encoded JSON") from None
    if not isinstance(auth, dict):
        raise ApiError(400, "X-Registry-Auth must hold a JSON object")
    if not auth.get("username"):
        return {}
    return {"username": str(auth["username"]), "password": str(auth.get("password") or "")}


def _status_message(line: str) -> bytes:
    """A pull/push output line as a progress message; "<short digest>: text" names the layer."""
    head, sep, rest = line.partition(": ")
    if sep and len(head) == 12 and all(c in "0123456789abcdef" for c in head):
        message = {"status": rest, "id": head}
    else:
        message = {"status": line}
    return json.dumps(message).encode() + b"\r\n"


def _stream_message(line: str) -> bytes:
    return json.dumps({"stream": line + "\n"}).encode() + b"\r\n"


def _error_message(message: str) -> bytes:
    return json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + b"\r\n"


def add_routes(router: Router, engine: Engine) -> None:
    def check_images(*names: str) -> None:
        """A missing image is a 404 before a streamed reply (an archive, a push) starts."""
        jobio.run(engine, "inspect", *names)

    @router.route("GET", "/images/json")
    def images(req: Request) -> Reply:
        req.refuse_filters()
        listed = jobio.run(engine, "images", options={"json": True, "all": req.flag("all")}).json()
        return Reply(200, [{"Id": i["Id"], "ParentId": i["ParentId"], "RepoTags": i["RepoTags"] or ["<none>:<none>"],
                            "RepoDigests": [], "Created": unix_time(i["Created"]), "Size": i["Size"],
                            "SharedSize": -1, "VirtualSize": i["Size"], "Labels": {},
                            "Containers": i["Containers"]} for i in listed])

    @router.route("GET", "/images/{name:path}/json")
    def inspect(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "inspect", req.params["name"]).json()[0])

    @router.route("GET", "/images/{name:path}/history")
    def history(req: Request) -> Reply:
        name = req.params["name"]
        rows = jobio.run(engine, "history", name, options={"json": True}).json()
        tags = jobio.run(engine, "inspect", name).json()[0]["RepoTags"]
        return Reply(200, [{"Id": row.get("Id", "<missing>"), "Created": unix_time(row["Created"]),
                            "CreatedBy": row["CreatedBy"], "Tags": tags if "Id" in row else None,
                            "Size": row["Size"], "Comment": row["Comment"]} for row in rows])

    @router.route("POST", "/images/load")
    def load(req: Request) -> Reply:
        chunks = jobio.stream(engine, "load", "-", stdin=req.body, line=_stream_message, on_error=_error_message)
        return Reply(200, stream=chunks)

    @router.route("GET", "/images/get")
    def save_many(req: Request) -> Reply:
        return _save(req.args("names"))

    @router.route("GET", "/images/{name:path}/get")
    def save_one(req: Request) -> Reply:
        return _save([req.params["name"]])

    def _save(names: list[str]) -> Reply:
        if not names:
            raise ApiError(400, "no image names given (query parameter names)")
        check_images(*names)
        return Reply(200, stream=jobio.stream(engine, "save", *names), content_type="application/x-tar")

    @router.route("POST", "/images/create")
    def create(req: Request) -> Reply:
        source = req.arg("fromImage")
        if req.arg("fromSrc"):
            return _import(req)
        if not source:
            raise ApiError(400, "fromImage or fromSrc is required")
        tag = req.arg("tag")
        ref = source
        if tag:
            ref = f"{source}@{tag}" if tag.startswith("sha256:") else f"{source}:{tag}"
        options = {**registry_auth(req), "platform": req.arg("platform") or ""}
        return Reply(200, stream=jobio.stream(engine, "pull", ref, options=options, line=_status_message,
                                              on_error=_error_message))

    def _import(req: Request) -> Reply:
        if req.arg("fromSrc") != "-":
            raise ApiError(400, "fromSrc must be '-' (the rootfs tar in the request body)")
        repo = req.arg("repo")
        tag = req.arg("tag")
        args = ["-"] + ([f"{repo}:{tag}" if tag else repo] if repo else [])
        job = jobio.run(engine, "import", *args, stdin=req.body)
        return Reply(200, stream=json_lines([{"status": job.stdout.getvalue().decode().strip()}]))

    @router.route("POST", "/images/{name:path}/push")
    def push(req: Request) -> Reply:
        name = req.params["name"]
        tag = req.arg("tag")
        ref = f"{name}:{tag}" if tag else name
        check_images(ref)
        return Reply(200, stream=jobio.stream(engine, "push", ref, options=registry_auth(req), line=_status_message,
                                              on_error=_error_message))

    @router.route("GET", "/images/search")
    def search(req: Request) -> Reply:
        term = req.arg("term")
        if not term:
            raise ApiError(400, "term is required")
        options = {"json": True, "limit": req.int_arg("limit") or "", **registry_auth(req)}
        return Reply(200, jobio.run(engine, "search", term, options=options).json())

    @router.route("POST", "/images/{name:path}/tag")
    def tag(req: Request) -> Reply:
        repo = req.arg("repo")
        if not repo:
            raise ApiError(400, "repo is required")
        target = f"{repo}:{req.arg('tag')}" if req.arg("tag") else repo
        jobio.run(engine, "tag", req.params["name"], target)
        return Reply(201, None)

    @router.route("DELETE", "/images/{name:path}")
    def delete(req: Request) -> Reply:
        name = req.params["name"]
        req.refuse_arg("noprune", "removing an image removes its untagged parents")
        job = jobio.run(engine, "rmi", name, options={"force": req.flag("force")})
        items = []
        for line in job.stdout.getvalue().decode().splitlines():
            kind, _, value = line.partition(": ")
            if kind in ("Untagged", "Deleted"):
                items.append({kind: value})
        if not items:
            raise NoSuchImage(name)
        return Reply(200, items)
