"""Image references as Docker spells them: [registry/]repository[:tag][@digest]."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidReference

DEFAULT_REGISTRY = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def ref(self) -> str:
        """What the manifest endpoint takes: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def familiar(self) -> str:
        """The name as the user typed it for the local store: `host/repo:tag`."""
        base = self.repository if self.registry == DEFAULT_REGISTRY else f"{self.registry}/{self.repository}"
        return f"{base}:{self.tag or 'latest'}"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse a reference; the first component is a registry when it has '.' or ':' or is localhost."""
    original = text
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidReference(original, f"invalid digest {digest!r}")
    registry = DEFAULT_REGISTRY
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, text = first, rest
    tag = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReference(original, f"invalid tag {tag!r}")
    if registry == DEFAULT_REGISTRY and "/" not in text:
        text = f"library/{text}"
    if not _REPO_RE.match(text):
        raise InvalidReference(original, "repository names are lowercase letters, digits and separators . _ - /")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, text, tag, digest)
