"""PNG plots for reports: mAP per duration bin, PR curves, and what every plot shares (class colours,
atomic PNG writing, checks). Timelines: :mod:`tadkit.viz.timeline`; training curves: :mod:`tadkit.viz.curves`.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no display needed, safe in
worker processes) and written atomically. Every function validates its input and raises
:class:`TadkitError` naming the offending field instead of producing an empty or broken image.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from tadkit.errors import TadkitError
from tadkit.utils.io import atomic_open

__all__ = ["plot_duration_map", "plot_pr_curve", "class_colors"]

_DPI = 100


#: matplotlib's qualitative palettes: the pool the class colours are picked from
_PALETTE_SOURCES = (("tab10", 10), ("tab20", 20), ("tab20b", 20), ("tab20c", 20), ("Set1", 9), ("Dark2", 8),
                    ("Set2", 8), ("Accent", 8), ("Paired", 12))
_PALETTE_SIZE = 38


def _cielab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (N, 3) -> CIELAB (D65), where Euclidean distance ~ perceived difference."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


@lru_cache(maxsize=1)
def _palette() -> tuple[tuple[float, float, float, float], ...]:
    """38 colours, each as far (CIELAB) from all earlier ones as the pool allows: farthest-point order
    from tab:blue over matplotlib's qualitative palettes, greys and washed-out shades left out (grey
    never stands for a class). The first 20 differ by >= 25 CIELAB units: distinct for 20 classes."""
    from matplotlib import colormaps

    every = np.array([colormaps[name](i)[:3] for name, n in _PALETTE_SOURCES for i in range(n)])
    pool = every[np.sort(np.unique(np.round(every, 4), axis=0, return_index=True)[1])]  # palettes share colours
    lab = _cielab(pool)
    vivid = (np.hypot(lab[:, 1], lab[:, 2]) > 25) & (lab[:, 0] > 25) & (lab[:, 0] < 88)
    pool, lab = pool[vivid], lab[vivid]
    first = int(np.argmin(((pool - np.asarray(colormaps["tab10"](0)[:3])) ** 2).sum(axis=1)))
    chosen, distance = [first], np.linalg.norm(lab - lab[first], axis=1)
    while len(chosen) < _PALETTE_SIZE:
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(lab - lab[nxt], axis=1))
    return tuple(to_rgba(tuple(pool[i])) for i in chosen)


def class_colors(class_names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A stable colour per class, fixed by the class order; never grey (38 colours, then cycling)."""
    palette = _palette()
    return {name: palette[i % len(palette)] for i, name in enumerate(class_names)}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise TadkitError("plots are written as PNG; give a path ending in .png", file=str(path), field="path")
    return path


def _save(fig: Figure, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=_DPI)
    return path


