"""Image references as Docker spells them: `repo[:tag]`, full or short image ids."""

from __future__ import annotations

import re

from ..errors import InvalidReference

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)"
_REPO_RE = re.compile(rf"^{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
DEFAULT_TAG = "latest"


def normalize_tag(ref: str) -> str:
    """`busybox` -> `busybox:latest`; validates repository and tag; drops docker.io/library/."""
    if not ref or "@" in ref:
        raise InvalidReference(ref, "expected repository[:tag] (digests are not supported here)")
    repo, tag = ref, DEFAULT_TAG
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        repo, tag = ref[:colon], ref[colon + 1 :]
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
            break
    if not _REPO_RE.match(repo) or len(repo) > 255:
        raise InvalidReference(ref, "the repository name must be lowercase letters, digits and separators")
    if not _TAG_RE.match(tag):
        raise InvalidReference(ref, "a tag is up to 128 letters, digits, '_', '.' or '-'")
    if HEX64_RE.match(repo):
        raise InvalidReference(ref, "a repository name cannot be a 64-character hex id")
    return f"{repo}:{tag}"


def split_tag(tag: str) -> tuple[str, str]:
    repo, _, name = tag.rpartition(":")
    return repo, name


def image_hex(ref: str) -> str | None:
    """The hex of a full image id (`sha256:<hex>` or `<hex>`), else None."""
    if ref.startswith("sha256:"):
        ref = ref[len("sha256:") :]
    return ref if HEX64_RE.match(ref) else None
