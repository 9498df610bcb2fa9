"""`python -m ksmbook classroom assignment`: nbgrader assignments from the chapter exercises."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_classroom_parser"]

_EPILOG = """\
then, in the course folder, nbgrader's own commands:
  nbgrader generate_assignment chapter02    # release/chapter02/: answers and hidden tests removed
  nbgrader release_assignment chapter02     # students fetch it from JupyterLab
  nbgrader collect chapter02
  nbgrader autograde chapter02
  nbgrader generate_feedback chapter02
  nbgrader export                           # grades.csv"""


def add_classroom_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `classroom` command to the `python -m ksmbook` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "classroom", help="teach with the book: nbgrader assignments")
    sub = p.add_subparsers(dest="classroom_command", required=True)
    a = sub.add_parser(
        "assignment", help="write an nbgrader source notebook of a chapter's exercises",
        description="Write DIR/source/NAME/NAME.ipynb, an nbgrader source notebook of the "
                    "exercises that end chapter N (answers and hidden tests computed by the "
                    "simulator), and DIR/nbgrader_config.py if it is missing.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--chapter", type=int, required=True, metavar="N")
    a.add_argument("--course", required=True, metavar="DIR", help="the nbgrader course folder")
    a.add_argument("--name", help="assignment name (default chapterNN)")
    a.add_argument("--count", type=int, metavar="K", help="only the first K exercises")
    a.add_argument("--seed", type=int, default=0,
                   help="0 (default): the book's exercises; another seed: other problems of "
                        "the same kinds")
    a.add_argument("--force", action="store_true", help="overwrite an existing assignment")
    a.set_defaults(func=_assignment)
    return p


def _assignment(args: argparse.Namespace) -> int:
    from .assignment import AssignmentError, write_assignment

    try:
        path = write_assignment(args.chapter, args.course, name=args.name, count=args.count,
                                seed=args.seed, force=args.force)
    except AssignmentError as e:
        print(f"classroom assignment: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0
