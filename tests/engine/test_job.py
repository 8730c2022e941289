"""Jobs behave like processes: args, env, streams, statuses, typed errors."""

from __future__ import annotations

import pytest

from engine.engine import Engine
from engine.errors import EngineError, EngineLocked, NoSuchImage, NoSuchJob


def test_a_job_runs_its_handler_with_args_env_and_streams(vfs_engine: Engine) -> None:
    def echo(job) -> int:
        data = job.stdin.read()
        job.write(" ".join(job.args) + "|" + job.getenv("greeting", "?") + "|" + data.decode())
        return 3 if job.getenv_bool("fail") else 0

    vfs_engine.register("echo", echo)
    job = vfs_engine.job("echo", "a", "b", env={"greeting": "hi"}, stdin=__import__("io").BytesIO(b"in"))
    assert job.run() == 0
    assert job.output() == b"a b|hi|in"
    assert vfs_engine.job("echo", env={"fail": "true"}).run() == 3


def test_an_engine_error_is_status_1_and_one_line_on_stderr(vfs_engine: Engine) -> None:
    def boom(job) -> int:
        raise NoSuchImage("nothing")

    vfs_engine.register("boom", boom)
    job = vfs_engine.job("boom")
    assert job.run() == 1
    assert job.stderr.getvalue() == b"Error: no such image: nothing\n"
    with pytest.raises(NoSuchImage):
        vfs_engine.job("boom").run(check=True)


def test_an_unregistered_job_fails_clearly(vfs_engine: Engine) -> None:
    job = vfs_engine.job("frobnicate")
    assert job.run() == 127
    assert job.stderr.getvalue() == b"Error: no such job: frobnicate\n"
    with pytest.raises(NoSuchJob):
        vfs_engine.job("frobnicate").run(check=True)


def test_a_bug_in_a_handler_is_reported_with_its_traceback(vfs_engine: Engine) -> None:
    vfs_engine.register("buggy", lambda job: 1 // 0)
    job = vfs_engine.job("buggy")
    assert job.run() == 1
    assert b"internal error in job buggy" in job.stderr.getvalue()
    assert b"ZeroDivisionError" in job.stderr.getvalue()


def test_json_env_and_duplicate_registration(vfs_engine: Engine) -> None:
    job = vfs_engine.job("info", env={"x": '{"a": [1]}', "bad": "{"})
    assert job.getenv_json("x") == {"a": [1]}
    with pytest.raises(EngineError, match="not valid JSON"):
        job.getenv_json("bad")
    with pytest.raises(EngineError, match="registered twice"):
        vfs_engine.register("info", lambda job: 0)


def test_a_second_engine_on_the_root_is_refused(vfs_engine: Engine) -> None:
    with pytest.raises(EngineLocked, match="in use by another strata process"):
        Engine(vfs_engine.root, "vfs")
    vfs_engine.close()
    again = Engine(vfs_engine.root, "vfs")  # the lock went with the first engine
    again.close()


def test_the_driver_is_selected_as_graphdrivers_does(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_DRIVER", "vfs")
    with Engine(str(tmp_path / "a")) as engine:
        assert engine.driver.name == "vfs"
        assert engine.driver.home == str(tmp_path / "a" / "vfs")
    monkeypatch.delenv("DOCKER_DRIVER")
    with Engine(str(tmp_path / "a")) as engine:  # prior storage: the root already holds vfs layers
        assert engine.driver.name == "vfs"
