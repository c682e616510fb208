"""Timing helper shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Shortest wall time of ``repeat`` calls: the least disturbed by other load on the machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
