"""Image references: Docker's distribution/reference grammar and its normalisation.

One parser serves the local store (images, containers, commit, tag) and the registry
client (pull, push), so a name that one accepts the other accepts too, and both agree
on what it means. The grammar is distribution/reference's, ASCII only:

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component ( "/" path-component )*   (at most 255)
    domain     := host [ ":" port ]        host: DNS labels or a bracketed IPv6 address
    path-component := [a-z0-9]+ ( ( [._] | "__" | "-"* ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex        (sha256, sha384, sha512 with their hex lengths)

Normalisation is ParseNormalizedNamed's: a first component without '.' or ':' that is
not `localhost` is part of the path on docker.io, `index.docker.io` is docker.io, and a
one-component docker.io path is under `library/`. The local store keeps and shows the
*familiar* form (FamiliarName): docker.io and `library/` dropped, any other registry kept,
so `docker.io/library/foo:1`, `index.docker.io/foo:1` and `foo:1` are all `foo:1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# re.ASCII: Go's \w is [0-9A-Za-z_]; Python's would also take `é` (Docker refuses `busybox:vé`)
_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_NAME_RE = re.compile(rf"(?:({_DOMAIN})/)?({_COMPONENT}(?:/{_COMPONENT})*)", re.ASCII)
HEX64_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised reference: `registry` is the domain, `repository` its path there."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def ref(self) -> str:
        """What the manifest endpoint takes: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def familiar_name(self) -> str:
        """The repository as Docker shows it (FamiliarName): `foo`, `bar/baz`, `localhost:5000/x`."""
        if self.registry != DEFAULT_DOMAIN:
            return f"{self.registry}/{self.repository}"
        official = self.repository.removeprefix(OFFICIAL_PREFIX)
        return official if "/" not in official else self.repository

    @property
    def local_tag(self) -> str:
        """The name the local store keeps: familiar `repository:tag`, tag `latest` by default."""
        return f"{self.familiar_name}:{self.tag or DEFAULT_TAG}"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """ParseNormalizedNamed: the reference `text` with its domain and path made explicit.

    No tag is added to a digest-pinned reference; a reference with neither gets `latest`
    (what pull and push mean by a bare name).
    """
    if HEX64_RE.fullmatch(text):
        raise InvalidReference(text, "cannot specify 64-byte hexadecimal strings")
    domain, remainder = _normalized_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference(text, f"invalid reference format: repository name ({remote}) must be lowercase")
    name, tag, digest = _parse_exact(text, f"{domain}/{remainder}")
    match = _NAME_RE.fullmatch(name)
    if match is None or match.group(1) is None:  # `a_b.c/x`: a path component, where a host must be
        raise InvalidReference(text, f"invalid reference format: {domain!r} is not a registry host")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(match.group(1), match.group(2), tag, digest)


def split_domain(text: str) -> tuple[str | None, str]:
    """The registry `text` names before its first '/' and the rest; None when it names none.

    Docker's rule: the first component is a registry when it has '.' or ':', is
    `localhost`, or has an uppercase letter (which no repository path may have).
    """
    first, slash, rest = text.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first, rest
    return None, text


def _normalized_domain(text: str) -> tuple[str, str]:
    """splitDockerDomain: the registry of a reference (docker.io by default) and its path."""
    domain, remainder = split_domain(text)
    if domain is None or domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def _parse_exact(original: str, text: str) -> tuple[str, str | None, str | None]:
    """reference.Parse of the normalised `text`: (name, tag, digest), with Docker's errors."""
    match = _REFERENCE_RE.fullmatch(text)
    if match is None:
        if not original:
            raise InvalidReference(original, "repository name must have at least one component")
        if _REFERENCE_RE.fullmatch(text.lower()):
            raise InvalidReference(original, "repository name must be lowercase")
        raise InvalidReference(original, "invalid reference format")
    name, tag, digest = match.groups()
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(original, f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm not in _DIGEST_HEX_LENGTHS:
            raise InvalidReference(original, f"unsupported digest algorithm {algorithm!r}")
        if len(hexpart) != _DIGEST_HEX_LENGTHS[algorithm] or hexpart.lower() != hexpart:
            raise InvalidReference(original, "invalid checksum digest format")
    return name, tag, digest


def normalize_tag(ref: str) -> str:
    """The local tag `ref` names (`docker.io/library/busybox` -> `busybox:latest`).

    The local store names images by tag only: a digest is refused here, and so is a name
    that is itself a 64-hex id, which would read as an image id.
    """
    parsed = parse(ref)
    if parsed.digest is not None:
        raise InvalidReference(ref, "expected repository[:tag] (digests are not supported here)")
    if HEX64_RE.fullmatch(parsed.familiar_name):
        raise InvalidReference(ref, "a repository name cannot be a 64-character hex id")
    return parsed.local_tag


def image_hex(ref: str) -> str | None:
    """The hex of a full image id (`sha256:<hex>` or `<hex>`), else None."""
    hexpart = ref.removeprefix("sha256:")
    return hexpart if HEX64_RE.fullmatch(hexpart) else None
