"""Training curves: losses (and validation mAP) against the run's own unit, the learning rate as a curve.

One panel per loss term, x = the run's own unit (epochs, or iterations for iteration-based runs such
as ACRNet's), y labelled, log-scaled when a loss spans more than :data:`LOG_SCALE_RATIO`. The learning
rate is drawn as a curve on a twin axis of every loss panel (a per-iteration cosine is a curve, a step
decay a step), never as text markers. Validation series join the loss of the same name; the other
validation metrics (mAP per tIoU, average) share one panel. Drawn on matplotlib's Agg canvas.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator

from tadkit.errors import TadkitError
from tadkit.viz import plots as _base

__all__ = ["plot_training_curves", "LOG_SCALE_RATIO", "LR_COLOUR"]

#: a loss panel switches to a log y axis when its largest finite value exceeds its smallest positive one
#: by this factor (1.5 decades: a linear axis would flatten everything after the first drop)
LOG_SCALE_RATIO = 30.0
#: a learning rate with at most this many distinct values is a step schedule (log axis when it spans a
#: decade); more values are a continuous schedule such as a cosine, drawn on a linear axis down to 0
MAX_LR_STEPS = 8
LR_COLOUR = (0.35, 0.35, 0.35, 1.0)  # grey: the learning rate is a setting, never a class or a metric
_VAL_PREFIXES = ("val/", "val_", "validation/", "valid/")
_TRAIN_PREFIXES = ("loss/", "train/", "train_", "")
VALIDATION_PANEL = "validation"


def _is_lr(name: str) -> bool:
    lowered = name.lower()
    return lowered in ("lr", "learning_rate") or lowered.endswith("/lr")


def _is_val(name: str) -> bool:
    return name.lower().startswith(_VAL_PREFIXES)


def _as_series(name: str, values: Any, field: str, *, allow_empty_finite: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TadkitError(f"series {name!r} is not a list of numbers", field=field) from None
    if np.isinf(arr).any():
        raise TadkitError(f"series {name!r} contains infinite values", field=field)
    if not allow_empty_finite and not np.isfinite(arr).any():
        raise TadkitError(f"series {name!r} has no finite value", field=field)
    return arr


def _panels(series: Mapping[str, np.ndarray]) -> dict[str, list[tuple[str, np.ndarray, bool]]]:
    """{panel title: [(series name, values, is validation)]}: a validation series joins the training
    series of the same name (``val/total`` -> ``loss/total``); the other validation series share one
    panel; learning-rate series are not panels (they are the twin axis)."""
    panels: dict[str, list[tuple[str, np.ndarray, bool]]] = {}
    for name, arr in series.items():
        if _is_lr(name):
            continue
        if not _is_val(name):
            panels.setdefault(name, []).append((name, arr, False))
    for name, arr in series.items():
        if _is_lr(name) or not _is_val(name):
            continue
        key = name[next(len(p) for p in _VAL_PREFIXES if name.lower().startswith(p)):]
        partner = next((p + key for p in _TRAIN_PREFIXES if p + key in panels), None)
        panels.setdefault(partner or VALIDATION_PANEL, []).append((name, arr, True))
    return panels


def _is_loss(name: str) -> bool:
    return "loss" in name.lower()


def _ylabel(panel: str, members: list[tuple[str, np.ndarray, bool]]) -> str:
    names = [name.lower() for name, *_ in members]
    if panel == VALIDATION_PANEL:
        if all("map" in n for n in names):
            return "mAP (%)" if all("%" in n for n in names) else "mAP"
        return "value"
    return "loss" if _is_loss(panel) else _series_label(panel)


def _series_label(name: str) -> str:
    for prefix in _VAL_PREFIXES:
        if name.lower().startswith(prefix):
            return name[len(prefix):].replace(" (%)", "")
    return name


def plot_training_curves(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    x: Sequence[float] | None = None,
    xlabel: str = "epoch",
    lr: Sequence[float] | None = None,
    lr_curve: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Path:
    """Loss panels (with validation where the run evaluated) against the run's own unit.

    Args:
        history: ``{series: values}``, one value per record (NaN = not measured then, e.g. epochs
            without evaluation). ``loss/...`` and other plain names are training series,
            ``val/...`` validation series, ``lr`` / ``*/lr`` the learning rate.
        x: the position of each record in the run's unit (``[100, 200, 300]`` for an iteration-based
            run that wrote a record every 100 iterations); default 1, 2, ... .
        xlabel: that unit ("epoch", "iteration").
        lr: the learning rate in force during each record (drawn as a step curve); default: a series
            named ``lr`` in ``history``.
        lr_curve: ``(x, lr)`` of the full schedule in the same unit (e.g. every iteration of a
            cosine); preferred over ``lr``.
        title: the run's name; drawn as the figure title.

    A run of a single record has no curve to draw: its panels show the values as text.
    """
    path = _base._check_path(path)
    if not isinstance(history, Mapping) or not history:
        raise TadkitError("history is empty", field="history")
    series = {str(name): _as_series(str(name), values, f"history.{name}") for name, values in history.items()}
    length = max(len(arr) for arr in series.values())
    if x is None:
        xs = np.arange(1, length + 1, dtype=np.float64)
    else:
        xs = _as_series("x", x, "x")
        if len(xs) != length or not np.isfinite(xs).all() or (np.diff(xs) <= 0).any():
            raise TadkitError(f"x must give {length} increasing finite positions (one per record), got {len(xs)}",
                              field="x")
    lr_xy = _lr_points(series, xs, lr, lr_curve)
    panels = _panels(series)
    if not panels:
        raise TadkitError("nothing to plot but the learning rate", field="history")

    low, high = float(xs[0]), float(xs[-1])
    if lr_xy is not None:  # the first record averages the steps before it: show them, on every panel
        low = min(low, float(np.min(lr_xy[0])))
    margin = 0.03 * (high - low)
    xlim = (low - margin, high + margin)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    single = length == 1
    panel_height = 1.6 if single else 3.2
    fig = _base._new_figure(4.6 * cols, panel_height * rows + 0.5 + (0.3 if single else 0))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (panel, members) in zip(axes, panels.items()):
        ax.set_title(panel, fontsize=10)
        if single:
            _draw_values(ax, members, xs[0], xlabel)
        else:
            _draw_panel(ax, panel, members, xs, xlabel, lr_xy, xlim)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    heading = title
    if single:
        note = f"a single {xlabel} record: values, not curves"
        heading = f"{title}\n{note}" if title else note
    if heading:
        fig.suptitle(heading)
    return _base._save(fig, path)


def _lr_points(series: Mapping[str, np.ndarray], xs: np.ndarray, lr: Sequence[float] | None,
               lr_curve: tuple[Sequence[float], Sequence[float]] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, lr) to draw: the full schedule when given, else the per-record rates as steps (each record's
    rate holds from the previous record's position to its own)."""
    if lr_curve is not None:
        try:
            cx, cy = (_as_series("lr_curve", v, "lr_curve") for v in lr_curve)
        except (TypeError, ValueError):
            raise TadkitError("lr_curve must be (x, lr)", field="lr_curve") from None
        if cx.shape != cy.shape or not np.isfinite(cx).all() or not np.isfinite(cy).all():
            raise TadkitError("lr_curve: x and lr must be finite and equally long", field="lr_curve")
        return cx, cy
    values = _as_series("lr", lr, "lr", allow_empty_finite=True) if lr is not None else next(
        (arr for name, arr in series.items() if _is_lr(name)), None)
    if values is None or not np.isfinite(values).any():
        return None
    if len(values) != len(xs):
        raise TadkitError(f"lr has {len(values)} values for {len(xs)} records", field="lr")
    starts = np.r_[xs[0] - (xs[1] - xs[0] if len(xs) > 1 else 1.0), xs[:-1]]
    edges = np.ravel(np.column_stack([starts, xs]))
    return edges, np.repeat(values, 2)


