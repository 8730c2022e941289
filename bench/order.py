"""The order a run visits drivers, phases (cache modes, depths) and jobs in.

Fixed sequences confound time with the factor under study: load from the rest of the
machine drifts, caches fill, a filesystem ages, and whatever runs later pays for it
(`--depths 1,16,64,127` against `127,64,16,1` flipped a driver's depth trend). So by
default every round visits its items in a random order drawn from the run's seed (always
recorded in run.json, so a run can be replayed); `--order fixed` keeps the listed order,
for debugging. The same (seed, what, round) gives the same order in every driver's
scenario, so drivers still take the same phase side by side.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
ORDERS = ("random", "fixed")


def new_seed() -> int:
    """A seed for a run that was given none (recorded, so the order can be replayed)."""
    return secrets.randbelow(2**31)


def visit(items: Sequence[T], *, order: str, seed: int, what: str, round_: int) -> list[T]:
    """`items` in the order round `round_` of `what` (a scenario, "drivers") visits them."""
    items = list(items)
    if order == "fixed":
        return items
    random.Random(f"{seed}:{what}:{round_}").shuffle(items)
    return items
