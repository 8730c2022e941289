"""The `strata` command, run as a real subprocess (`python -m engine.cli`)."""

from __future__ import annotations

import json
import os
import subprocess

from tests.engine.conftest import Images


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def _fails(result: subprocess.CompletedProcess, message: str) -> None:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err


def test_the_image_commands(strata, images: Images, tmp_path) -> None:
    assert _ok(strata("load", "-i", images.multi_tar)) == \
        "Loaded image: busybox:latest\nLoaded image: strata/multi:latest\n"
    table = _ok(strata("images"))
    assert "strata/multi   latest   " + images.multi.id[7:19] in table
    tree = _ok(strata("images", "--tree"))
    assert tree.startswith("└─" + images.busybox.id[7:19]) and "  └─" + images.multi.id[7:19] in tree
    [doc] = json.loads(_ok(strata("inspect", "strata/multi")))
    assert doc["Id"] == images.multi.id and doc["GraphDriver"]["Name"] == strata.driver
    assert _ok(strata("tag", "busybox", "copy:1")) == ""
    assert _ok(strata("rmi", "copy:1")) == "Untagged: copy:1\n"
    history = _ok(strata("history", "strata/multi")).splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"] and len(history) == 5
    info = _ok(strata("info"))
    assert "Images: 4\n" in info  # busybox, two untagged steps, strata/multi
    assert f"Storage Driver: {strata.driver}\n" in info
    assert f"Docker Root Dir: {strata.root}" in info
    saved = str(tmp_path / "out" / "saved.tar")
    os.makedirs(os.path.dirname(saved))
    assert _ok(strata("save", "-o", saved, "strata/multi")) == ""
    assert os.listdir(os.path.dirname(saved)) == ["saved.tar"]  # no temp file left behind
    assert f"Deleted: {images.multi.id}\n" in _ok(strata("rmi", "strata/multi"))
    with open(saved, "rb") as f:  # load from stdin
        assert _ok(strata("load", stdin=f.read())) == "Loaded image: strata/multi:latest\n"
    with open(images.busybox.layer_files[0], "rb") as f:
        image_id = _ok(strata("import", "-", "imported", stdin=f.read())).strip()
    assert json.loads(_ok(strata("inspect", "imported:latest")))[0]["Id"] == image_id


def test_tags_on_docker_io_are_listed_familiar(strata_vfs, images: Images) -> None:
    """Docker's local names: docker.io and library/ are dropped, other registries kept."""
    _ok(strata_vfs("load", "-i", images.busybox_tar))
    for target in ("docker.io/library/foo:1", "docker.io/bar/baz:2", "localhost:5000/x:1", "127.0.0.1:5000/a/b"):
        assert _ok(strata_vfs("tag", "busybox", target)) == ""
    rows = {tuple(line.split()[:2]) for line in _ok(strata_vfs("images")).splitlines()[1:]}
    assert rows == {("busybox", "latest"), ("foo", "1"), ("bar/baz", "2"), ("localhost:5000/x", "1"),
                    ("127.0.0.1:5000/a/b", "latest")}
    [doc] = json.loads(_ok(strata_vfs("inspect", "index.docker.io/foo:1")))
    assert doc["Id"] == images.busybox.id and "foo:1" in doc["RepoTags"]
    assert _ok(strata_vfs("rmi", "docker.io/library/foo:1")) == "Untagged: foo:1\n"
    _fails(strata_vfs("tag", "busybox", "busybox:v\u00e9"), "invalid reference format")
    _fails(strata_vfs("tag", "busybox", "docker.io/library/Foo"), "must be lowercase")


def test_user_errors_are_one_line(strata_vfs, images: Images, tmp_path) -> None:
    _fails(strata_vfs("inspect", "nothing"), "no such image: nothing")
    _fails(strata_vfs("rmi", "nothing"), "no such image: nothing")
    _fails(strata_vfs("tag", "nothing", "x"), "no such image: nothing")
    _fails(strata_vfs("load", "-i", str(tmp_path / "missing.tar")), "no such file")
    _fails(strata_vfs("-o", "bogus", "images"), "-o expects KEY=VALUE")
    _fails(strata_vfs("-o", "vfs.nothing=1", "images"), "unknown option 'vfs.nothing'")
    _fails(strata_vfs("images", driver="nodriver"), "no such driver")
    save_to = str(tmp_path / "never.tar")
    _fails(strata_vfs("save", "-o", save_to, "nothing"), "no such image")
    assert not os.path.exists(save_to)
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(open(images.busybox_tar, "rb").read()[:-20000])
    result = strata_vfs("load", "-i", str(corrupt))
    assert result.returncode == 1 and "Traceback" not in result.stderr.decode()
    assert _ok(strata_vfs("images")).splitlines()[1:] == []
