"""The one image-reference grammar: Docker's distribution/reference, table-driven."""

from __future__ import annotations

import pytest

from engine import reference
from engine.errors import InvalidReference

SHA = "sha256:" + "a" * 64

# text -> (registry, repository, tag, digest, local tag)
VALID = {
    "busybox": ("docker.io", "library/busybox", "latest", None, "busybox:latest"),
    "busybox:1.36": ("docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
    "foo:1": ("docker.io", "library/foo", "1", None, "foo:1"),
    "docker.io/library/foo:1": ("docker.io", "library/foo", "1", None, "foo:1"),
    "docker.io/foo:1": ("docker.io", "library/foo", "1", None, "foo:1"),
    "index.docker.io/foo:1": ("docker.io", "library/foo", "1", None, "foo:1"),
    "index.docker.io/library/foo:1": ("docker.io", "library/foo", "1", None, "foo:1"),
    "docker.io/bar/baz:2": ("docker.io", "bar/baz", "2", None, "bar/baz:2"),
    "bar/baz:2": ("docker.io", "bar/baz", "2", None, "bar/baz:2"),
    "library/foo/bar": ("docker.io", "library/foo/bar", "latest", None, "library/foo/bar:latest"),
    "localhost:5000/x:1": ("localhost:5000", "x", "1", None, "localhost:5000/x:1"),
    "localhost/x": ("localhost", "x", "latest", None, "localhost/x:latest"),
    "127.0.0.1:5000/a/b": ("127.0.0.1:5000", "a/b", "latest", None, "127.0.0.1:5000/a/b:latest"),
    "[::1]:5000/a": ("[::1]:5000", "a", "latest", None, "[::1]:5000/a:latest"),
    "Registry.Example.com/team/app:v1": ("Registry.Example.com", "team/app", "v1", None,
                                         "Registry.Example.com/team/app:v1"),
    "UPPER/case": ("UPPER", "case", "latest", None, "UPPER/case:latest"),  # an uppercase first part is a host
    "a.b-c/d__e---f/g_h.i:T_a.g-9": ("a.b-c", "d__e---f/g_h.i", "T_a.g-9", None, "a.b-c/d__e---f/g_h.i:T_a.g-9"),
    "localhost:5000": ("docker.io", "library/localhost", "5000", None, "localhost:5000"),
    "x:" + "t" * 128: ("docker.io", "library/x", "t" * 128, None, "x:" + "t" * 128),
    "a" * 237: ("docker.io", "library/" + "a" * 237, "latest", None, "a" * 237 + ":latest"),
    f"busybox@{SHA}": ("docker.io", "library/busybox", None, SHA, "busybox:latest"),
    f"localhost:5000/x:1@{SHA}": ("localhost:5000", "x", "1", SHA, "localhost:5000/x:1"),
    "x@sha512:" + "b" * 128: ("docker.io", "library/x", None, "sha512:" + "b" * 128, "x:latest"),
}

# text -> what the error says
INVALID = {
    "": "at least one component",
    "busybox:vé": "invalid reference format",  # ASCII only: \w is Go's [0-9A-Za-z_]
    "busybé": "invalid reference format",
    "Busybox": "must be lowercase",
    "docker.io/library/Foo:1": "must be lowercase",
    "team/UPPER": "must be lowercase",
    "localhost:5000/Team/app": "must be lowercase",
    "x:bad tag": "invalid reference format",
    "x:.dot": "invalid reference format",
    "x:" + "t" * 129: "invalid reference format",
    "a//b": "invalid reference format",
    "a/": "invalid reference format",
    "-a": "invalid reference format",
    "a-": "invalid reference format",
    "a..b": "invalid reference format",
    "a___b": "invalid reference format",
    "a" * 238: "must not be more than 255 characters",  # docker.io/library/ counts
    "localhost:5000/" + "a" * 241: "must not be more than 255 characters",
    "x@sha256:short": "invalid reference format",
    "x@sha256:" + "a" * 63: "invalid checksum digest format",
    "x@sha256:" + "A" * 64: "invalid checksum digest format",
    "x@md5:" + "a" * 32: "unsupported digest algorithm",
    "a" * 64: "64-byte hexadecimal",
    "http://x/y": "invalid reference format",
    "a_b.c/x": "is not a registry host",
}


@pytest.mark.parametrize("text", sorted(VALID))
def test_valid_references(text: str) -> None:
    registry, repository, tag, digest, local = VALID[text]
    parsed = reference.parse(text)
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.digest) == (registry, repository, tag, digest)
    assert parsed.local_tag == local
    if digest is None:
        assert reference.normalize_tag(text) == local
        assert reference.parse(str(parsed)) == parsed  # the full form parses back to itself


@pytest.mark.parametrize("text", sorted(INVALID))
def test_invalid_references_fail_alike_for_images_and_registry(text: str) -> None:
    with pytest.raises(InvalidReference, match=INVALID[text]):
        reference.parse(text)
    with pytest.raises(InvalidReference, match=INVALID[text]):
        reference.normalize_tag(text)


def test_local_names_refuse_digests_and_hex_ids() -> None:
    with pytest.raises(InvalidReference, match="digests are not supported"):
        reference.normalize_tag(f"busybox@{SHA}")
    with pytest.raises(InvalidReference, match="64-character hex id"):
        reference.normalize_tag("a" * 64 + ":1")


def test_image_ids_and_domains() -> None:
    assert reference.image_hex(SHA) == reference.image_hex("a" * 64) == "a" * 64
    assert reference.image_hex("busybox") is None
    assert reference.split_domain("localhost:5000/team/app") == ("localhost:5000", "team/app")
    assert reference.split_domain("team/app") == (None, "team/app")
