"""`tadkit` command line. Each command group lives in ``tadkit/commands/<name>.py`` and exposes
``register(subparsers)``; the parser sets ``func(args) -> int``.

Only the command being run is imported (``tadkit --help`` imports none, ``tadkit eval`` never
imports torch): start-up stays well under a second. User errors (:class:`tadkit.errors.TadkitError`)
print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tadkit import __version__
from tadkit.errors import TadkitError

# Order = order in `tadkit --help`; the one-line help shown without importing the command.
COMMANDS: dict[str, str] = {
    "demo": "synthetic data -> train a method -> evaluate -> plots (minutes on 2 CPU cores)",
    "data": "annotation and feature tools: stats, convert, synth, import-features",
    "eval": "score detections or proposals with the official protocols",
    "view": "one self-contained HTML page to look at a run's detections",
    "train": "train a method from a YAML config",
    "test": "detect on the test subset and evaluate a checkpoint",
    "detect": "detect actions in one video file or feature file",
    "extract": "extract I3D features from videos",
    "weights": "prepare pretrained weights (I3D Kinetics-400)",
    "convert": "convert the authors' checkpoints to tadkit checkpoints",
}
COMMAND_MODULES = list(COMMANDS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``only`` = the one command to register fully (others get a help line only), None = all."""
    parser = argparse.ArgumentParser(prog="tadkit", description="Temporal action localization toolkit.")
    parser.add_argument("--version", action="version", version=f"tadkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"tadkit.commands.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def _command_of(argv: list[str]) -> str:
    """The command named on the command line ('' when none: then nothing is imported)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else ""
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command_of(argv))
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
