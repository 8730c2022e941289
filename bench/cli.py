"""The `bench` command: run, report, compare, list."""

from __future__ import annotations

import argparse
import os
import sys

from .config import (
    AUTO_MIN_REPEAT,
    COPYUP_BYTES,
    COW_STRIDE,
    COW_WRITES,
    EXECDRIVERS,
    FULL_DEPTHS,
    IO_RUNTIME,
    MAX_REPEAT,
    MAX_TIME,
    TARGET_CI,
    RunConfig,
    quick_defaults,
)
from .order import ORDERS, new_seed
from .peers import PEERS
from .scenarios import DEFAULT_SCENARIOS, SCENARIOS
from .scenarios.io import JOBS as IO_JOBS
from .workloads import BOTTOM_DATA_BYTES, WORKLOADS

BACKING_FS = ("ext4", "xfs", "btrfs")


def _csv(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad) or 'empty list'} (choose from {', '.join(choices)})"
            )
        return items

    return parse


def _depths(text: str) -> tuple[int, ...]:
    try:
        depths = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--depths wants comma-separated integers, got {text!r}") from None
    if not depths or any(not 1 <= d <= 127 for d in depths):
        raise argparse.ArgumentTypeError("--depths: each depth must be between 1 and 127")
    return depths


def _storage_opt(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"--storage-opt wants DRIVER.KEY=VALUE (e.g. aufs.backend=fuse), got {text!r}")
    return key.strip(), value.strip()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _repeat(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def _cluster(text: str) -> str:
    from .cluster import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1 (e.g. 0.10 for 10% of the median)")
    return value


def _size(text: str) -> int:
    from graphdrivers.errors import InvalidOption
    from graphdrivers.units import parse_size

    try:
        return parse_size(text)
    except InvalidOption as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cpus(text: str) -> list[int]:
    from .environment import CpuListError, parse_cpus

    try:
        return sorted(parse_cpus(text))
    except CpuListError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="strata's graphdriver benchmark harness")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure drivers; writes a result directory")
    run.add_argument(
        "--driver",
        action="append",
        help="driver name, or a variant NAME[KEY=VALUE,...] measured beside it (repeatable), or 'all'; "
        "required unless --matrix has it",
    )
    run.add_argument("--matrix", metavar="FILE.toml", help="the run's cells and options from a file (README: matrix)")
    run.add_argument(
        "--cluster",
        type=_cluster,
        metavar="ADDRESS",
        help="run the cells on a Dask scheduler's workers (tcp://HOST:8786), or on local:N workers started here",
    )
    run.add_argument("--host", action="append", help="with --cluster: run on this host only (repeatable; default all)")
    run.add_argument(
        "--isolate",
        choices=("none", "process"),
        help="process: each driver's cell in a fresh process, one after another (default none; --cluster: process)",
    )
    run.add_argument(
        "--scenario",
        type=_csv(SCENARIOS),
        default=list(DEFAULT_SCENARIOS),
        help=f"comma-separated, of {','.join(SCENARIOS)} (default {','.join(DEFAULT_SCENARIOS)})",
    )
    source = run.add_mutually_exclusive_group()
    source.add_argument("--workload", choices=WORKLOADS, default="busybox")
    source.add_argument("--image", help="a docker save / OCI image archive to use as the workload")
    run.add_argument("--depth", type=int, help="layers of the deep workload (1-127)")
    run.add_argument("--depths", type=_depths, help=f"rootfs depth sweep (default {','.join(map(str, FULL_DEPTHS))})")
    run.add_argument(
        "--repeat",
        type=_repeat,
        help=f"measured repetitions, or 'auto': at least {AUTO_MIN_REPEAT}, then rounds until every group is precise "
        "(default auto; --quick 3)",
    )
    run.add_argument(
        "--target-ci",
        type=_fraction,
        help=f"--repeat auto: wanted 95%% CI width of each median, as a fraction of it (default {TARGET_CI})",
    )
    run.add_argument(
        "--max-repeat", type=_positive, help=f"--repeat auto: most rounds (default {MAX_REPEAT})"
    )
    run.add_argument(
        "--max-time",
        type=float,
        help=f"--repeat auto: most seconds per phase (scenario x cache mode x depth; default {MAX_TIME:.0f})",
    )
    run.add_argument("--warmup", type=_non_negative, help="unrecorded warm-up repetitions (default 1)")
    run.add_argument(
        "--cache",
        choices=("warm", "cold", "both"),
        help="exec, rootfs, layer-create (io, pull: always cold); default warm",
    )
    run.add_argument("--backing", default="loop", help="'loop' (a fresh loop fs per driver) or a directory")
    run.add_argument("--execdriver", action="append", choices=EXECDRIVERS, help="default: both")
    run.add_argument("--out", help="result directory (default results/<timestamp>)")
    run.add_argument("--scratch", help="where workload tars and loop images go (default: a new dir in $TMPDIR)")
    run.add_argument(
        "--io-runtime",
        type=_seconds,
        help=f"seconds each io job (fio) may run (default {IO_RUNTIME[False]:g}; --quick {IO_RUNTIME[True]:g})",
    )
    run.add_argument(
        "--io-jobs",
        type=_csv(IO_JOBS),
        help=f"the io scenario's fio jobs, comma-separated (default all: {','.join(IO_JOBS)})",
    )
    run.add_argument("--seed", type=int, help="seed of the random visiting order (default: drawn; run.json keeps it)")
    run.add_argument(
        "--order",
        choices=ORDERS,
        default="random",
        help="random: each round visits drivers, depths and cache modes in an order drawn from --seed; "
        "fixed: as listed (for debugging)",
    )
    run.add_argument("--cpus", type=_cpus, help="pin the harness and everything it starts to these CPUs (e.g. 0,2-3)")
    run.add_argument(
        "--backing-fs",
        type=_csv(BACKING_FS),
        help="run each driver on each of these loop filesystems it supports (default: the one it registered for)",
    )
    run.add_argument(
        "--pad-bytes", type=_size, help="rootfs: data in each padding layer (e.g. 4M; default none)"
    )
    run.add_argument(
        "--copyup-bytes",
        type=_size,
        help=f"exec: size of the big lower file the copy-up steps write to (default {COPYUP_BYTES[False] >> 20}M; "
        f"--quick {COPYUP_BYTES[True] >> 20}M)",
    )
    run.add_argument(
        "--read-bytes",
        type=_size,
        default=BOTTOM_DATA_BYTES,
        help=f"exec: size of the bottom data file the read steps read (default {BOTTOM_DATA_BYTES >> 20}M)",
    )
    run.add_argument(
        "--cow-writes",
        type=_positive,
        help=f"exec cow_small_writes: one-byte writes (default {COW_WRITES}, or as many as fit in the big file)",
    )
    run.add_argument(
        "--cow-stride", type=_size, help="exec cow_small_writes: bytes between writes (256K)"
    )
    run.add_argument(
        "--peer",
        action="append",
        choices=PEERS,
        default=[],
        help="also measure this engine (started on its own sockets and roots; repeatable): exec and pull steps",
    )
    run.add_argument(
        "--floors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the primitive each step cannot beat (mount, snapshot, FICLONE, tar -x, runc run, "
        "plain HTTP; default on)",
    )
    run.add_argument("--quick", action="store_true", help="small sizes, few repetitions (seconds; for tests)")
    run.add_argument(
        "-o",
        "--storage-opt",
        type=_storage_opt,
        action="append",
        default=[],
        metavar="DRIVER.KEY=VALUE",
        help="a driver option, for the driver its key names (e.g. aufs.fuse_passthrough=false); repeatable",
    )

    report = sub.add_parser("report", help="figures and an HTML page from result directories")
    report.add_argument("dirs", nargs="+")
    report.add_argument("--out", required=True)

    compare = sub.add_parser(
        "compare", help="which groups changed NEW vs BASE beyond noise (rank test, FDR-corrected); exit 1 on SLOWER"
    )
    compare.add_argument("base", nargs="?")
    compare.add_argument("new", nargs="?")
    compare.add_argument("--split", metavar="RUN", help="A/A check: even against odd repetitions of one run")
    compare.add_argument(
        "--hosts", nargs=2, metavar=("BASE_HOST", "NEW_HOST"), help="two hosts of one run (give the run as BASE)"
    )
    compare.add_argument(
        "--fail-above", type=float, default=1.2, help="SLOWER needs a ratio above this (FASTER below its inverse)"
    )
    compare.add_argument(
        "--fdr", type=_fraction, default=0.05, help="false discovery rate over all groups (default 0.05)"
    )
    compare.add_argument(
        "--allow-different",
        action="store_true",
        help="compare a different workload or machine too (refused by default)",
    )
    compare.add_argument(
        "--absolute",
        action="store_true",
        help="judge each group's raw ratio, not its change beyond its scenario's common shift",
    )

    history = sub.add_parser("history", help="each group's median over commits (asv-style); flags steps beyond noise")
    history.add_argument("dirs", nargs="+", metavar="RESULTS_DIR")
    history.add_argument("--out", required=True, help="where history.csv and a figure per flagged step go")
    history.add_argument(
        "--threshold", type=float, default=1.2, help="a step needs a ratio beyond this (and non-overlapping CIs)"
    )

    verify = sub.add_parser(
        "verify", help="check the harness against published driver behaviours; exit 1 when one does not hold"
    )
    verify.add_argument("--quick", action="store_true", help="small sizes, 5 repetitions (a few minutes)")
    verify.add_argument("--driver", action="append", help="only behaviours of these drivers (repeatable)")
    verify.add_argument("--only", action="append", help="only this behaviour (repeatable; see bench verify --help)")
    verify.add_argument("--repeat", type=_positive, help="repetitions of every run (default 5 with --quick, else auto)")
    verify.add_argument("--out", help="keep the runs' result directories here (default: a temp dir, removed)")

    sub.add_parser("list", help="registered drivers: can they run here, backend, why not")
    return p


