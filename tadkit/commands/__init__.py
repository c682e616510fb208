"""The `tadkit` commands, one module each (see :mod:`tadkit.cli`); shared argument helpers here."""

from __future__ import annotations

import argparse


def add_method_module_argument(parser: argparse.ArgumentParser) -> None:
    """``--method-module MODULE[:SPEC]``: the one way besides a config to name a plug-in method for a
    checkpoint (a checkpoint never makes tadkit import a module)."""
    parser.add_argument(
        "--method-module", action="append", default=[], metavar="MODULE[:SPEC]",
        help="import your own method's module (its MethodSpec SPEC, or the attribute after ':') so that a "
        "checkpoint of that method can be loaded; a checkpoint alone never makes tadkit import code (repeatable)",
    )


def load_method_modules(args: argparse.Namespace) -> None:
    """Import the plug-in methods named with ``--method-module`` (the user's command line: trusted code)."""
    from tadkit.methods import load_method_module

    for text in getattr(args, "method_module", None) or []:
        load_method_module(text)
