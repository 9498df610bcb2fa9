"""Command line: ``python -m ksmbook run FILE|-`` replays a scenario and prints each step
(and after ksmd and sysfs statements, ksmd's counters)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .procfs import format_maps
from .profiles import PROFILES
from .scenario import ScenarioError, boot, parse, run


def _run(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"{args.file}: cannot read the scenario: {e}", file=sys.stderr)
        return 2
    try:
        scenario = parse(text)
        kernel = boot(scenario, args.profile, False if args.no_ksm else None)
        results = run(scenario, kernel)
    except ScenarioError as e:
        print(f"{args.file}: {e}", file=sys.stderr)
        return 2
    print(f"# {kernel.profile.title}, CONFIG_KSM={'y' if kernel.config_ksm else 'n'}")
    for r in results:
        print(f"{r.op!s:<50} = {r.outcome()}")
        if r.counters is not None:
            print("    " + " ".join(f"{name}={value}" for name, value in r.counters.items()))
        if args.trace and r.trace is not None:
            print("\n".join(f"    {s}" for s in r.trace.steps))
        if args.maps and r.trace is not None:
            for name, entries in r.maps.items():
                print(f"  [{name}]")
                print("\n".join(f"    {line}" for line in format_maps(entries).splitlines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ksmbook",
                                     description="The ksmbook kernel simulator.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="replay a scenario file ('-' for standard input)")
    p_run.add_argument("file")
    p_run.add_argument("--maps", action="store_true", help="print the maps after each step")
    p_run.add_argument("--trace", action="store_true", help="print each step's kernel path")
    p_run.add_argument("--profile", choices=list(PROFILES), help="override the kernel line")
    p_run.add_argument("--no-ksm", action="store_true", help="boot with CONFIG_KSM=n")
    p_run.set_defaults(func=_run)
    from .exercises.cli import add_quiz_parser
    add_quiz_parser(sub)
    from .classroom.cli import add_classroom_parser
    add_classroom_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
