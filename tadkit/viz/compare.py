"""Paper Fig. 1 style figure: mAP per GT-duration bin of several detection files side by side.

A2Net (TIP 2020) Fig. 1 compares its anchor-free and anchor-based branches per action-duration bin
(ES ... EL) with grouped bars. :func:`plot_duration_comparison` draws that figure from
:class:`tadkit.evaluation.analysis.DurationBreakdown` objects (one per detection file, all made with
the same bin preset), on matplotlib's Agg canvas (no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tadkit.errors import TadkitError


def plot_duration_comparison(
    breakdowns: Mapping[str, object],
    path: str | os.PathLike,
    tiou_index: int = 0,
    title: str | None = None,
) -> Path:
    """Grouped bars: x = duration bin, one bar per entry of ``breakdowns`` ({legend label:
    DurationBreakdown}), y = mAP (%) at ``tiou[tiou_index]``, value printed on each bar.

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
    tiou = items[0][1].tiou
    if not -len(tiou) <= tiou_index < len(tiou):
        raise TadkitError(f"tiou_index {tiou_index} out of range for {len(tiou)} thresholds", field="tiou_index")
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise TadkitError("the comparison plot is written as PNG: give a .png path", file=str(out), field="plot")
    values = np.array([[100.0 * b.mAP[tiou_index] if b.num_gt else np.nan for b in br.bins] for _, br in items])

    fig = Figure(figsize=(1.6 + 1.3 * len(names), 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    n = len(items)
    width = 0.8 / n
    x = np.arange(len(names))
    for k, (label, _) in enumerate(items):
        bars = ax.bar(x - 0.4 + width * (k + 0.5), np.nan_to_num(values[k]), width, label=label)
        for bar, v in zip(bars, values[k]):
            if np.isfinite(v):
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.5, f"{v:.1f}",
                        ha="center", va="bottom", fontsize=7)
    spans = []
    first = items[0][1]
    for b in first.bins:
        if getattr(first, "preset", "seconds") == "a2net-table1":
            spans.append(f"{b.name}\n{b.low:g}-{b.high:g} s" if b.num_gt else b.name)
        else:
            spans.append(f"{b.name}\n[{b.low:g}, {'inf' if b.high is None else format(b.high, 'g')}) s")
    ax.set_xticks(x)
    ax.set_xticklabels(spans, fontsize=8)
    ax.set_xlabel("ground-truth action duration")
    ax.set_ylabel(f"mAP@{tiou[tiou_index]:g} (%)")
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    ax.set_ylim(0, max(10.0, top * 1.15))
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or f"mAP per duration bin (preset {getattr(first, 'preset', 'seconds')}, "
                          f"{first.protocol})", fontsize=9)
    ax.grid(axis="y", linestyle=":", linewidth=0.6)
    ax.set_axisbelow(True)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    except OSError as error:
        raise TadkitError(f"cannot write plot ({error.strerror})", file=str(out), field="plot") from None
    return out
