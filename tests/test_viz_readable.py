"""Issue 18 points 7-9: plots read at a glance. Each test reads the figure's axes, labels and legend
objects (captured before saving), not pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tadkit.engine.config import find_config, load_config




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


# --------------------------------------------------------------------------------------------- #
# 8. timelines
# --------------------------------------------------------------------------------------------- #
CLASSES = ["BaseballPitch", "CliffDiving", "Diving", "HighJump"]


def dets(rows):
    from tadkit.data.records import DetectionSet

    video, start, end, label, score = zip(*rows)
    return DetectionSet(np.array(video, dtype=object), np.array(start, float), np.array(end, float),
                        np.array(label, dtype=object), np.array(score, float))


def collections(ax, prefix):
    return [c for c in ax.collections if c.get_label().startswith(prefix)]


def bars(collection):
    """(x0, x1, y0, y1) of each bar of a broken_barh collection."""
    out = []
    for path in collection.get_paths():
        v = path.vertices
        out.append((v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max()))
    return out


@pytest.mark.parametrize("protocol", ["activitynet", "thumos14"])
def test_timeline_marks_true_positives_and_missed_ground_truth(tmp_path, figures, protocol):
    from tadkit.data.records import Segment
    from tadkit.viz import plot_timeline

    gt = {"v": [Segment(10.0, 20.0, "Diving"), Segment(30.0, 40.0, "Diving"), Segment(50.0, 60.0, "HighJump")]}
    rows = [("v", 10.5, 20.0, "Diving", 0.9),  # tIoU 0.95: true positive
            ("v", 10.0, 19.0, "Diving", 0.8),  # same GT again: false positive (one-to-one)
            ("v", 30.0, 34.0, "Diving", 0.7),  # tIoU 0.4: false positive, GT 30-40 missed
            ("v", 50.0, 55.0, "HighJump", 0.6),  # tIoU exactly 0.5: TP for activitynet (>=), not thumos14 (>)
            ("v", 70.0, 75.0, "HighJump", 0.05)]  # below the floor: not drawn
    plot_timeline(gt, dets(rows), 80.0, CLASSES, tmp_path / "t.png", min_score=0.1, protocol=protocol)
    (fig,) = figures
    ax = fig.axes[0]
    edge_tp = [(tuple(c.get_edgecolors()[i][:3]), c.get_linewidths()[i]) for c in collections(ax, "det:")
               for i in range(len(c.get_paths()))]
    assert len(edge_tp) == 4  # every detection at or above 0.1
    n_tp = sum(colour == (0, 0, 0) and width > 1 for colour, width in edge_tp)
    highjump_tp = protocol == "activitynet"
    assert n_tp == 1 + highjump_tp
    (found,) = collections(ax, "gt:Diving")
    (missed,) = collections(ax, "gt-missed:Diving")
    assert [b[:2] for b in bars(found)] == [(10.0, 20.0)] and [b[:2] for b in bars(missed)] == [(30.0, 40.0)]
    assert missed.get_hatch() == "////" and tuple(missed.get_edgecolors()[0][:3]) == pytest.approx((0.85, 0.1, 0.1))
    assert bool(collections(ax, "gt:HighJump")) == highjump_tp
    assert bool(collections(ax, "gt-missed:HighJump")) != highjump_tp
    assert ax.get_title(loc="left") == (f"v: 3 GT ({1 + highjump_tp} found), 4 of 5 detections "
                                        f"({1 + highjump_tp} true positive{'s' if highjump_tp else ''})")
    assert f"tIoU 0.5 ({protocol} matching)" in fig._suptitle.get_text()


def test_timeline_legend_is_in_class_colours_with_a_score_scale(tmp_path, figures):
    from tadkit.data.records import Segment
    from tadkit.viz import class_colors, plot_timeline

    rows = [("v", 1.0, 2.0, "Diving", 0.9), ("v", 3.0, 4.0, "HighJump", 0.3)]
    plot_timeline({"v": [Segment(1.0, 2.0, "Diving")]}, dets(rows), 10.0, CLASSES, tmp_path / "gt.png")
    plot_timeline([], dets(rows), 10.0, CLASSES, tmp_path / "detect.png", title="zero-shot")
    with_gt, without_gt = figures
    colours = class_colors(CLASSES)
    for fig in figures:
        legend = fig.legends[0]
        entries = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
        for name in ("Diving", "HighJump"):  # one swatch per class drawn, in that class's colour
            assert tuple(entries[name].get_facecolor()) == pytest.approx(colours[name])
        assert "BaseballPitch" not in entries and legend.get_title().get_text() == "colour = class"
        scale = [ax for ax in fig.axes if ax.get_ylabel() == "detection score (bar opacity)"]
        assert len(scale) == 1 and scale[0].get_ylim() == pytest.approx((0.0, 1.0))
    texts = [t.get_text() for t in with_gt.legends[0].get_texts()]
    assert {"ground truth, found (upper bar)", "ground truth, missed", "detection, true positive"} <= set(texts)
    texts = [t.get_text() for t in without_gt.legends[0].get_texts()]
    assert not any("ground truth" in t or "true positive" in t for t in texts)  # `detect`: no GT at all
    assert without_gt.axes[0].get_title(loc="left") == "v: all 2 detections"


def test_touching_and_overlapping_segments_stay_apart(tmp_path, figures):
    from tadkit.data.records import Segment
    from tadkit.viz import plot_timeline
    from tadkit.viz.timeline import MAX_LANES, pack_lanes

    gt = {"v": [Segment(0.0, 2.0, "Diving"), Segment(2.0, 4.0, "Diving")]}
    rows = [("v", 0.0, 2.0, "Diving", 0.5), ("v", 2.0, 4.0, "Diving", 0.5), ("v", 4.0, 6.0, "Diving", 0.5)]
    plot_timeline(gt, dets(rows), 10.0, CLASSES, tmp_path / "t.png")
    (fig,) = figures
    ax = fig.axes[0]
    (gt_bars,) = collections(ax, "gt:Diving")
    assert len(gt_bars.get_paths()) == 2 and (gt_bars.get_linewidths() > 0).all()  # an outline between them
    lanes = {b[:2]: b[2] for c in collections(ax, "det:Diving") for b in bars(c)}
    assert lanes[(0.0, 2.0)] != lanes[(2.0, 4.0)] and lanes[(2.0, 4.0)] != lanes[(4.0, 6.0)]  # touching: other lane
    start = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    lane = pack_lanes(start, start + 2.5)
    assert lane.tolist() == [0, 1, 2, 0, 0] and lane.max() < MAX_LANES


def test_twenty_classes_get_twenty_clearly_different_colours():
    from tadkit.viz.plots import _cielab, class_colors

    rgb = np.array([c[:3] for c in class_colors([f"c{i}" for i in range(20)]).values()])
    lab = _cielab(rgb)
    distance = np.linalg.norm(lab[:, None] - lab[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    assert distance.min() >= 25.0  # CIELAB units: ~2.3 is just noticeable; tab20's light/dark pairs are ~14
    assert (np.hypot(lab[:, 1], lab[:, 2]) > 25).all()  # no grey


# --------------------------------------------------------------------------------------------- #
# 9. per-duration plots name their run; --compare-bins draws several runs side by side
# --------------------------------------------------------------------------------------------- #


def thumos_like(tmp_path: Path, shift_runs: dict[str, float]) -> tuple[Path, dict[str, Path]]:
    """A small ActivityNet-format GT (durations in every bin) and one results.json per run directory,
    each run's detections shifted by its own amount."""
    rng = np.random.default_rng(0)
    database, results = {}, {name: {} for name in shift_runs}
    for v in range(16):
        segments = []
        for k, length in enumerate((1.0, 2.0, 3.0, 5.0, 9.0)):
            start = 5.0 + 15.0 * k + rng.uniform(0, 3)
            segments.append({"segment": [start, start + length], "label": ("Jump", "Throw")[(v + k) % 2]})
        vid = f"video_test_{v:07d}"
        database[vid] = {"subset": "test", "duration": 90.0, "annotations": segments}
        for name, shift in shift_runs.items():
            results[name][vid] = [{"segment": [a["segment"][0] + shift, a["segment"][1] + shift], "label": a["label"],
                                   "score": float(rng.uniform(0.3, 1))} for a in segments]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"version": "synthetic v1", "database": database}))
    files = {}
    for name, rows in results.items():
        (tmp_path / name).mkdir()
        files[name] = tmp_path / name / "results.json"
        files[name].write_text(json.dumps({"results": rows}))
    return gt, files


