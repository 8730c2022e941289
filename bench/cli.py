"""The `bench` command: run, report, compare, list."""

from __future__ import annotations

import argparse
import os
import sys

from .config import (
    AUTO_MIN_REPEAT,
    EXECDRIVERS,
    FULL_DEPTHS,
    IO_RUNTIME,
    MAX_REPEAT,
    MAX_TIME,
    TARGET_CI,
    RunConfig,
    quick_defaults,
)
from .peers import PEERS
from .scenarios import DEFAULT_SCENARIOS, SCENARIOS
from .workloads import WORKLOADS


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


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1 (e.g. 0.10 for 10% of the median)")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="strata's graphdriver benchmark harness")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure drivers; writes a result directory")
    run.add_argument("--driver", action="append", required=True, help="driver name (repeatable) or 'all'")
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
        default=TARGET_CI,
        help=f"--repeat auto: wanted 95%% CI width of each median, as a fraction of it (default {TARGET_CI})",
    )
    run.add_argument(
        "--max-repeat", type=_positive, default=MAX_REPEAT, help=f"--repeat auto: most rounds (default {MAX_REPEAT})"
    )
    run.add_argument(
        "--max-time",
        type=float,
        default=MAX_TIME,
        help=f"--repeat auto: most seconds per phase (scenario x cache mode x depth; default {MAX_TIME:.0f})",
    )
    run.add_argument("--warmup", type=_non_negative, help="unrecorded warm-up repetitions (default 1)")
    run.add_argument("--cache", choices=("warm", "cold", "both"), default="warm")
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
        help="also measure the primitive each step cannot beat (mount, snapshot, tar -x, runc run; default on)",
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

    history = sub.add_parser("history", help="each group's median over commits (asv-style); flags steps beyond noise")
    history.add_argument("dirs", nargs="+", metavar="RESULTS_DIR")
    history.add_argument("--out", required=True, help="where history.csv and a figure per flagged step go")
    history.add_argument(
        "--threshold", type=float, default=1.2, help="a step needs a ratio beyond this (and non-overlapping CIs)"
    )

    sub.add_parser("list", help="registered drivers: can they run here, backend, why not")
    return p


def _run_precondition(args: argparse.Namespace) -> str | None:
    """What makes this `bench run` impossible before anything is set up, or None."""
    from .cache import DROP_CACHES

    if args.backing != "loop" and not os.path.isdir(args.backing):
        return f"--backing {args.backing}: not a directory (give 'loop' or an existing directory)"
    if args.cache != "warm" and not os.access(DROP_CACHES, os.W_OK):
        return f"--cache {args.cache} needs to write {DROP_CACHES} (run as root), or use --cache warm"
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
    from .runner import expand_drivers

    running = expand_drivers(args.driver)
    for key, _ in args.storage_opt:
        if key.split(".", 1)[0] not in running:
            return f"--storage-opt {key}: names no driver of this run ({', '.join(running)})"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.command == "run":
        problem = _run_precondition(args)
        if problem:
            print(f"bench: {problem}", file=sys.stderr)
            return 2
        from .runner import Run

        config = RunConfig(
            drivers=args.driver,
            scenarios=args.scenario,
            workload=args.workload,
            image=args.image,
            depth=args.depth,
            depths=args.depths or FULL_DEPTHS,
            repeat=AUTO_MIN_REPEAT if args.repeat in (None, "auto") else args.repeat,
            adaptive=args.repeat == "auto" or (args.repeat is None and not args.quick),
            target_ci=args.target_ci,
            max_repeat=args.max_repeat,
            max_time=args.max_time,
            warmup=1 if args.warmup is None else args.warmup,
            cache=args.cache,
            backing=args.backing,
            execdrivers=args.execdriver or list(EXECDRIVERS),
            out=args.out or "",
            scratch=args.scratch,
            quick=args.quick,
            storage_opts=dict(args.storage_opt),
            io_runtime=args.io_runtime or IO_RUNTIME[False],
            peers=list(dict.fromkeys(args.peer)),
            floors=args.floors,
        )
        quick_defaults(
            config,
            repeat_given=args.repeat is not None,
            warmup_given=args.warmup is not None,
            depths_given=args.depths is not None,
            io_runtime_given=args.io_runtime is not None,
        )
        from .workloads import WorkloadError

        try:
            return Run(config, ["bench", *argv]).execute()
        except WorkloadError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # while the workload was being built: nothing to clean up
            return 130
    if args.command == "report":
        from .report import report

        return report(args.dirs, args.out)
    if args.command == "compare":
        from .compare import compare

        if (args.split is None) == (args.base is None or args.new is None) or (args.split and args.base):
            print("bench compare: give BASE and NEW, or --split RUN", file=sys.stderr)
            return 2
        return compare(
            args.base,
            args.new,
            args.fail_above,
            split_dir=args.split,
            allow_different=args.allow_different,
            alpha=args.fdr,
        )
    if args.command == "history":
        from .history import history

        return history(args.dirs, args.out, args.threshold)
    from .listing import list_drivers

    return list_drivers()


if __name__ == "__main__":
    sys.exit(main())