# option -> the scenario it configures: given without that scenario it would do nothing
SCENARIO_OPTIONS = {
    "io_runtime": "io",
    "io_jobs": "io",
    "depths": "rootfs",
    "pad_bytes": "rootfs",
    "copyup_bytes": "exec",
    "cow_writes": "exec",
    "cow_stride": "exec",
    "execdriver": "exec",
}
AUTO_OPTIONS = ("target_ci", "max_repeat", "max_time")  # they steer --repeat auto only


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _ignored_option(args: argparse.Namespace, workloads: list[str] | None = None) -> str | None:
    """An option given where it would change nothing, named with why (None if there is none):
    an option accepted and ignored would make the user believe it was honoured."""
    scenarios = set(args.scenario)
    for dest, scenario in SCENARIO_OPTIONS.items():
        if getattr(args, dest) is not None and scenario not in scenarios:
            return (f"{_flag(dest)} configures the {scenario} scenario, which this run does not measure "
                    f"(add --scenario {scenario})")
    adaptive = args.repeat == "auto" or (args.repeat is None and not args.quick)
    for dest in AUTO_OPTIONS:
        if getattr(args, dest) is not None and not adaptive:
            fixed = args.repeat if args.repeat is not None else "3 (--quick)"
            return f"{_flag(dest)} steers --repeat auto; with a fixed --repeat {fixed} it would change nothing"
    if adaptive and args.max_repeat is not None and args.max_repeat < AUTO_MIN_REPEAT:
        return (f"--max-repeat {args.max_repeat} is below --repeat auto's minimum of {AUTO_MIN_REPEAT} rounds "
                "(the fewest with a 95% CI of a median); give a fixed --repeat instead")
    if args.depth is not None and args.workload != "deep" and "deep" not in (workloads or []):
        return (f"--depth sets the deep workload's layers; the workload is {args.image or args.workload} "
                "(add --workload deep)")
    if args.seed is not None and args.order == "fixed":
        return "--seed draws the random visiting order; with --order fixed there is nothing to draw"
    if args.cache is not None and scenarios <= {"io", "pull"}:
        return ("--cache: io and pull drop the page cache before every job and pull (always cold); "
                "it would change nothing")
    return None


