"""The `raftex` command: benchmarks now; node, local cluster and admin as they land."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster.bench import REFERENCE_MATCHER, format_engine_bench, run_engine_bench


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftex", description="A Raft-replicated stock exchange")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run a standard benchmark")
    targets = bench.add_subparsers(dest="target", required=True)
    engine = targets.add_parser("engine", help="the engine alone, in one process")
    engine.add_argument("--commands", type=_positive, default=200_000)
    engine.add_argument("--seed", type=int, default=1)
    engine.add_argument("--json", action="store_true", help="print one JSON object")
    engine.add_argument(
        "--reference",
        type=Path,
        default=REFERENCE_MATCHER,
        help="reference matcher to run side by side (default: shared/bench)",
    )
    engine.add_argument("--no-reference", action="store_true", help="skip the reference run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench" and args.target == "engine":
        reference = None if args.no_reference else args.reference
        result = run_engine_bench(args.commands, args.seed, reference)
        print(format_engine_bench(result, args.json))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
