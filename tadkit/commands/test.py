"""`tadkit test` (placeholder until its issue lands; the owner replaces this file)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("test", help="(not implemented yet)")
    parser.set_defaults(func=lambda args: print("tadkit test is not implemented yet") or 1)
