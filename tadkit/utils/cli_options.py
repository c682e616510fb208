"""Command-line options several ``tadkit`` commands share, defined once (no torch, no YAML at import).

``--set``: one ``--set`` takes one or more ``KEY=VALUE`` pairs and may repeat, so
``--set a=1 b=2 --set c=3`` gives ``["a=1", "b=2", "c=3"]`` in ``args.overrides``.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence


class _ExtendOverrides(argparse.Action):
    """Append every ``KEY=VALUE`` of one ``--set`` to ``dest``; a value without ``=`` is a usage error
    that names it (usually a positional argument written after ``--set``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        values = [values] if isinstance(values, str) else list(values or [])
        bad = [value for value in values if "=" not in value]
        if bad:
            parser.error(f"{option_string} takes KEY=VALUE pairs, got {bad[0]!r} (write positional arguments "
                         f"before {option_string})")
        current = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, current + values)


def add_set_option(parser: argparse.ArgumentParser | Any, help: str) -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]`` (repeatable) into ``args.overrides``."""
    parser.add_argument("--set", dest="overrides", action=_ExtendOverrides, nargs="+", default=[],
                        metavar="KEY=VALUE", help=f"{help}; one --set takes one or more pairs and may repeat")


__all__ = ["add_set_option"]
