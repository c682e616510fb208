"""The ```bash blocks of a docs/ page section, as commands (for tests that run the docs as written)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def section_commands(page: str, heading: str) -> list[str]:
    """Commands of every ```bash block under the ``## heading`` of ``docs/page`` (up to the next ``## ``):
    continuations joined, comments and blank lines dropped."""
    text = (DOCS / page).read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:] if end < 0 else text[start:end]
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def tadkit_argv(command: str) -> list[str]:
    """``tadkit a b c`` -> ``["a", "b", "c"]`` for :func:`tadkit.cli.main`."""
    argv = shlex.split(command)
    assert argv[0] == "tadkit", command
    return argv[1:]