def _run_precondition(args: argparse.Namespace, workloads: list[str] | None = None) -> str | None:
    """What makes this `bench run` impossible (or an option in it ignored) before anything is
    set up, or None."""
    from .cache import DROP_CACHES

    if not args.driver:
        return "give --driver (or drivers in the --matrix file)"
    if args.host and args.host != ["all"] and not args.cluster:
        return "--host names a cluster's host: it needs --cluster"
    if args.cluster and args.isolate == "none":
        return "--cluster runs every cell in a process of its own: --isolate none cannot apply"
    if args.cluster and args.cluster.startswith("tcp://"):
        return _storage_opts_problem(args)  # the rest are facts of the workers' hosts, not this one
    if args.backing != "loop" and not os.path.isdir(args.backing):
        return f"--backing {args.backing}: not a directory (give 'loop' or an existing directory)"
    problem = _ignored_option(args, workloads)
    if problem:
        return problem
    if args.cache not in (None, "warm") and not os.access(DROP_CACHES, os.W_OK):
        return f"--cache {args.cache} needs to write {DROP_CACHES} (run as root), or use --cache warm"
    if args.backing_fs and args.backing != "loop":
        return f"--backing-fs makes loop filesystems; with --backing {args.backing} the filesystem is that directory's"
    if args.cow_stride is not None and args.cow_stride < 1:
        return "--cow-stride must be at least 1 byte"
    if args.read_bytes < 1:
        return "--read-bytes must be at least 1 byte"
    if args.image is not None and not os.path.isfile(args.image):
        return f"--image {args.image}: no such file"
    if "io" in args.scenario:
        from . import fiojob

        reason = fiojob.missing()
        if reason:
            return f"--scenario io: {reason}"
        if not os.access(DROP_CACHES, os.W_OK):
            return f"--scenario io drops the page cache before every job: it needs to write {DROP_CACHES} (root)"
    if args.peer and not {"exec", "pull"} & set(args.scenario):
        return "--peer measures the exec and pull scenarios: add one of them with --scenario"
    if "pull" in args.scenario:
        import shutil

        missing = [tool for tool in ("docker-registry", "skopeo") if shutil.which(tool) is None]
        if missing:
            return f"--scenario pull needs {' and '.join(missing)} (make deps installs them)"
        if not os.access(DROP_CACHES, os.W_OK):
            return f"--scenario pull drops the page cache before every pull: it needs to write {DROP_CACHES} (root)"
    return _storage_opts_problem(args)


