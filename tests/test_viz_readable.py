"""Issue 18 points 7-9: plots read at a glance. Each test reads the figure's axes, labels and legend
objects (captured before saving), not pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tadkit.engine.config import find_config, load_config


@pytest.fixture
def figures(monkeypatch):
    """Every Figure a plot function saves, in order."""
    import tadkit.viz.plots as plots

    captured = []
    real_save = plots._save

    def capture(fig, path):
        captured.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", capture)
    return captured


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


# --------------------------------------------------------------------------------------------- #
# 7. training curves
# --------------------------------------------------------------------------------------------- #


def write_history(run_dir: Path, unit: str, records: list[dict]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "history.json"
    path.write_text(json.dumps({"format": "tadkit-history/1", "model": run_dir.name.split("_")[-1], "unit": unit,
                                "best": None, "epochs": records}))
    return path


def acrnet_records(evaluated: bool) -> list[dict]:
    """What ACRNet's synthetic config logs: a record every 100 of 300 iterations (2 epochs each)."""
    out = []
    for k, step in enumerate((100, 200, 300)):
        metrics = {"mAP@0.5": 0.2 + 0.1 * k, "average_mAP": 0.25 + 0.1 * k} if evaluated else {}
        out.append({"epoch": 2 * (k + 1), "global_step": step, "step": step, "lr": 5e-4,
                    "loss": {"cas": 2.7 - 0.5 * k, "total": 3.0 - 0.6 * k}, "metrics": metrics})
    return out


def test_iteration_run_is_drawn_in_iterations_with_its_cosine_as_a_curve(tmp_path, figures):
    from tadkit.engine.trainer import lr_at
    from tadkit.pipeline import plot_history

    config = load_config(find_config("acrnet/synthetic"))
    assert config.train.scheduler == "cosine" and config.train.scheduler_unit == "iteration"
    history = write_history(tmp_path / "run_acrnet", "iteration", acrnet_records(evaluated=True))
    plot_history(history, tmp_path / "curves.png", config)
    (fig,) = figures
    assert fig._suptitle.get_text() == "run_acrnet: acrnet, 300 iterations"
    axes = visible_axes(fig)
    panels = {ax.get_title(): ax for ax in axes if ax.get_title()}
    assert set(panels) == {"loss/cas", "loss/total", "validation"}
    for title in ("loss/cas", "loss/total"):
        ax = panels[title]
        assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "loss"
        assert list(ax.lines[0].get_xdata()) == [100, 200, 300]  # not 1, 2, 3
        assert all("lr x" not in t.get_text() for t in ax.texts)  # no step-drop markers over the titles
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "learning rate"]
    twins = [ax for ax in axes if ax.get_ylabel() == "learning rate"]
    assert len(twins) == 2 and all(t.get_yscale() == "linear" for t in twins)  # a cosine to 0 is a curve
    lr_line = twins[0].lines[0]
    x, y = np.asarray(lr_line.get_xdata()), np.asarray(lr_line.get_ydata())
    assert x.min() == 0 and x.max() == 300 and len(np.unique(y)) > 100  # every iteration, not 3 steps
    for step in (0, 150, 299):  # what is drawn is the schedule the trainer applies
        assert y[np.searchsorted(x, step, side="right") - 1] == pytest.approx(lr_at(5e-4, config, step, 300))
    val = panels["validation"]
    assert val.get_ylabel() == "mAP (%)" and val.get_xlabel() == "iteration"
    assert [t.get_text() for t in val.get_legend().get_texts()] == ["mAP@0.5", "average_mAP"]
    assert list(val.lines[1].get_ydata()) == pytest.approx([25.0, 35.0, 45.0])
    assert val.get_xlim() == panels["loss/cas"].get_xlim()


def test_no_validation_panel_when_the_run_did_not_evaluate(tmp_path, figures):
    from tadkit.pipeline import plot_history

    history = write_history(tmp_path / "run_acrnet", "iteration", acrnet_records(evaluated=False))
    plot_history(history, tmp_path / "curves.png")  # no config: the logged rates, drawn as steps
    (fig,) = figures
    titles = [ax.get_title() for ax in visible_axes(fig) if ax.get_title()]
    assert titles == ["loss/cas", "loss/total"]
    twin = next(ax for ax in visible_axes(fig) if ax.get_ylabel() == "learning rate")
    assert set(twin.lines[0].get_ydata()) == {5e-4}


def test_epoch_run_step_decay_and_a_loss_spanning_decades(tmp_path, figures):
    from tadkit.pipeline import plot_history

    config = load_config(find_config("a2net/synthetic"))
    decay = config.train.lr_decay_epochs[0]
    records = [{"epoch": e, "global_step": 12 * e, "lr": 0.0, "metrics": {},
                "loss": {"total": 80.0 * np.exp(-e / 3) + 0.2, "cls": 1.5 - 0.02 * e}}
               for e in range(1, config.train.epochs + 1)]
    plot_history(write_history(tmp_path / "run_a2net", "epoch", records), tmp_path / "curves.png", config)
    (fig,) = figures
    panels = {ax.get_title(): ax for ax in visible_axes(fig) if ax.get_title()}
    assert panels["loss/total"].get_yscale() == "log"  # 80 -> 0.2 spans decades
    assert panels["loss/cls"].get_yscale() == "linear"  # 1.5 -> 0.9 does not
    assert panels["loss/total"].get_xlabel() == "epoch"
    twin = next(ax for ax in visible_axes(fig) if ax.get_ylabel() == "learning rate")
    x, y = twin.lines[0].get_xdata(), twin.lines[0].get_ydata()
    gamma = config.train.lr_gamma
    assert y[0] == pytest.approx(config.train.lr) and y[-1] == pytest.approx(config.train.lr * gamma)
    drop = x[np.flatnonzero(np.diff(y) < 0)[0] + 1]
    assert drop == decay  # the rate falls after epoch `decay`, where the trainer lowers it
    assert "run_a2net: a2net, 30 epochs" == fig._suptitle.get_text()
