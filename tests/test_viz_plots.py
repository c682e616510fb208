"""Plots: valid PNGs of sensible size whose pixels show what was asked, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from tadkit.data.records import DetectionSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from tadkit.viz import plot_timeline, plot_training_curves
from tadkit.viz.plots import class_colors, plot_duration_map, plot_pr_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["BaseballPitch", "CliffDiving", "Diving", "HighJump"]


def load_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def rgb255(colour) -> tuple[int, int, int]:
    return tuple(int(round(c * 255)) for c in colour[:3])


def has_colour(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 2) -> np.ndarray:
    return (np.abs(pixels.astype(int) - np.array(rgb)) <= tol).all(axis=-1)


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def detections(rows) -> DetectionSet:
    video, start, end, label, score = zip(*rows) if rows else ((), (), (), (), ())
    return DetectionSet(np.array(video, dtype=object), np.array(start, float), np.array(end, float),
                        np.array(label, dtype=object), np.array(score, float))


# --------------------------------------------------------------------------------------------- #
# Timeline
# --------------------------------------------------------------------------------------------- #


def test_timeline_draws_gt_in_class_colours(tmp_path):
    gt = {"v1": [Segment(1.0, 4.0, "CliffDiving"), Segment(1.0, 4.0, "Diving")],
          "v2": [Segment(10.0, 30.0, "BaseballPitch")]}
    dets = detections([("v1", 1.2, 4.5, "Diving", 0.9), ("v1", 1.0, 3.9, "CliffDiving", 0.2),
                       ("v2", 11.0, 29.0, "BaseballPitch", 0.7), ("other", 0.0, 1.0, "HighJump", 1.0)])
    path = plot_timeline(gt, dets, {"v1": 10.0, "v2": 40.0}, CLASSES, tmp_path / "t.png", "two videos")
    pixels = load_png(path)
    assert pixels.shape[1] == 1200 and 300 <= pixels.shape[0] <= 800
    colours = class_colors(CLASSES)
    for name in ("CliffDiving", "Diving", "BaseballPitch"):  # opaque (found) GT bars keep the exact colour
        assert has_colour(pixels, rgb255(colours[name])).sum() > 100, name
    assert has_colour(pixels, rgb255(colours["HighJump"])).sum() == 0  # only in another video
    assert no_temp_files(tmp_path)


def test_timeline_height_grows_with_videos(tmp_path):
    one = plot_timeline([Segment(0.0, 1.0, "Diving")], detections([("v", 0.0, 1.0, "Diving", 0.5)]), 5.0, CLASSES,
                        tmp_path / "one.png")
    gt = {f"v{i}": [Segment(0.0, 1.0, "Diving"), Segment(2.0, 3.0, "HighJump")] for i in range(4)}
    four = plot_timeline(gt, DetectionSet.empty(), 5.0, CLASSES, tmp_path / "four.png")
    assert load_png(four).shape[0] > 2 * load_png(one).shape[0]


def test_timeline_on_real_thumos_ground_truth(tmp_path):
    """One real THUMOS14 test video, all its GT from the official evalkit files, noisy detections."""
    root = shared_path("data", "thumos14", "evalkit", "test")
    names = [line.split()[1] for line in (root / "detclasslist.txt").read_text().splitlines() if line]
    video = "video_test_0000004"
    segs = []
    for name in names:
        for line in (root / f"{name}_test.txt").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == video:
                segs.append(Segment(float(parts[1]), float(parts[2]), name))
    assert segs, "video_test_0000004 has GT in the evalkit"
    rng = np.random.default_rng(0)
    rows = [(video, s.start + rng.normal(0, 0.3), s.end + rng.normal(0, 0.3), s.label, rng.random()) for s in segs]
    duration = max(s.end for s in segs) + 5.0
    pixels = load_png(plot_timeline(VideoAnnotation(video, "test", segments=segs), detections(rows), duration, names,
                                    tmp_path / "real.png", "THUMOS14 test"))
    colours = class_colors(names)
    for label in {s.label for s in segs}:
        assert has_colour(pixels, rgb255(colours[label])).sum() > 20


@pytest.mark.parametrize(
    "gt, dets, duration, path, field",
    [
        ({}, DetectionSet.empty(), 5.0, "x.png", "gt_segments"),
        ({"v": []}, DetectionSet.empty(), 5.0, "x.png", "detections"),
        ({"v": [Segment(0, 1, "Diving")]}, DetectionSet.empty(), 0.0, "x.png", "duration"),
        ({"v": [Segment(0, 1, "Diving")]}, DetectionSet.empty(), {"w": 3.0}, "x.png", "duration"),
        ({"v": [Segment(2, 1, "Diving")]}, DetectionSet.empty(), 5.0, "x.png", "gt_segments"),
        ({"v": [Segment(0, 1, "Surfing")]}, DetectionSet.empty(), 5.0, "x.png", "label"),
        ({"v": [Segment(0, 1, "Diving")]}, detections([("v", 0.0, np.nan, "Diving", 0.5)]), 5.0, "x.png",
         "detections"),
        ({"v": [Segment(0, 1, "Diving")]}, detections([("v", 0.0, 1.0, "Surfing", 0.5)]), 5.0, "x.png", "label"),
        ({"v": [Segment(0, 1, "Diving")]}, DetectionSet.empty(), 5.0, "x.jpg", "path"),
        ({f"v{i}": [Segment(0, 1, "Diving")] for i in range(13)}, DetectionSet.empty(), 5.0, "x.png", "gt_segments"),
    ],
)
def test_timeline_rejects_bad_input(tmp_path, gt, dets, duration, path, field):
    with pytest.raises(TadkitError) as info:
        plot_timeline(gt, dets, duration, CLASSES, tmp_path / path)
    assert info.value.field == field
    assert not list(tmp_path.iterdir())  # nothing written


# --------------------------------------------------------------------------------------------- #
# Duration bins
# --------------------------------------------------------------------------------------------- #


def bar_heights(pixels: np.ndarray, rgb: tuple[int, int, int]) -> list[int]:
    """Height in pixels of each bar of one colour (bars = runs of columns containing it; the
    legend swatch, ~7 px tall, is skipped)."""
    mask = has_colour(pixels, rgb)
    columns = np.flatnonzero(mask.any(axis=0))
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    heights = [int(mask[:, run[len(run) // 2]].sum()) for run in runs if len(run) > 5]
    return [h for h in heights if h > 12]


def test_duration_map_bar_heights_are_proportional(tmp_path):
    values = {"XS": 10.0, "S": 20.0, "M": 40.0, "L": 30.0, "XL": 5.0}
    pixels = load_png(plot_duration_map(values, tmp_path / "d.png", "one method"))
    heights = bar_heights(pixels, rgb255(class_colors([""])[""]))
    assert len(heights) == 5
    np.testing.assert_allclose(np.array(heights) / heights[2], np.array(list(values.values())) / 40.0, atol=0.02)


def test_duration_map_several_methods_side_by_side(tmp_path):
    bins = {"A2Net": {"XS": 0.1, "S": 0.3, "M": 0.45}, "AFSD": {"XS": 0.2, "S": 0.3, "M": 0.6}}
    pixels = load_png(plot_duration_map(bins, tmp_path / "d.png"))
    colours = class_colors(list(bins))
    a2net, afsd = bar_heights(pixels, rgb255(colours["A2Net"])), bar_heights(pixels, rgb255(colours["AFSD"]))
    assert len(a2net) == len(afsd) == 3
    assert afsd[0] / a2net[0] == pytest.approx(2.0, rel=0.03)
    assert afsd[2] / a2net[2] == pytest.approx(0.6 / 0.45, rel=0.03)


@pytest.mark.parametrize(
    "bins",
    [{}, {"XS": float("nan")}, {"XS": -1.0}, {"A": {"XS": 1.0}, "B": {"S": 1.0}}, {"A": {}}, {"XS": "high"}],
)
def test_duration_map_rejects_bad_input(tmp_path, bins):
    with pytest.raises(TadkitError):
        plot_duration_map(bins, tmp_path / "d.png")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------- #
# Training and PR curves
# --------------------------------------------------------------------------------------------- #


def test_training_curves_one_panel_per_series(tmp_path):
    history = {"loss/total": [3.0, 2.0, 1.5, 1.2], "mAP@0.5": [float("nan"), 0.1, float("nan"), 0.3],
               "lr": [1e-4, 1e-4, 1e-5, 1e-5]}
    two = load_png(plot_training_curves(history, tmp_path / "c2.png", "run"))
    one = load_png(plot_training_curves({"loss": [1.0, 0.5]}, tmp_path / "c1.png"))
    assert two.shape[1] == 2 * one.shape[1]  # 2 panels side by side (the lr is a twin axis, not a panel)
    line = rgb255(class_colors(["x"])["x"])  # default line colour C0 == tab:blue == first class colour
    assert has_colour(two, line).sum() > 3 * has_colour(one, line).sum() / 2
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("history", [{}, {"loss": []}, {"loss": [float("nan")]}, {"loss": [1.0, float("inf")]},
                                     {"loss": ["a", "b"]}])
def test_training_curves_reject_bad_input(tmp_path, history):
    with pytest.raises(TadkitError):
        plot_training_curves(history, tmp_path / "c.png")


def test_pr_curve(tmp_path):
    recall = np.linspace(0, 1, 50)
    pixels = load_png(plot_pr_curve({"Diving": (recall, 1 - 0.5 * recall)}, tmp_path / "pr.png", "PR"))
    assert pixels.shape[:2] == (450, 550)
    for bad in ({}, {"x": ([0.1, 0.2], [0.5])}, {"x": ([0.1], [1.5])}):
        with pytest.raises(TadkitError):
            plot_pr_curve(bad, tmp_path / "bad.png")


# --------------------------------------------------------------------------------------------- #
# What the figures say (matplotlib objects, captured before saving)
# --------------------------------------------------------------------------------------------- #




def _collection(ax, label):
    return next(c for c in ax.collections if c.get_label() == label)


def test_timeline_fixed_opacity_and_every_detection_above_the_floor(tmp_path, figures):
    gt = [Segment(1.0, 4.0, "Diving")]
    many = [("v", 1.0 + 0.01 * i, 4.0, "Diving", 0.2 + 0.5 * i / 99) for i in range(100)]
    plot_timeline(gt, detections([("v", 1.0, 4.0, "Diving", 0.2), ("v", 5.0, 6.0, "HighJump", 0.9)]), 10.0, CLASSES,
                  tmp_path / "a.png")
    plot_timeline(gt, detections(many), 10.0, CLASSES, tmp_path / "b.png", min_score=0.5)
    a, b = figures
    # the same score gets the same opacity whatever else is in the figure: 0.15 + 0.8 * score
    assert _collection(a.axes[0], "det:Diving").get_facecolors()[:, 3] == pytest.approx([0.15 + 0.8 * 0.2])
    assert _collection(a.axes[0], "det:HighJump").get_facecolors()[0, 3] == pytest.approx(0.87)
    assert _collection(a.axes[0], "gt:Diving").get_facecolors()[0, 3] == 1.0  # found: opaque
    above = [row for row in many if row[4] >= 0.5]
    alphas = np.concatenate([c.get_facecolors()[:, 3] for c in b.axes[0].collections
                             if c.get_label().startswith("det:Diving")])
    assert len(alphas) == len(above)  # every detection above the floor, no top-k
    assert alphas.min() == pytest.approx(0.15 + 0.8 * min(r[4] for r in above))
    assert a.axes[0].get_title(loc="left") == "v: 1 GT (1 found), all 2 detections (1 true positive)"
    assert b.axes[0].get_title(loc="left") == f"v: 1 GT (1 found), {len(above)} of 100 detections (1 true positive)"
    assert "every detection with score >= 0.5" in b._suptitle.get_text()
    assert "fixed 0..1 scale" in b._suptitle.get_text()


def test_timeline_total_detections_score_range_and_clipping(tmp_path, figures):
    dets = detections([("v", 1.0, 2.0, "Diving", 3.0), ("v", 3.0, 4.0, "Diving", -1.0)])
    plot_timeline([], dets, 10.0, CLASSES, tmp_path / "a.png", total_detections=250, max_detections=2)
    plot_timeline([], dets, 10.0, CLASSES, tmp_path / "b.png", score_range=(-1.0, 3.0))
    a, b = figures
    assert a.axes[0].get_title(loc="left") == "v: 2 of 250 detections"
    assert "2 score(s) outside it clipped" in a._suptitle.get_text()
    assert sorted(_collection(a.axes[0], "det:Diving").get_facecolors()[:, 3]) == pytest.approx([0.15, 0.95])
    assert sorted(_collection(b.axes[0], "det:Diving").get_facecolors()[:, 3]) == pytest.approx([0.15, 0.95])
    assert "fixed -1..3 scale" in b._suptitle.get_text() and "clipped" not in b._suptitle.get_text()
    for kwargs, field in (({"score_range": (1.0, 1.0)}, "score_range"), ({"total_detections": 1}, "total_detections"),
                          ({"total_detections": {"v": 1.5}}, "total_detections"),
                          ({"max_detections": 0}, "max_detections"), ({"min_score": float("nan")}, "min_score")):
        with pytest.raises(TadkitError) as info:
            plot_timeline([], dets, 10.0, CLASSES, tmp_path / "c.png", **kwargs)
        assert info.value.field == field


def test_class_colours_are_never_grey_and_distinct_for_thumos():
    colours = class_colors([f"c{i}" for i in range(38)])
    rgb = np.array([c[:3] for c in colours.values()])
    spread = rgb.max(axis=1) - rgb.min(axis=1)
    assert spread.min() > 0.1, "a grey (r == g == b) class colour"
    assert len({tuple(np.round(c, 4)) for c in rgb}) == 38
    assert colours["c0"][:3] == pytest.approx((0.12156862745098039, 0.4666666666666667, 0.7058823529411765))  # tab:blue


def test_duration_map_percent_axis_ranges_and_counts(tmp_path, figures):
    values = {"ES": 11.5, "S": 28.2, "M": 50.0, "L": 55.7, "EL": 0.0}
    ranges = {"ES": (0, 1.5), "S": (1.5, 2.5), "M": (2.5, 4.2), "L": (4.2, 6.9), "EL": (6.9, None)}
    counts = {"ES": 650, "S": 701, "M": 690, "L": 680, "EL": 0}
    plot_duration_map(values, tmp_path / "d.png", unit="%", ranges=ranges, counts=counts)
    plot_duration_map({"XS": 0.2}, tmp_path / "plain.png")
    fig, plain = figures
    ax = fig.axes[0]
    assert ax.get_ylabel() == "mAP@0.5 (%)" and plain.axes[0].get_ylabel() == "mAP@0.5"
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0] == "ES\n0-1.5 s\n650 GT" and ticks[1] == "S\n1.5-2.5 s\n701 GT" and ticks[4] == "EL\n>= 6.9 s\n0 GT"
    bar_texts = [t.get_text() for t in ax.texts]
    assert bar_texts == ["11.5", "28.2", "50.0", "55.7", "no GT"]
    assert ax.get_ylim()[1] <= 105.0
    for kwargs, field in (({"ranges": {"ES": (0, 1)}}, "ranges"), ({"counts": {**counts, "ES": -1}}, "counts"),
                          ({"ranges": {**ranges, "S": (2.5, 1.5)}}, "ranges"),
                          ({"unit": "%", "ranges": None, "counts": None, "title": None}, "bins")):
        bins = {**values, "M": 150.0} if field == "bins" else values
        with pytest.raises(TadkitError) as info:
            plot_duration_map(bins, tmp_path / "bad.png", **kwargs)
        assert info.value.field == field


def test_training_curves_validation_lr_decay_and_axes(tmp_path, figures):
    epochs = 40
    lr = [1e-4] * 30 + [1e-5] * 10
    loss = list(np.linspace(3.0, 0.5, epochs))
    evaluated = [3, 28, 30, 40]
    val_map = [45.0 if e in evaluated else float("nan") for e in range(1, epochs + 1)]
    val_loss = [1.0 if e in evaluated else float("nan") for e in range(1, epochs + 1)]
    history = {"loss/total": loss, "val/total": val_loss, "val/mAP@0.5 (%)": val_map, "lr": lr}
    plot_training_curves(history, tmp_path / "c.png")
    (fig,) = figures
    visible = [ax for ax in fig.axes if ax.get_visible()]
    loss_ax, map_ax, twin = visible  # val/total joined loss/total; the lr is loss_ax's twin axis
    assert [loss_ax.get_title(), map_ax.get_title()] == ["loss/total", "validation"]
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["train", "validation", "learning rate"]
    assert [t.get_text() for t in map_ax.get_legend().get_texts()] == ["mAP@0.5"]
    assert loss_ax.get_ylabel() == "loss" and map_ax.get_ylabel() == "mAP (%)" and twin.get_ylabel() == "learning rate"
    assert list(map_ax.lines[0].get_xdata()) == evaluated
    assert loss_ax.get_xlim() == map_ax.get_xlim() and loss_ax.get_xlim()[1] > 40
    assert twin.get_yscale() == "log"  # a step decay by 10: equal steps on a log axis
    assert not loss_ax.texts or all("lr x" not in t.get_text() for t in loss_ax.texts)  # no decay markers
    (lr_line,) = twin.lines
    assert set(np.round(lr_line.get_ydata(), 12)) == {1e-4, 1e-5}


def test_training_curves_single_epoch_draws_no_axis(tmp_path, figures):
    plot_training_curves({"loss/total": [17.03], "val/total": [16.0], "mAP": [0.25]}, tmp_path / "c.png", "demo")
    (fig,) = figures
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 and not any(ax.axison for ax in visible)
    assert not any(ax.lines for ax in visible)
    assert visible[0].texts[0].get_text() == "epoch 1\ntrain: 17.03\nvalidation total: 16"
    assert visible[1].texts[0].get_text() == "epoch 1\n0.25"
    assert "single epoch" in fig._suptitle.get_text()
