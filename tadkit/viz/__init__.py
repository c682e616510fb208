"""tadkit.viz: PNG plots for reports (matplotlib Agg canvas, written atomically)."""

from tadkit.viz.curves import plot_training_curves
from tadkit.viz.plots import class_colors, plot_duration_map, plot_pr_curve
from tadkit.viz.timeline import plot_timeline

__all__ = ["class_colors", "plot_duration_map", "plot_pr_curve", "plot_timeline", "plot_training_curves"]
