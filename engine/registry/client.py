"""A client of the OCI distribution API (what `docker pull/push/search` speak).

Streams blobs to and from files with their digests verified on the fly, so layers of any
size never sit in memory. Handles anonymous, basic and bearer-token auth; plain HTTP only
for registries marked insecure or on loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import requests

from ..errors import DigestMismatch, RegistryError
from .protocol import ACCEPT, CHUNK, INDEX_TYPES, MANIFEST_TYPES, MAX_MANIFEST, Credentials, Manifest


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _registry_error(resp: requests.Response, what: str) -> RegistryError:
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except ValueError:
        detail = resp.text[:200]
    return RegistryError(f"{what}: registry answered {resp.status_code} {resp.reason}{': ' + detail if detail else ''}",
                         resp.status_code)


class _Sized:
    """A readable of known length, so requests sends Content-Length and streams the body."""

    def __init__(self, data: IO[bytes], size: int) -> None:
        self.data = data
        self.size = size

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        return self.data.read(n)


_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class RegistryClient:
    """One registry host; `insecure` allows plain HTTP (always allowed on loopback)."""

    host: str
    credentials: Credentials | None = None
    insecure: bool = False
    timeout: float = 60.0
    session: requests.Session = field(default_factory=requests.Session)
    _tokens: dict[str, str] = field(default_factory=dict)
    _scheme: str | None = None

    # -- transport and auth ------------------------------------------------------------

    @property
    def base(self) -> str:
        if self._scheme is None:
            self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        plain_ok = self.insecure or _is_loopback(self.host)
        try:
            self.session.get(f"https://{self.host}/v2/", timeout=self.timeout)
            return "https"
        except requests.exceptions.SSLError:
            if plain_ok:
                return "http"
            raise RegistryError(f"{self.host} does not speak TLS; mark it insecure to use plain HTTP") from None
        except requests.exceptions.ConnectionError as exc:
            if not plain_ok:
                raise RegistryError(f"cannot reach registry {self.host}: {exc}") from None
            return "http"

    def _request(self, method: str, url: str, *, scope: str, **kwargs: Any) -> requests.Response:
        """Send with the auth the registry asks for, retrying once after a 401 challenge."""
        if not url.startswith("http"):
            url = self.base + url
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(2):
            headers = dict(kwargs.pop("headers", {}) or {})
            token = self._tokens.get(scope)
            if token:
                headers["Authorization"] = token
            try:
                resp = self.session.request(method, url, headers=headers, **kwargs)
            except requests.RequestException as exc:
                raise RegistryError(f"{method} {url}: {exc}") from None
            kwargs["headers"] = headers
            if resp.status_code != 401 or attempt == 1:
                return resp
            self._authenticate(resp.headers.get("WWW-Authenticate", ""), scope)
            body = kwargs.get("data")
            if hasattr(body, "seek"):
                body.seek(0)
        raise AssertionError("unreachable")

    def _authenticate(self, challenge: str, scope: str) -> None:
        kind, _, params_text = challenge.partition(" ")
        params = dict(_CHALLENGE_RE.findall(params_text))
        if kind.lower() == "basic":
            if self.credentials is None:
                raise RegistryError(f"{self.host} requires a login (basic auth) and no credentials were given", 401)
            auth = requests.auth._basic_auth_str(self.credentials.username, self.credentials.password)
            self._tokens[scope] = auth
            return
        if kind.lower() == "bearer":
            query = {"service": params.get("service", "")}
            wanted = params.get("scope") or scope
            if wanted:
                query["scope"] = wanted
            auth = (self.credentials.username, self.credentials.password) if self.credentials else None
            try:
                resp = self.session.get(params["realm"], params=query, auth=auth, timeout=self.timeout)
            except (KeyError, requests.RequestException) as exc:
                raise RegistryError(f"token request to {params.get('realm')!r} failed: {exc}", 401) from None
            if resp.status_code != 200:
                raise _registry_error(resp, f"token for {wanted}")
            data = resp.json()
            token = data.get("token") or data.get("access_token")
            if not token:
                raise RegistryError(f"the token service of {self.host} returned no token", 401)
            self._tokens[scope] = f"Bearer {token}"
            return
        raise RegistryError(f"{self.host} asks for unsupported authentication {challenge!r}", 401)

    # -- API ---------------------------------------------------------------------------

    def ping(self) -> None:
        resp = self._request("GET", "/v2/", scope="registry:catalog:*")
        if resp.status_code != 200:
            raise _registry_error(resp, f"ping {self.host}")

    def get_manifest(self, repo: str, ref: str, platform: tuple[str, str] = ("linux", "amd64")) -> Manifest:
        """The image manifest for `ref`; an index resolves to its entry for `platform`."""
        manifest = self._fetch_manifest(repo, ref)
        if manifest.media_type in INDEX_TYPES:
            os_name, arch = platform
            for entry in manifest.json.get("manifests", []):
                plat = entry.get("platform", {})
                if plat.get("os") == os_name and plat.get("architecture") == arch:
                    return self._fetch_manifest(repo, entry["digest"])
            raise RegistryError(f"{repo}:{ref} has no manifest for {os_name}/{arch}")
        if manifest.media_type not in MANIFEST_TYPES:
            raise RegistryError(f"{repo}:{ref} has unsupported manifest type {manifest.media_type!r}")
        return manifest

    def _fetch_manifest(self, repo: str, ref: str) -> Manifest:
        resp = self._request("GET", f"/v2/{repo}/manifests/{ref}", scope=f"repository:{repo}:pull",
                             headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            raise RegistryError(f"manifest for {repo}:{ref} not found on {self.host}", 404)
        if resp.status_code != 200:
            raise _registry_error(resp, f"manifest {repo}:{ref}")
        body = resp.content
        if len(body) > MAX_MANIFEST:
            raise RegistryError(f"manifest {repo}:{ref} is {len(body)} bytes, over the {MAX_MANIFEST} limit")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.startswith("sha256:") and ref != digest:
            raise DigestMismatch(f"manifest {repo}@{ref} has digest {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            media_type = json.loads(body).get("mediaType", media_type)
        return Manifest(media_type, body, digest)

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull")
        if resp.status_code in (200, 404):
            return resp.status_code == 200
        raise _registry_error(resp, f"blob {digest} in {repo}")

    def fetch_blob(self, repo: str, digest: str, out: IO[bytes]) -> int:
        """Stream a blob into `out`, verifying its digest; returns its size."""
        resp = self._request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", stream=True)
        if resp.status_code != 200:
            raise _registry_error(resp, f"blob {digest} of {repo}")
        hasher = hashlib.sha256()
        size = 0
        with resp:
            for chunk in resp.iter_content(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            raise DigestMismatch(f"blob of {repo} should be {digest} but its content hashes to {actual}")
        return size

    @contextlib.contextmanager
    def open_blob(self, repo: str, digest: str) -> Iterator[IO[bytes]]:
        """The blob as a raw stream; the caller verifies its digest as it reads (no buffering here)."""
        resp = self._request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", stream=True)
        if resp.status_code != 200:
            raise _registry_error(resp, f"blob {digest} of {repo}")
        with resp:
            resp.raw.decode_content = False
            yield resp.raw

    def blob_url(self, repo: str, digest: str) -> str:
        return f"{self.base}/v2/{repo}/blobs/{digest}"

    def read_range(self, repo: str, digest: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of a blob with one Range request (the registry must answer 206)."""
        resp = self._request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull",
                             headers={"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"})
        if resp.status_code != 206:
            if resp.status_code == 200:
                raise RegistryError(f"{self.host} ignores Range requests on blob {digest}; a lazy pull needs them")
            raise _registry_error(resp, f"bytes {start}-{end - 1} of blob {digest} of {repo}")
        if len(resp.content) != end - start:
            raise RegistryError(f"{self.host} sent {len(resp.content)} bytes of blob {digest} for a range of "
                                f"{end - start}")
        return resp.content

    def auth_headers(self, repo: str) -> dict[str, str]:
        """The headers that authorize reading `repo` (after a request of that scope has
        authenticated), for a fetcher that reads blobs later by itself."""
        token = self._tokens.get(f"repository:{repo}:pull")
        return {"Authorization": token} if token else {}

    def upload_blob(
        self, repo: str, digest: str, data: IO[bytes], size: int, *, mount_from: str | None = None,
        chunk_size: int | None = None,
    ) -> str:
        """Upload a blob unless present; returns "exists", "mounted" or "uploaded"."""
        if self.blob_exists(repo, digest):
            return "exists"
        scope = f"repository:{repo}:pull,push"
        params = {"mount": digest, "from": mount_from} if mount_from else None
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, params=params)
        if resp.status_code == 201:
            return "mounted"
        if resp.status_code != 202:
            raise _registry_error(resp, f"starting upload of {digest} to {repo}")
        location = self._absolute(resp.headers["Location"])
        if chunk_size:
            offset = 0
            while offset < size:
                chunk = data.read(chunk_size)
                if not chunk:
                    raise RegistryError(f"blob {digest} ended at {offset} of {size} bytes")
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                resp = self._request("PATCH", location, scope=scope, data=chunk, headers=headers)
                if resp.status_code != 202:
                    raise _registry_error(resp, f"uploading a chunk of {digest}")
                location = self._absolute(resp.headers["Location"])
                offset += len(chunk)
            body: Any = b""
        else:
            body = _Sized(data, size)
        sep = "&" if "?" in location else "?"
        resp = self._request("PUT", f"{location}{sep}digest={digest}", scope=scope, data=body,
                             headers={"Content-Type": "application/octet-stream"})
        if resp.status_code != 201:
            raise _registry_error(resp, f"finishing upload of {digest} to {repo}")
        return "uploaded"

    def put_manifest(self, repo: str, ref: str, manifest: Manifest) -> str:
        resp = self._request("PUT", f"/v2/{repo}/manifests/{ref}", scope=f"repository:{repo}:pull,push",
                             data=manifest.body, headers={"Content-Type": manifest.media_type})
        if resp.status_code != 201:
            raise _registry_error(resp, f"manifest {repo}:{ref}")
        return resp.headers.get("Docker-Content-Digest", manifest.digest)

    def catalog(self, page_size: int = 100) -> Iterator[str]:
        url = f"/v2/_catalog?n={page_size}"
        while url:
            resp = self._request("GET", url, scope="registry:catalog:*")
            if resp.status_code != 200:
                raise _registry_error(resp, "catalog")
            yield from resp.json().get("repositories") or []
            url = resp.links.get("next", {}).get("url", "")

    def tags(self, repo: str) -> list[str]:
        resp = self._request("GET", f"/v2/{repo}/tags/list", scope=f"repository:{repo}:pull")
        if resp.status_code != 200:
            raise _registry_error(resp, f"tags of {repo}")
        return resp.json().get("tags") or []

    def search(self, term: str, limit: int = 25) -> list[str]:
        """Repositories in the catalog whose name contains `term` (registry v2 has no search)."""
        found = [repo for repo in self.catalog() if term.lower() in repo.lower()]
        return found[:limit]

    def _absolute(self, location: str) -> str:
        return location if location.startswith("http") else self.base + location
