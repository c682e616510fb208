"""Plots: valid PNGs of sensible size whose pixels show what was asked, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from tadkit.data.records import DetectionSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from tadkit.viz.plots import class_colors, plot_duration_map, plot_pr_curve, plot_timeline, plot_training_curves

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
    dets = detections([("v1", 1.2, 4.5, "Diving", 0.9), ("v1", 6.0, 8.0, "CliffDiving", 0.2),
                       ("v2", 11.0, 29.0, "BaseballPitch", 0.7), ("other", 0.0, 1.0, "HighJump", 1.0)])
    path = plot_timeline(gt, dets, {"v1": 10.0, "v2": 40.0}, CLASSES, tmp_path / "t.png", "two videos")
    pixels = load_png(path)
    assert pixels.shape[1] == 1200 and 300 <= pixels.shape[0] <= 800
    colours = class_colors(CLASSES)
    for name in ("CliffDiving", "Diving", "BaseballPitch"):  # opaque GT bars keep the exact colour
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
    three = load_png(plot_training_curves(history, tmp_path / "c3.png", "run"))
    one = load_png(plot_training_curves({"loss": [1.0, 0.5]}, tmp_path / "c1.png"))
    assert three.shape[1] == 3 * one.shape[1]  # 3 panels side by side, same panel width
    line = rgb255(class_colors(["x"])["x"])  # default line colour C0 == tab:blue == first class colour
    assert has_colour(three, line).sum() > 3 * has_colour(one, line).sum() / 2
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
