"""What one `bench run` does: drivers, scenarios, workload, repetitions, cache and sizes.

`--quick` shrinks everything (sizes, repetitions, the depth sweep) so the tests can run
the real harness end to end in seconds; the full defaults are what `make bench` runs.
With `--repeat auto` (the default without --quick) `repeat` is the fewest rounds (6), and the
data decide the rest: rounds go on until every group's median is known to `target_ci`
(CI width / median) or `max_repeat` rounds or `max_time` seconds are spent on the phase.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .workloads import BOTTOM_DATA_BYTES

FULL_DEPTHS = (1, 8, 32, 64, 127)
QUICK_DEPTHS = (1, 8)
EXECDRIVERS = ("oci", "native")
AUTO_MIN_REPEAT = 6  # rounds before precision is judged: below 6 no median CI reaches 95% (bench.stats)
TARGET_CI = 0.10
MAX_REPEAT = 30
MAX_TIME = 120.0  # seconds per phase (a scenario's cache mode, and depth for rootfs)
IO_RUNTIME = {False: 10.0, True: 2.0}  # seconds each fio job may run (--io-runtime), full and --quick
COPYUP_BYTES = {False: 100 << 20, True: 8 << 20}  # exec's big lower file (--copyup-bytes), full and --quick
COW_WRITES, COW_STRIDE = 100, 256 << 10  # cow_small_writes: one-byte writes, this far apart


@dataclass
class RunConfig:
    drivers: list[str]
    scenarios: list[str]
    workload: str = "busybox"
    image: str | None = None
    depth: int | None = None
    depths: tuple[int, ...] = FULL_DEPTHS
    repeat: int = 5
    warmup: int = 1
    cache: str = "warm"
    backing: str = "loop"
    execdrivers: list[str] = field(default_factory=lambda: list(EXECDRIVERS))
    out: str = ""
    scratch: str | None = None
    quick: bool = False
    storage_opts: dict[str, str] = field(default_factory=dict)  # "<driver>.<key>" -> value
    adaptive: bool = False  # --repeat auto: `repeat` is the minimum, precision decides the rest
    target_ci: float = TARGET_CI
    max_repeat: int = MAX_REPEAT
    max_time: float = MAX_TIME
    io_runtime: float = IO_RUNTIME[False]
    io_jobs: list[str] = field(default_factory=list)  # empty: every io job
    seed: int = 0  # the order's seed (bench.order); the CLI draws one when not given
    order: str = "random"
    cpus: list[int] = field(default_factory=list)  # empty: not pinned
    backing_fs: list[str] = field(default_factory=list)  # empty: each driver's registered filesystem
    pad_bytes: int = 0  # rootfs padding layers: bytes of data each (0: one tiny file)
    copyup_bytes: int = COPYUP_BYTES[False]
    read_bytes: int = BOTTOM_DATA_BYTES  # exec's bottom data file, which the read steps read
    cow_writes: int = COW_WRITES
    cow_stride: int = COW_STRIDE
    peers: list[str] = field(default_factory=list)  # --peer: engines measured beside strata (dockerd, podman)
    floors: bool = True  # --floors: the primitive each step cannot beat, measured on the same data

    @property
    def cache_modes(self) -> list[str]:
        return ["warm", "cold"] if self.cache == "both" else [self.cache]

    @property
    def planned_repeat(self) -> int:
        """Measured repetitions a phase runs at most (progress bars count against this)."""
        return max(self.max_repeat, self.repeat) if self.adaptive else self.repeat

    def facts(self) -> dict[str, object]:
        return asdict(self)


def quick_defaults(
    config: RunConfig,
    *,
    repeat_given: bool,
    warmup_given: bool,
    depths_given: bool,
    io_runtime_given: bool = False,
    copyup_given: bool = False,
) -> RunConfig:
    """Apply --quick's small settings to whatever the user did not set explicitly."""
    if config.quick:
        if not copyup_given:
            config.copyup_bytes = COPYUP_BYTES[True]
        if not io_runtime_given:
            config.io_runtime = IO_RUNTIME[True]
        if not repeat_given:
            config.repeat = 3
        if not warmup_given:
            config.warmup = 1
        if not depths_given:
            config.depths = QUICK_DEPTHS
    return config
