"""The CLI and the API routes agree with the job declarations: nothing drifts apart."""

from __future__ import annotations

import argparse
import ast
import base64
import json
import os
from types import SimpleNamespace

from engine import builtins
from engine.api import routes
from engine.api.routes.images import registry_auth
from engine.cli import app
from engine.cli.commands import CLI_ONLY, NOT_FLAGS

SPECS = builtins.specs()
REACHED_OTHERWISE = {"container_inspect": "`strata inspect` of containers",
                     "exec_create": "the API's first step of docker exec (`strata exec` does both)",
                     "exec_inspect": "the API's GET /exec/{id}/json"}
AUTH_OPTIONS = ("username", "password")  # what registry_auth(req) gives pull, push and search


def _subcommands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every subcommand that runs a job, nested ones (`volume create`, `network ls`) by their full name."""
    [sub] = [a for a in (parser or app.parser())._actions if isinstance(a, argparse._SubParsersAction)]
    found = {}
    for name, child in sub.choices.items():
        if child.get_default("job") is None:
            found.update(_subcommands(child, f"{prefix}{name} "))
        else:
            found[prefix + name] = child
    return found


def test_every_cli_flag_is_a_declared_option_or_a_named_cli_only_one() -> None:
    for name, parser in _subcommands().items():
        spec = SPECS[parser.get_default("job")]
        flags = {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}
        strays = flags - set(spec.options) - CLI_ONLY.get(name, set())
        assert not strays, f"strata {name}: flags {strays} are not options of job {spec.name}"


def test_every_declared_option_is_reachable_from_the_cli() -> None:
    reached = set()
    for name, parser in _subcommands().items():
        spec = SPECS[parser.get_default("job")]
        reached.add(spec.name)
        flags = {a.dest: a for a in parser._actions if a.option_strings}
        for option_name, option in spec.options.items():
            if option_name in NOT_FLAGS:
                continue
            assert option_name in flags, f"option {option_name} of job {spec.name} has no flag in strata {name}"
            assert tuple(flags[option_name].option_strings) == option.flags
    assert set(SPECS) - reached == set(REACHED_OTHERWISE)


def _own_nodes(func: ast.FunctionDef) -> list[ast.AST]:
    """The nodes of a function's body, without those of functions defined inside it."""
    found, todo = [], list(func.body)
    while todo:
        node = todo.pop()
        found.append(node)
        if not isinstance(node, ast.FunctionDef):
            todo.extend(ast.iter_child_nodes(node))
    return found


def _returned_keys(tree: ast.Module, call: ast.AST) -> set[str] | None:
    """The literal keys of the dicts a module function returns, for `options=f(...)` or `**f(...)`."""
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        return None
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == call.func.id]
    if not funcs:
        return None
    returns = [n.value for n in ast.walk(funcs[0]) if isinstance(n, ast.Return)]
    assert returns and all(isinstance(r, ast.Dict) and None not in r.keys for r in returns), call.func.id
    return {k.value for r in returns for k in r.keys if isinstance(k, ast.Constant)}


def _option_keys(call: ast.Call, scope: list[ast.AST], tree: ast.Module) -> set[str] | None:
    """The literal keys of a call's `options=` (a dict, a name assigned a dict in the function,
    or a module function returning one)."""
    for kw in call.keywords:
        if kw.arg != "options":
            continue
        value = kw.value
        if isinstance(value, ast.Name):
            assigned = [n.value for n in scope if isinstance(n, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == kw.value.id for t in n.targets)]
            if not assigned:  # unpacked from createbody.options: test_create_body_gives_declared_options
                return None
            [value] = assigned
        if isinstance(value, ast.Call) and ast.unparse(value.func) == "registry_auth":
            return set(AUTH_OPTIONS)
        returned = _returned_keys(tree, value)
        if returned is not None:
            return returned
        assert isinstance(value, ast.Dict), ast.unparse(call)
        keys = {k.value for k in value.keys if isinstance(k, ast.Constant)}
        for k, v in zip(value.keys, value.values, strict=True):
            if k is None:
                spread = set(AUTH_OPTIONS) if ast.unparse(v) == "registry_auth(req)" else _returned_keys(tree, v)
                assert spread is not None, ast.unparse(call)
                keys |= spread
        return keys
    return None


def test_every_api_route_runs_declared_jobs_with_declared_options() -> None:
    folder = os.path.dirname(routes.__file__)
    checked = 0
    for filename in sorted(os.listdir(folder)):
        if not filename.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(folder, filename)).read())
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            scope = _own_nodes(func)
            for call in [n for n in scope if isinstance(n, ast.Call)]:
                target = call.func
                if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and target.value.id == "jobio" and target.attr in ("run", "stream")):
                    continue
                name = call.args[1]
                assert isinstance(name, ast.Constant) and name.value in SPECS, (filename, ast.unparse(call))
                keys = _option_keys(call, scope, tree) or set()
                assert keys <= set(SPECS[name.value].options), (filename, name.value, keys)
                checked += 1
    assert checked > 20


def test_create_body_gives_declared_options() -> None:
    """Every option the create route reads from a body is an option of the create job."""
    from engine.api import createbody
    from engine.containers import args as containerargs

    everything = {dest: ["x"] if kind == "append" else "x" if kind == "value" else True
                  for _flags, dest, kind, _default, _help in containerargs.OPTIONS}
    body = {"Image": "busybox", **containerargs.to_api({**everything, "memory": "8m", "memory_swap": "16m",
                                                         "memory_reservation": "7m",
                                                         "cpus": "1", "cpu_shares": "2", "pids_limit": "5",
                                                         "cpu_period": "100000", "cpu_quota": "50000",
                                                         "stop_timeout": "3", "ulimit": ["nofile=1:2"],
                                                         "mount": ["type=tmpfs,target=/t"], "label": ["a=b"],
                                                         "sysctl": ["a=b"], "tmpfs": ["/t"], "device": ["/dev/null"]})}
    body.update(body.pop("Config"))
    _image, _cmd, options = createbody.options(body, "n")
    assert set(options) <= set(SPECS["create"].options)
    assert set(options) >= {dest for dest in containerargs.API_FIELDS}


def test_registry_auth_gives_the_credential_options() -> None:
    header = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode()
    request = SimpleNamespace(headers={"X-Registry-Auth": header})
    assert registry_auth(request) == {"username": "u", "password": "p"}  # type: ignore[arg-type]