def _draw_values(ax: Any, members: list[tuple[str, np.ndarray, bool]], at: float, unit: str) -> None:
    """One record: the values as text, no axis (one point is not a curve)."""
    ax.set_axis_off()
    lines = []
    for name, arr, is_val in members:
        value = "not evaluated" if not np.isfinite(arr[0]) else f"{arr[0]:.4g}"
        prefix = ("validation " + _series_label(name) if is_val else "train") if len(members) > 1 else ""
        lines.append(f"{prefix}: {value}" if prefix else value)
    ax.text(0.5, 0.5, f"{unit} {at:g}\n" + "\n".join(lines), ha="center", va="center", fontsize=12,
            transform=ax.transAxes)


def _draw_panel(ax: Any, panel: str, members: list[tuple[str, np.ndarray, bool]], xs: np.ndarray, xlabel: str,
                lr_xy: tuple[np.ndarray, np.ndarray] | None, xlim: tuple[float, float]) -> None:
    import matplotlib

    has_train = any(not is_val for *_, is_val in members)
    val_members = [m for m in members if m[2]]
    shades = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(1, len(val_members))))
    positive: list[np.ndarray] = []
    for name, arr, is_val in members:
        finite = np.isfinite(arr)
        if is_val:
            if has_train:
                colour, label, width = "C1", "validation", 1.2
            else:
                k = next(i for i, m in enumerate(val_members) if m[0] == name)
                is_avg = "average" in name.lower() or "avg" in name.lower()
                colour, width = ("black", 2.0) if is_avg else (shades[k], 1.0)
                label = _series_label(name)
            ax.plot(xs[finite], arr[finite], marker="s", markersize=3.5, linewidth=width, linestyle="--",
                    color=colour, label=label)
        else:
            ax.plot(xs[finite], arr[finite], marker="o" if finite.sum() <= 30 else None, markersize=3,
                    linewidth=1.3, color="C0", label="train")
            kind, best = ("min", int(np.nanargmin(arr))) if _is_loss(name) else ("max", int(np.nanargmax(arr)))
            right_half = xs[best] > (xs[0] + xs[-1]) / 2
            ax.annotate(f"{kind} {arr[best]:.4g}", (xs[best], arr[best]), fontsize=7, textcoords="offset points",
                        xytext=(-4 if right_half else 4, 4), ha="right" if right_half else "left")
            if _is_loss(name):
                positive.append(arr[finite & (arr > 0)])
    values = np.concatenate(positive) if positive else np.zeros(0)
    all_positive = all(np.nanmin(arr) > 0 for _, arr, _ in members)
    if len(values) and values.max() / values.min() >= LOG_SCALE_RATIO and all_positive:
        ax.set_yscale("log")
    ax.set_xlim(xlim)
    ax.margins(y=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_ylabel(panel, members))
    ax.grid(alpha=0.3)
    if np.allclose(xs, np.round(xs)):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax.get_legend_handles_labels()
    if has_train and lr_xy is not None:
        twin = ax.twinx()
        (line,) = twin.plot(lr_xy[0], lr_xy[1], color=LR_COLOUR, linewidth=1.0, linestyle="-", alpha=0.8,
                            label="learning rate")
        lr_values = lr_xy[1][np.isfinite(lr_xy[1])]
        stepped = len(np.unique(lr_values)) <= MAX_LR_STEPS  # step decays are factors: equal steps on a log axis
        if stepped and len(lr_values) and lr_values.min() > 0 and lr_values.max() / lr_values.min() >= 10:
            twin.set_yscale("log")
        twin.set_ylabel("learning rate", color=LR_COLOUR, fontsize=8)
        twin.tick_params(axis="y", labelsize=7, colors=LR_COLOUR)
        if twin.get_yscale() == "linear":  # "0.0005" on each tick, no offset text over the panel title
            twin.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.2g}"))
        twin.set_xlim(ax.get_xlim())
        handles, labels = handles + [line], labels + ["learning rate"]
    if len(handles) > 1 or not has_train:
        ax.legend(handles, labels, fontsize=7, loc="best")
