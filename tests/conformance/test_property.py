"""Conformance, property-based: random stacks of layers of random file operations.

For every driver, each layer's mount must show exactly what the model says, and
`changes(layer, parent)` must equal the model's expected changes (see model.py for the
rules). A handful of examples per driver keeps the suite inside its time budget; the
shrinker still turns any failure into a short, readable stack of operations.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphdrivers import Driver

from .model import FsModel, expected_changes
from .treeutil import mounted, tree, umask

NAMES = ["a", "b", "c"]
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
ops = st.one_of(
    st.tuples(st.just("write"), paths),
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("rm"), paths),
    st.tuples(st.just("rmtree"), paths),
    st.tuples(st.just("chmod"), paths, st.sampled_from([0o600, 0o644, 0o700, 0o755, 0o4755, 0o1777])),
    st.tuples(st.just("chown"), paths, st.sampled_from([0, 1, 1000])),
    st.tuples(st.just("symlink"), paths),
    st.tuples(st.just("setxattr"), paths, st.sampled_from([("user.a", b"1"), ("user.a", b"2"), ("user.b", b"")])),
)
# Directories first in most layers, so deeper paths get a chance to exist.
layer_ops = st.lists(ops, min_size=1, max_size=10)
stacks = st.lists(layer_ops, min_size=1, max_size=4)

_serial = itertools.count()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stack=stacks)
def test_random_layer_stacks(driver: Driver, stack: list[list[tuple]]) -> None:
    run = next(_serial)
    models = []
    model = FsModel()
    parent = None
    layers = []
    try:
        for depth, layer_ops_ in enumerate(stack):
            layer = f"p{run}-{depth}"
            driver.create(layer, parent)
            layers.append(layer)
            model = model.copy()
            with mounted(driver, layer) as path, umask(0o022):
                for op in layer_ops_:
                    model.apply(path, op)
            models.append(model)
            parent = layer
        for depth, layer in enumerate(layers):
            with mounted(driver, layer) as path:
                shown = {p: e for p, e in tree(path).items() if p != "/"}
            assert shown == models[depth].entries(), f"layer {depth} shows something else than the model"
            before = models[depth - 1].nodes if depth else {"/": models[0].nodes["/"]}
            want = expected_changes(before, models[depth].nodes)
            got = driver.changes(layer, layers[depth - 1] if depth else None)
            assert got == want, f"changes of layer {depth}"
    finally:
        for layer in reversed(layers):
            driver.remove(layer)