def _finite_number(value: Any, field: str, video: str | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TadkitError(f"{value!r} is not a number", video=video, field=field) from None
    if not math.isfinite(number):
        raise TadkitError(f"{value!r} is not finite", video=video, field=field)
    return number


# --------------------------------------------------------------------------------------------- #
# mAP per duration bin
# --------------------------------------------------------------------------------------------- #


def _range_text(low: Any, high: Any, bin_name: str) -> str:
    lo = _finite_number(low, f"ranges.{bin_name}")
    if high is None or (isinstance(high, float) and math.isinf(high) and high > 0):
        return f">= {lo:g} s"
    hi = _finite_number(high, f"ranges.{bin_name}")
    if hi <= lo:
        raise TadkitError(f"bin {bin_name!r}: range ({lo:g}, {hi:g}) is empty", field="ranges")
    return f"{lo:g}-{hi:g} s"


def plot_duration_map(
    bins: Mapping[str, float] | Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    ylabel: str = "mAP@0.5",
    unit: str | None = None,
    ranges: Mapping[str, tuple[float, float | None]] | None = None,
    counts: Mapping[str, int] | None = None,
) -> Path:
    """Bars of a metric per GT-duration bin (A2Net Fig. 1 / Table I style).

    ``bins`` is ``{bin: value}`` for one method or ``{method: {bin: value}}`` for several methods
    side by side (all with the same bins; bar order = the first method's bin order).

    Keyword arguments (all optional): ``unit`` is appended to the axis label ("%" -> "mAP@0.5 (%)",
    and the axis then ends at 100 at most); ``ranges`` ``{bin: (low_s, high_s or None)}`` and
    ``counts`` ``{bin: GT instances}`` are written under each bin name ("S / 1.5-2.5 s / 712 GT"; a
    range of ``None`` writes none);
    a bin with 0 GT is marked "no GT" instead of showing a bar value.
    """
    path = _check_path(path)
    if not isinstance(bins, Mapping) or not bins:
        raise TadkitError("needs at least one bin", field="bins")
    first = next(iter(bins.values()))
    methods: dict[str, Mapping[str, Any]] = dict(bins) if isinstance(first, Mapping) else {"": bins}
    bin_names: list[str] | None = None
    table: dict[str, list[float]] = {}
    for method, values in methods.items():
        if not isinstance(values, Mapping) or not values:
            raise TadkitError(f"method {method!r} has no bins", field="bins")
        names = [str(k) for k in values]
        if bin_names is None:
            bin_names = names
        elif set(names) != set(bin_names):
            raise TadkitError(f"method {method!r} has bins {names}, expected {bin_names}", field="bins")
        table[method] = [_finite_number(values[b], f"bins.{b}") for b in bin_names]
        if any(v < 0 for v in table[method]):
            raise TadkitError(f"negative value for method {method!r}", field="bins")
    assert bin_names is not None
    tick_lines: list[list[str]] = [[b] for b in bin_names]
    for extra, field in ((ranges, "ranges"), (counts, "counts")):
        if extra is None:
            continue
        if not isinstance(extra, Mapping) or set(map(str, extra)) != set(bin_names):
            got = sorted(map(str, extra)) if isinstance(extra, Mapping) else type(extra).__name__
            raise TadkitError(f"must give every bin {bin_names} exactly, got {got}", field=field)
    gt_counts: dict[str, int] = {}
    if counts is not None:
        for b in bin_names:
            n = counts[b]
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise TadkitError(f"bin {b!r}: GT count must be a non-negative integer, got {n!r}", field="counts")
            gt_counts[b] = int(n)
    for i, b in enumerate(bin_names):
        if ranges is not None and ranges[b] is not None:  # None: a bin without a range (no GT to span)
            pair = ranges[b]
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TadkitError(f"bin {b!r}: range must be (low, high), got {pair!r}", field="ranges")
            tick_lines[i].append(_range_text(pair[0], pair[1], b))
        if counts is not None:
            tick_lines[i].append(f"{gt_counts[b]} GT")
    percent = unit is not None and unit.strip() == "%"
    if percent and any(v > 100 for values in table.values() for v in values):
        raise TadkitError("a value above 100 with unit '%' (pass fractions x 100)", field="bins")
    fig = _new_figure(max(5.0, 1.1 * len(bin_names) * max(1, len(methods) * 0.6) + 2), 4.0 + 0.25 * (len(tick_lines[0]) - 1))
    ax = fig.add_subplot()
    x = np.arange(len(bin_names))
    width = 0.8 / len(methods)
    palette = class_colors(list(methods))
    for i, (method, values) in enumerate(table.items()):
        offset = (i - (len(methods) - 1) / 2) * width
        bars = ax.bar(x + offset, values, width, label=method or None, color=palette[method], edgecolor="black",
                      linewidth=0.5)
        texts = [("no GT" if gt_counts.get(b, 1) == 0 else (f"{v:.1f}" if percent else f"{v:.3g}"))
                 for b, v in zip(bin_names, values)]
        ax.bar_label(bars, labels=texts, fontsize=8, padding=2)
    ax.set_xticks(x, ["\n".join(lines) for lines in tick_lines])
    ax.set_xlabel("ground-truth duration bin")
    ax.set_ylabel(f"{ylabel} ({unit.strip()})" if unit else ylabel)
    top = max(max(v) for v in table.values())
    ax.set_ylim(0, (min(top * 1.15, 105.0) if percent else top * 1.15) if top > 0 else (100.0 if percent else 1.0))
    if len(methods) > 1 or next(iter(methods)):  # a named run or several: say which bars are whose
        ax.legend(fontsize=8, title="run" if len(methods) > 1 else None)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return _save(fig, path)

# --------------------------------------------------------------------------------------------- #
# Precision-recall
# --------------------------------------------------------------------------------------------- #


def plot_pr_curve(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Precision-recall curves: ``{name: (recall, precision)}``, values in [0, 1]."""
    path = _check_path(path)
    if not isinstance(curves, Mapping) or not curves:
        raise TadkitError("no curve to plot", field="curves")
    fig = _new_figure(5.5, 4.5)
    ax = fig.add_subplot()
    for name, pair in curves.items():
        try:
            recall, precision = (np.asarray(v, dtype=np.float64).reshape(-1) for v in pair)
        except (TypeError, ValueError):
            raise TadkitError(f"curve {name!r} must be (recall, precision)", field=f"curves.{name}") from None
        if recall.size == 0 or recall.shape != precision.shape:
            raise TadkitError(f"curve {name!r}: recall and precision must be non-empty and equally long",
                              field=f"curves.{name}")
        both = np.concatenate([recall, precision])
        if not np.isfinite(both).all() or both.min() < 0 or both.max() > 1:
            raise TadkitError(f"curve {name!r}: values must be finite and in [0, 1]", field=f"curves.{name}")
        ax.plot(recall, precision, label=str(name), linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)
