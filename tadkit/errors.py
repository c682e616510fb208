"""One error type for bad user input: it names the file, the video and the field."""

from __future__ import annotations

import dataclasses
from typing import Iterable


class TadkitError(Exception):
    """Bad input or a failed precondition the user can fix.

    The CLI prints ``str(error)`` on one line and exits with code 2; no traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        video: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.video = video
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.video is not None:
            where.append(f"video {self.video}")
        if self.field is not None:
            where.append(f"field {self.field}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


def reject_unknown_fields(
    cls: type, keys: Iterable[str], what: str, *, field: str | None = None, file: str | None = None,
    known: str | None = "sorted",
) -> None:
    """One error for the keys that are not fields of dataclass ``cls``: ``unknown {what} [...]`` plus the
    known names (``known``: "sorted", "declared" order, or None to omit them); ``field`` None names the
    first unknown key."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(keys) - set(names))
    if not unknown:
        return
    listed = {"sorted": sorted(names), "declared": names, None: None}[known]
    message = f"unknown {what} {unknown}" + ("" if listed is None else f"; known: {listed}")
    raise TadkitError(message, file=file, field=unknown[0] if field is None else field)