def _storage_opts_problem(args: argparse.Namespace) -> str | None:
    """Malformed driver variants, variants beside --peer, and -o keys naming no driver of the run."""
    from .runner import expand_drivers
    from .variants import VariantError, parse

    try:
        specs = [parse(d) for d in expand_drivers(args.driver)]
    except VariantError as exc:
        return str(exc)
    if args.peer and any(spec.options for spec in specs):
        return "--peer pairs a peer with a driver's defaults: run driver variants (NAME[KEY=VALUE]) without --peer"
    running = [spec.name for spec in specs]
    for key, _ in args.storage_opt:
        if key.split(".", 1)[0] not in running:
            return f"--storage-opt {key}: names no driver of this run ({', '.join(running)})"
    return None


def _with_matrix(argv: list[str], args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    """The options of `bench run --matrix FILE` and the command line, parsed as one; and
    the file's workloads (a dimension the command line gives one value of)."""
    from .matrix import read

    p = parser()
    run_parser = p._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    found = read(args.matrix, run_parser, argv[1:])
    merged = p.parse_args(["run", *found.argv, *argv[1:]])
    merged.driver = (merged.driver or []) + found.drivers
    merged.host = (merged.host or []) + found.hosts
    return merged, found.workloads


def _run(argv: list[str], args: argparse.Namespace) -> int:
    workloads: list[str] = []
    if args.matrix:
        from .matrix import MatrixError

        try:
            args, workloads = _with_matrix(argv, args)
        except MatrixError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
    problem = _run_precondition(args, workloads)
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    config = _config(args)
    problem = _cow_problem(args, config)
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    if args.matrix or args.cluster or args.isolate == "process":
        from .matrix import Matrix, MatrixError
        from .matrixrun import MatrixRun
        from .runner import expand_drivers

        try:
            matrix = Matrix.of(config, expand_drivers(args.driver), workloads, args.host or [])
        except MatrixError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        return MatrixRun(matrix, ["bench", *argv], args.cluster).execute()
    from .runner import Run
    from .workloads import WorkloadError

    try:
        return Run(config, ["bench", *argv]).execute()
    except WorkloadError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while the workload was being built: nothing to clean up
        return 130


def _config(args: argparse.Namespace) -> RunConfig:
    config = RunConfig(
        drivers=args.driver,
        scenarios=args.scenario,
        workload=args.workload,
        image=args.image,
        depth=args.depth,
        depths=args.depths or FULL_DEPTHS,
        repeat=AUTO_MIN_REPEAT if args.repeat in (None, "auto") else args.repeat,
        adaptive=args.repeat == "auto" or (args.repeat is None and not args.quick),
        target_ci=TARGET_CI if args.target_ci is None else args.target_ci,
        max_repeat=MAX_REPEAT if args.max_repeat is None else args.max_repeat,
        max_time=MAX_TIME if args.max_time is None else args.max_time,
        warmup=1 if args.warmup is None else args.warmup,
        cache=args.cache or "warm",
        backing=args.backing,
        execdrivers=args.execdriver or list(EXECDRIVERS),
        out=args.out or "",
        scratch=args.scratch,
        quick=args.quick,
        storage_opts=dict(args.storage_opt),
        io_runtime=args.io_runtime or IO_RUNTIME[False],
        io_jobs=args.io_jobs or [],
        seed=new_seed() if args.seed is None else args.seed,
        order=args.order,
        cpus=args.cpus or [],
        backing_fs=args.backing_fs or [],
        pad_bytes=args.pad_bytes or 0,
        copyup_bytes=args.copyup_bytes or COPYUP_BYTES[False],
        cow_stride=COW_STRIDE if args.cow_stride is None else args.cow_stride,
        read_bytes=args.read_bytes,
        peers=list(dict.fromkeys(args.peer)),
        floors=args.floors,
    )
    quick_defaults(
        config,
        repeat_given=args.repeat is not None,
        warmup_given=args.warmup is not None,
        depths_given=args.depths is not None,
        io_runtime_given=args.io_runtime is not None,
        copyup_given=args.copyup_bytes is not None,
    )
    config.cow_writes = args.cow_writes or min(COW_WRITES, config.copyup_bytes // config.cow_stride)
    return config


def _cow_problem(args: argparse.Namespace, config: RunConfig) -> str | None:
    """Why the copy-on-write writes cannot fit in the big lower file, or None."""
    fit = config.copyup_bytes // config.cow_stride
    if args.cow_writes is not None and args.cow_writes > fit:
        return (f"--cow-writes {args.cow_writes} x --cow-stride {config.cow_stride} does not fit in the "
                f"{config.copyup_bytes}-byte big lower file (at most {fit}; or raise --copyup-bytes)")
    if config.cow_writes < 1:
        return f"--cow-stride {config.cow_stride} is larger than the big lower file"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.command == "run":
        return _run(argv, args)
    if args.command == "report":
        from .report import report

        return report(args.dirs, args.out)
    if args.command == "compare":
        from .compare import compare

        if args.hosts:
            if args.base is None or args.new is not None or args.split:
                print("bench compare: --hosts A B compares two hosts of one run: give just that RUN", file=sys.stderr)
                return 2
        elif (args.split is None) == (args.base is None or args.new is None) or (args.split and args.base):
            print("bench compare: give BASE and NEW, or --split RUN, or --hosts A B RUN", file=sys.stderr)
            return 2
        return compare(
            args.base,
            args.new,
            args.fail_above,
            split_dir=args.split,
            hosts=tuple(args.hosts) if args.hosts else None,
            allow_different=args.allow_different,
            absolute=args.absolute,
            alpha=args.fdr,
        )
    if args.command == "history":
        from .history import history

        return history(args.dirs, args.out, args.threshold)
    if args.command == "verify":
        from .verify import BEHAVIOUR_KEYS, DRIVERS, VerifyError, verify

        bad = [k for k in args.only or [] if k not in BEHAVIOUR_KEYS] + [
            d for d in args.driver or [] if d not in DRIVERS
        ]
        if bad:
            print(
                f"bench verify: unknown {', '.join(bad)} (behaviours: {', '.join(BEHAVIOUR_KEYS)}; "
                f"drivers: {', '.join(DRIVERS)})",
                file=sys.stderr,
            )
            return 2
        try:
            return verify(quick=args.quick, drivers=args.driver, only=args.only, repeat=args.repeat, out=args.out)
        except VerifyError as exc:
            print(f"bench verify: {exc}", file=sys.stderr)
            return 1
    from .listing import list_drivers

    return list_drivers()


if __name__ == "__main__":
    sys.exit(main())