def duration_figure(figures):
    return next(fig for fig in figures if fig.axes[0].get_xlabel() == "ground-truth duration bin")


def test_per_duration_plot_names_the_method_and_run(tmp_path, figures):
    from tadkit.data.annotations import load_annotations
    from tadkit.evaluation import load_predictions
    from tadkit.pipeline import evaluate_report, plot_outputs

    gt_path, files = thumos_like(tmp_path, {"run_acrnet": 0.2})
    config = load_config(find_config("acrnet/synthetic"), ["data.subset_test=test", "model.kwargs.num_classes=2"])
    gt = load_annotations(gt_path, subset="test")
    detections = load_predictions(files["run_acrnet"])
    report = evaluate_report(gt, detections, config)
    history = write_history(tmp_path / "run_acrnet", "iteration", acrnet_records(evaluated=False))
    plot_outputs(gt, detections, report, history, tmp_path / "out", num_videos=1, config=config)
    ax = duration_figure(figures).axes[0]
    assert ax.get_title().startswith("acrnet (run_acrnet): mAP@0.5 per action duration")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["acrnet (run_acrnet)"]
    assert ax.get_ylabel() == "mAP@0.5 (%)"


def test_compare_bins_draws_runs_side_by_side_and_never_merges_two(tmp_path, figures, capsys):
    from tadkit.cli import main

    gt, files = thumos_like(tmp_path, {"run_a": 0.0, "run_b": 0.6})
    png = tmp_path / "fig1.png"
    base = ["eval", "--gt", str(gt), "--subset", "test", "--pred", str(files["run_a"])]
    assert main(base + ["--compare-bins", str(files["run_b"]), "--plot", str(png)]) == 0
    ax = duration_figure(figures).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run_a/results", "run_b/results"]
    assert ax.get_legend().get_title().get_text() == "run"
    groups = [c for c in ax.containers if len(c)]  # one BarContainer per run
    assert len(groups) == 2 and all(len(g) == 5 for g in groups)
    x_a = [bar.get_x() for bar in groups[0]]
    x_b = [bar.get_x() for bar in groups[1]]
    assert all(b > a for a, b in zip(x_a, x_b))  # side by side within each bin
    heights_a = [bar.get_height() for bar in groups[0]]
    heights_b = [bar.get_height() for bar in groups[1]]
    assert heights_a == pytest.approx([100.0] * 5)  # run_a is the GT itself
    # a 0.6 s shift: tIoU 0.25 on 1 s actions (missed at 0.5), 0.875 on 9 s ones (found)
    assert heights_b[0] == 0.0 and heights_b[-1] == pytest.approx(100.0)
    assert "run_a/results vs run_b/results" in ax.get_title()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0].startswith("ES\n") and ticks[0].endswith("GT")
    capsys.readouterr()
    # the same file twice (or two equal --labels) would collapse into one bar group: refused
    assert main(base + ["--compare-bins", str(files["run_a"]), "--plot", str(png)]) == 2
    assert "share the label" in capsys.readouterr().err
    assert main(base + ["--compare-bins", str(files["run_b"]), "--labels", "x", "x", "--plot", str(png)]) == 2
    assert "share the label 'x'" in capsys.readouterr().err
