"""Progress that reads well on a terminal and in a log file.

On a terminal, :func:`progress` is a tqdm bar. Written to a file or a pipe, a tqdm bar becomes one
enormous line of ``\\r``-separated redraws, so there it prints plain lines instead: one at every 10 %
of the total (``percent_step``) or every 30 s (``min_interval_s``), whichever comes first, and a
last line when the loop ends::

    extract: 30% (60/200 videos) 41.2 s elapsed, ~96 s left
    extract: done, 200 videos in 137.9 s

``TADKIT_PROGRESS=bar|plain|off`` forces one style (e.g. ``plain`` under a CI that fakes a TTY).
The object returned supports the tqdm calls tadkit uses: iteration, ``update(n)``,
``set_postfix(**kw)``, ``set_description(s)``, ``close()`` and ``with``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Iterable, Iterator, TextIO

__all__ = ["PlainProgress", "progress", "progress_style"]

STYLES = ("bar", "plain", "off")


def progress_style(file: TextIO | None = None, disable: bool = False) -> str:
    """``bar`` on a terminal, ``plain`` otherwise, ``off`` when disabled; ``$TADKIT_PROGRESS`` wins."""
    if disable:
        return "off"
    forced = os.environ.get("TADKIT_PROGRESS", "").strip().lower()
    if forced in STYLES:
        return forced
    stream = file if file is not None else sys.stderr
    try:
        return "bar" if stream.isatty() else "plain"
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return "plain"


def _scaled(value: float, unit: str, unit_scale: bool) -> str:
    if not unit_scale:
        return f"{value:g}" if value != int(value) else f"{int(value)}"
    for prefix in ("", "k", "M", "G", "T"):
        if abs(value) < 1000 or prefix == "T":
            return f"{value:.1f} {prefix}{unit}" if prefix else f"{value:g} {unit}"
        value /= 1000.0
    raise AssertionError  # unreachable


class PlainProgress:
    """Periodic one-line progress reports for non-terminals (see the module docstring)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        unit_scale: bool = False,
        file: TextIO | None = None,
        percent_step: float = 10.0,
        min_interval_s: float = 30.0,
        clock: Any = time.monotonic,
        initial: float = 0,
        quiet_s: float = 0.0,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self.file = file
        self.percent_step = float(percent_step)
        self.min_interval_s = float(min_interval_s)
        self.quiet_s = float(quiet_s)  # a loop that ends sooner prints nothing (no noise from quick steps)
        self.printed = False
        self.clock = clock
        self.n: float = initial
        self.postfix = ""
        self.start = clock()
        self.last_time = self.start
        self.last_step = self._step()
        self.closed = False

    # -- tqdm-compatible API ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("PlainProgress without an iterable: call update(n)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total) if self.total is not None else 0

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        step = self._step()
        if step > self.last_step or now - self.last_time >= self.min_interval_s:
            if (self.total is None or self.n < self.total) and now - self.start >= self.quiet_s:
                self._emit(self._line(now))  # the end gets its own "done" line
                self.printed = True
            self.last_step, self.last_time = step, now

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:  # nothing to redraw
        pass

    def write(self, s: str) -> None:
        self._emit(s)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        elapsed = self.clock() - self.start
        if not self.printed and elapsed < self.quiet_s:
            return
        count = _scaled(self.n, self.unit, self.unit_scale) if self.unit_scale else f"{self._count()} {self.unit}"
        if self.total is not None and self.n < self.total:
            total = _scaled(self.total, self.unit, self.unit_scale) if self.unit_scale else f"{self._count(self.total)}"
            self._emit(f"{self._prefix()}stopped at {count} of {total} after {elapsed:.1f} s{self._post()}")
        else:
            self._emit(f"{self._prefix()}done, {count} in {elapsed:.1f} s{self._post()}")

    # -- internals --------------------------------------------------------------------------------

    def _step(self) -> int:
        if not self.total or self.percent_step <= 0:
            return 0
        return int(math.floor(100.0 * self.n / self.total / self.percent_step + 1e-9))

    def _count(self, value: float | None = None) -> str:
        value = self.n if value is None else value
        return f"{int(value)}" if float(value).is_integer() else f"{value:g}"

    def _prefix(self) -> str:
        return f"{self.desc}: " if self.desc else ""

    def _post(self) -> str:
        return f" [{self.postfix}]" if self.postfix else ""

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        if self.total:
            done = _scaled(self.n, self.unit, self.unit_scale) if self.unit_scale else self._count()
            total = (_scaled(self.total, self.unit, self.unit_scale) if self.unit_scale
                     else f"{self._count(self.total)} {self.unit}")
            text = f"{100.0 * self.n / self.total:.0f}% ({done}/{total}) {elapsed:.1f} s elapsed"
            if 0 < self.n < self.total:
                text += f", ~{elapsed * (self.total - self.n) / self.n:.0f} s left"
        else:
            done = _scaled(self.n, self.unit, self.unit_scale) if self.unit_scale else f"{self._count()} {self.unit}"
            text = f"{done} after {elapsed:.1f} s"
        return f"{self._prefix()}{text}{self._post()}"

    def _emit(self, line: str) -> None:
        stream = self.file if self.file is not None else sys.stderr
        print(line, file=stream, flush=True)


class _Silent:
    """``disable=True``: iterate, accept every call, print nothing."""

    def __init__(self, iterable: Iterable[Any] | None, total: float | None) -> None:
        self.iterable = iterable
        self.total = total
        self.n: float = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.n += 1

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def update(self, n: float = 1) -> None:
        self.n += n

    def __getattr__(self, name: str) -> Any:  # set_postfix, close, refresh, ...: no-ops
        return lambda *args, **kwargs: None


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    unit_scale: bool = False,
    file: TextIO | None = None,
    disable: bool = False,
    percent_step: float = 10.0,
    min_interval_s: float = 30.0,
    quiet_s: float = 2.0,
    **tqdm_kwargs: Any,
) -> Any:
    """A tqdm bar on a terminal, :class:`PlainProgress` lines otherwise (drop-in for ``tqdm(...)``).

    ``iterable=None`` gives a manual counter (``update(n)``; e.g. bytes with ``unit="B",
    unit_scale=True``). Extra keyword arguments go to tqdm and are ignored by the plain style. In the
    plain style a loop that ends within ``quiet_s`` seconds prints nothing.
    """
    style = progress_style(file, disable)
    if style == "off":
        return _Silent(iterable, total)
    if style == "bar":
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc or None, unit=unit, unit_scale=unit_scale, file=file,
                    **tqdm_kwargs)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, file=file,
                         percent_step=percent_step, min_interval_s=min_interval_s, quiet_s=quiet_s,
                         initial=tqdm_kwargs.get("initial", 0))
