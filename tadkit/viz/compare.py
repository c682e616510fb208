"""Paper Fig. 1 style figure: mAP per GT-duration bin of several detection files side by side.

A2Net (TIP 2020) Fig. 1 compares its anchor-free and anchor-based branches per action-duration bin
(ES ... EL) with grouped bars. :func:`plot_duration_comparison` draws that figure from
:class:`tadkit.evaluation.analysis.DurationBreakdown` objects (one per detection file or run, all made
with the same bin preset), with the same drawing as a run's own ``per_duration_map.png``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from tadkit.errors import TadkitError
from tadkit.viz.plots import plot_duration_map


def plot_duration_comparison(
    breakdowns: Mapping[str, object],
    path: str | os.PathLike,
    tiou_index: int = 0,
    title: str | None = None,
) -> Path:
    """Grouped bars: x = duration bin, one bar per entry of ``breakdowns`` ({legend label:
    DurationBreakdown}), y = mAP (%) at ``tiou[tiou_index]``, value printed on each bar; drawn by
    :func:`tadkit.viz.plots.plot_duration_map` (bin ranges and GT counts under each bin name).

    Every breakdown must have the same bins (names, in order). Writes a PNG; returns its path.
    """
    if not breakdowns:
        raise TadkitError("nothing to plot: no duration breakdown given", field="breakdowns")
    items = list(breakdowns.items())
    names = [b.name for b in items[0][1].bins]
    for label, br in items[1:]:
        if [b.name for b in br.bins] != names:
            raise TadkitError(f"{label}: duration bins {[b.name for b in br.bins]} differ from {names}",
                              field="bins")
    first = items[0][1]
    tiou = first.tiou
    if not -len(tiou) <= tiou_index < len(tiou):
        raise TadkitError(f"tiou_index {tiou_index} out of range for {len(tiou)} thresholds", field="tiou_index")
    values = {label: {b.name: 100.0 * b.mAP[tiou_index] if b.num_gt else 0.0 for b in br.bins} for label, br in items}
    ranges = {b.name: (b.low, b.high) if b.num_gt and np.isfinite(b.low) else None for b in first.bins}
    counts = {b.name: int(b.num_gt) for b in first.bins}
    preset = getattr(first, "preset", "seconds")
    heading = title or (f"mAP@{tiou[tiou_index]:g} per GT duration: {' vs '.join(label for label, _ in items)}\n"
                        f"({first.protocol} protocol, bins {preset})")
    return plot_duration_map(values, path, heading, ylabel=f"mAP@{tiou[tiou_index]:g}", unit="%", ranges=ranges,
                             counts=counts)
