"""Jobs behave like processes: args, typed options, streams, statuses, typed errors."""

from __future__ import annotations

import io

import pytest

from engine.engine import Engine
from engine.errors import EngineError, EngineLocked, NoSuchImage, NoSuchJob, UsageError
from engine.jobspec import REST, Option, Positional, declare, positionals


def test_a_job_runs_its_handler_with_args_options_and_streams(vfs_engine: Engine) -> None:
    def echo(job) -> int:
        data = job.stdin.read()
        job.write(" ".join(job.args) + "|" + job.options["greeting"] + "|" + data.decode())
        return 3 if job.options["fail"] else 0

    vfs_engine.register(declare("echo", echo, args="[WORD...]",
                                options={"greeting": Option(str, default="?"), "fail": bool}))
    job = vfs_engine.job("echo", "a", "b", env={"greeting": "hi"}, stdin=io.BytesIO(b"in"))
    assert job.run() == 0
    assert job.output() == b"a b|hi|in"
    assert vfs_engine.job("echo", env={"fail": "true"}).run() == 3
    assert vfs_engine.job("echo", options={"fail": True}).run() == 3
    assert vfs_engine.job("echo").run() == 0


def test_options_are_typed_and_an_unknown_one_is_refused_by_name(vfs_engine: Engine) -> None:
    seen = []
    vfs_engine.register(declare("opts", lambda job: seen.append(job.options) or 0, options={
        "n": int, "t": float, "words": list, "on": bool, "mode": Option(str, choices=("a", "b"), default="a")}))
    assert vfs_engine.job("opts", env={"n": "3", "t": "1.5", "words": '["x"]', "on": "yes"}).run() == 0
    assert seen[-1] == {"n": 3, "t": 1.5, "words": ["x"], "on": True, "mode": "a"}
    for env, message in (({"bogus": "1"}, "unknown option 'bogus'"), ({"on": "maybe"}, "option on: 'maybe' is not"),
                         ({"n": "x"}, "option n must be an integer"), ({"words": "{"}, "JSON list of strings"),
                         ({"mode": "c"}, "must be one of a, b")):
        job = vfs_engine.job("opts", env=env)
        assert job.run() == 2, env
        assert message in job.stderr.getvalue().decode()
        with pytest.raises(UsageError, match=message):
            vfs_engine.job("opts", env=env).run(check=True)


def test_positional_arity_comes_from_the_usage_line(vfs_engine: Engine) -> None:
    vfs_engine.register(declare("two", lambda job: 0, args="SOURCE TARGET[:TAG] [EXTRA]"))
    assert vfs_engine.job("two", "a", "b").run() == 0 and vfs_engine.job("two", "a", "b", "c").run() == 0
    job = vfs_engine.job("two", "a")
    assert job.run() == 2 and job.stderr.getvalue() == b"Error: usage: two SOURCE TARGET[:TAG] [EXTRA]\n"
    assert vfs_engine.job("two", "a", "b", "c", "d").run() == 2


def test_the_cli_positionals_are_the_usage_line() -> None:
    assert positionals("IMAGE [COMMAND [ARG...]]") == [Positional("image", "IMAGE", None),
                                                       Positional("args", "COMMAND", REST)]
    assert positionals("CONTAINER [PS_OPTION...]")[1] == Positional("args", "PS_OPTION", REST)
    assert positionals("NAME[:TAG|@DIGEST]") == [Positional("name", "NAME[:TAG|@DIGEST]", None)]
    assert positionals("FILE|- [REPOSITORY[:TAG]]") == [Positional("file", "FILE|-", None),
                                                        Positional("repository", "REPOSITORY[:TAG]", "?")]
    assert positionals("CONTAINER...") == [Positional("container", "CONTAINER", "+")]
    assert positionals("[HOST...]") == [Positional("host", "HOST", "*")]
    assert positionals("") == []


def test_an_engine_error_is_status_1_and_one_line_on_stderr(vfs_engine: Engine) -> None:
    def boom(job) -> int:
        raise NoSuchImage("nothing")

    vfs_engine.register(declare("boom", boom))
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


def test_a_bug_in_a_handler_is_reported_with_its_traceback(vfs_engine: Engine, caplog) -> None:
    vfs_engine.register(declare("buggy", lambda job: 1 // 0))
    job = vfs_engine.job("buggy")
    assert job.run() == 1
    assert b"internal error in job buggy" in job.stderr.getvalue()
    assert b"ZeroDivisionError" in job.stderr.getvalue()
    [record] = [r for r in caplog.records if r.name == "engine.job"]
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


def test_duplicate_registration(vfs_engine: Engine) -> None:
    with pytest.raises(EngineError, match="registered twice"):
        vfs_engine.register(declare("info", lambda job: 0))


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
