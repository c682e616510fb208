"""`tadkit` command line. Each command group lives in ``tadkit/commands/<name>.py`` and exposes
``register(subparsers)``; the parser sets ``func(args) -> int``.

User errors (:class:`tadkit.errors.TadkitError`) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tadkit import __version__
from tadkit.errors import TadkitError

# Order = order in `tadkit --help`.
COMMAND_MODULES = [
    "demo",
    "data",
    "eval",
    "train",
    "test",
    "detect",
    "extract",
    "weights",
    "convert",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tadkit", description="Temporal action localization toolkit.")
    parser.add_argument("--version", action="version", version=f"tadkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"tadkit.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TadkitError as error:
        print(f"tadkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tadkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `tadkit ... | head`: the reader left; silence the flush at exit and stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
