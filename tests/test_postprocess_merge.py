"""Window -> seconds conversion and set-level edits, against loop references and real THUMOS14 files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import shared_path
from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError
from tadkit.models.base import WindowDetections
from tadkit.postprocess.merge import (
    THUMOS14_DUPLICATES,
    clip_to_durations,
    drop_overlapping,
    duplicate_labels,
    top_k_per_video,
    windows_to_detections,
)

CLASSES = ["BaseballPitch", "CliffDiving", "Diving"]
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def window(segments, scores, labels, dtype=torch.float32) -> WindowDetections:
    return WindowDetections(
        torch.tensor(segments, dtype=dtype).reshape(-1, 2),
        torch.tensor(scores, dtype=dtype),
        torch.tensor(labels, dtype=torch.int64),
    )


def read_evalkit(name: str) -> list[tuple[str, float, float]]:
    rows = []
    for line in shared_path("data", "thumos14", "evalkit", "test", f"{name}_test.txt").read_text().splitlines():
        parts = line.split()
        if parts:
            rows.append((parts[0], float(parts[1]), float(parts[2])))
    return rows


def as_set(rows, label: str, score: float = 1.0) -> DetectionSet:
    n = len(rows)
    return DetectionSet(np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows]),
                        np.array([r[2] for r in rows]), np.array([label] * n, dtype=object), np.full(n, score))


# --------------------------------------------------------------------------------------------- #
# windows_to_detections
# --------------------------------------------------------------------------------------------- #


def test_window_steps_become_seconds_and_names():
    # A2Net-like: 4 frames per step at 30 fps -> 2/15 s per step; second window starts at step 64.
    step = 4 / 30
    dets = [window([[0.0, 8.0], [10.5, 20.0]], [0.9, 0.4], [1, 2]), window([[1.0, 3.0]], [0.7], [0])]
    metas = [
        {"video_id": "video_test_0000004", "t0": 0.0, "step": step, "valid_length": 128},
        {"video_id": "video_test_0000004", "t0": 64 * step, "step": step, "valid_length": 100},
    ]
    out = windows_to_detections(dets, metas, CLASSES, None)
    assert out.video.tolist() == ["video_test_0000004"] * 3
    assert out.label.tolist() == ["CliffDiving", "Diving", "BaseballPitch"]
    np.testing.assert_allclose(out.start, [0.0, 10.5 * 4 / 30, (64 + 1) * 4 / 30])
    np.testing.assert_allclose(out.end, [8 * 4 / 30, 20 * 4 / 30, (64 + 3) * 4 / 30])
    np.testing.assert_allclose(out.score, [0.9, 0.4, 0.7], rtol=1e-6)


def test_clipping_to_video_duration_and_drop_empty():
    dets = [window([[-2.0, 3.0], [8.0, 12.0], [11.0, 14.0]], [0.5, 0.6, 0.7], [0, 0, 0])]
    metas = [{"video_id": "v", "t0": 1.0, "step": 1.0, "valid_length": 10}]
    out = windows_to_detections(dets, metas, CLASSES, {"v": 10.0})
    np.testing.assert_allclose(np.stack([out.start, out.end], 1), [[0.0, 4.0], [9.0, 10.0], [10.0, 10.0]])
    kept = windows_to_detections(dets, metas, CLASSES, {"v": 10.0}, drop_empty=True)
    assert kept.score.tolist() == pytest.approx([0.5, 0.6])


@st.composite
def windows_and_metas(draw):
    num = draw(st.integers(0, 5))
    dets, metas = [], []
    for i in range(num):
        k = draw(st.integers(0, 6))
        starts = draw(st.lists(st.floats(-5, 130), min_size=k, max_size=k))
        lengths = draw(st.lists(st.floats(0, 40), min_size=k, max_size=k))
        scores = draw(st.lists(st.floats(0, 1), min_size=k, max_size=k))
        labels = draw(st.lists(st.integers(0, 2), min_size=k, max_size=k))
        dets.append(window([[s, s + w] for s, w in zip(starts, lengths)], scores, labels, torch.float64))
        metas.append({"video_id": draw(st.sampled_from(["a", "b"])), "t0": draw(st.floats(0, 300)),
                      "step": draw(st.floats(0.01, 2.0)), "valid_length": 128})
    return dets, metas


@SETTINGS
@given(windows_and_metas(), st.booleans())
def test_windows_to_detections_matches_row_loop(data, clip):
    dets, metas = data
    durations = {"a": 100.0, "b": 250.0}
    out = windows_to_detections(dets, metas, CLASSES, durations if clip else None)
    expected = []
    for d, m in zip(dets, metas):
        for (s, e), score, label in zip(d.segments.tolist(), d.scores.tolist(), d.labels.tolist()):
            start, end = m["t0"] + s * m["step"], m["t0"] + e * m["step"]
            if clip:
                start = min(max(start, 0.0), durations[m["video_id"]])
                end = min(max(end, 0.0), durations[m["video_id"]])
            expected.append((m["video_id"], start, end, CLASSES[label], score))
    assert len(out) == len(expected)
    for got, want in zip(zip(out.video, out.start, out.end, out.label, out.score), expected):
        assert got[0] == want[0] and got[3] == want[3]
        assert got[1:3] == pytest.approx(want[1:3], rel=1e-12, abs=1e-12)
        assert got[4] == want[4]


@pytest.mark.parametrize(
    "dets, metas, clip, field",
    [
        ([window([[0, 1]], [0.5], [0])], [], None, "meta"),
        ([window([[0, 1]], [0.5], [0])], [{"video_id": "v", "t0": 0.0, "step": 1.0}], None, "meta"),
        ([window([[0, 1]], [0.5], [3])], [{"video_id": "v", "t0": 0.0, "step": 1.0, "valid_length": 5}], None,
         "labels"),
        ([window([[0, 1]], [0.5], [0])], [{"video_id": "v", "t0": 0.0, "step": 0.0, "valid_length": 5}], None,
         "meta.step"),
        ([window([[0, float("nan")]], [0.5], [0])], [{"video_id": "v", "t0": 0.0, "step": 1.0, "valid_length": 5}],
         None, "detections"),
        ([window([[0, 1]], [0.5], [0])], [{"video_id": "v", "t0": 0.0, "step": 1.0, "valid_length": 5}], {"w": 3.0},
         "duration"),
        ([WindowDetections(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, dtype=torch.int64))],
         [{"video_id": "v", "t0": 0.0, "step": 1.0, "valid_length": 5}], None, "segments"),
        ([WindowDetections(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2))],
         [{"video_id": "v", "t0": 0.0, "step": 1.0, "valid_length": 5}], None, "labels"),
    ],
)
def test_windows_to_detections_rejects_bad_input(dets, metas, clip, field):
    with pytest.raises(TadkitError) as info:
        windows_to_detections(dets, metas, CLASSES, clip)
    assert info.value.field == field
    if field not in ("meta",):
        assert info.value.video == "v"


def test_empty_windows_give_an_empty_set():
    out = windows_to_detections([window([], [], [])], [{"video_id": "v", "t0": 0.0, "step": 1.0,
                                                         "valid_length": 1}], CLASSES)
    assert len(out) == 0


# --------------------------------------------------------------------------------------------- #
# duplicate_labels, top_k_per_video, drop_overlapping, clip_to_durations
# --------------------------------------------------------------------------------------------- #


def test_cliffdiving_duplicates_are_real_thumos_diving_instances():
    """On the official THUMOS14 test GT every CliffDiving instance is also a Diving instance; so
    duplicating CliffDiving detections as Diving (A2Net) creates exactly those Diving rows."""
    cliff = read_evalkit("CliffDiving")
    diving = set(read_evalkit("Diving"))
    dets = as_set(cliff, "CliffDiving")
    out = duplicate_labels(dets, THUMOS14_DUPLICATES)
    assert len(out) == 2 * len(cliff) == 434
    copies = out.select(out.label == "Diving")
    assert len(copies) == len(cliff)
    assert set(zip(copies.video, copies.start, copies.end)) <= diving
    assert out.label[: len(cliff)].tolist() == ["CliffDiving"] * len(cliff)  # originals first


def test_duplicate_labels_leaves_other_rows_and_rejects_bad_mapping():
    dets = DetectionSet(np.array(["v", "v"], dtype=object), np.array([0.0, 5.0]), np.array([1.0, 6.0]),
                        np.array(["Diving", "HighJump"], dtype=object), np.array([0.5, 0.6]))
    assert duplicate_labels(dets, THUMOS14_DUPLICATES) is dets
    with pytest.raises(TadkitError) as info:
        duplicate_labels(dets, {"Diving": 3})
    assert info.value.field == "mapping"


@st.composite
def small_sets(draw):
    n = draw(st.integers(0, 40))
    videos = draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=n, max_size=n))
    starts = draw(st.lists(st.floats(0, 50), min_size=n, max_size=n))
    lengths = draw(st.lists(st.floats(0, 10), min_size=n, max_size=n))
    scores = draw(st.lists(st.sampled_from([0.1, 0.5, 0.9]) | st.floats(0, 1), min_size=n, max_size=n))
    return DetectionSet(np.array(videos, dtype=object), np.array(starts, dtype=float),
                        np.array(starts, dtype=float) + np.array(lengths, dtype=float),
                        np.array(["A"] * n, dtype=object), np.array(scores, dtype=float))


@SETTINGS
@given(small_sets(), st.integers(1, 6))
def test_top_k_per_video_matches_loop(dets, k):
    out = top_k_per_video(dets, k)
    expected = []
    for video in dict.fromkeys(dets.video.tolist()):
        rows = [i for i in range(len(dets)) if dets.video[i] == video]
        rows.sort(key=lambda i: (-dets.score[i], i))
        expected.extend(rows[:k])
    assert list(zip(out.video, out.start, out.score)) == [(dets.video[i], dets.start[i], dets.score[i])
                                                          for i in expected]


@SETTINGS
@given(small_sets())
def test_drop_overlapping_matches_loop(dets):
    regions = {"x": np.array([[10.0, 12.0], [30.0, 30.0]]), "y": np.array([[0.0, 5.0]])}
    out = drop_overlapping(dets, regions)
    keep = []
    for i in range(len(dets)):
        spans = regions.get(dets.video[i], np.zeros((0, 2)))
        if not any(min(dets.end[i], e) - max(dets.start[i], s) > 0 for s, e in spans):
            keep.append(i)
    assert list(zip(out.video, out.start, out.end)) == [(dets.video[i], dets.start[i], dets.end[i]) for i in keep]


def test_drop_overlapping_with_real_ambiguous_segments():
    """ACRNet's filter on THUMOS14 test: all GT of the 20 classes plus the Ambiguous spans themselves."""
    ambiguous: dict[str, list] = {}
    for video, start, end in read_evalkit("Ambiguous"):
        ambiguous.setdefault(video, []).append((start, end))
    regions = {v: np.array(s) for v, s in ambiguous.items()}
    names = [line.split()[1] for line in
             shared_path("data", "thumos14", "evalkit", "test", "detclasslist.txt").read_text().splitlines() if line]
    assert len(names) == 20
    dets = DetectionSet.concatenate([as_set(read_evalkit(n), n) for n in names + ["Ambiguous"]])
    out = drop_overlapping(dets, regions)
    dropped = [i for i in range(len(dets))
               if any(min(dets.end[i], e) - max(dets.start[i], s) > 0 for s, e in ambiguous.get(dets.video[i], []))]
    assert len(dets) == 3358 + 99
    assert len(out) == len(dets) - len(dropped)
    assert "Ambiguous" not in set(out.label)  # every Ambiguous span overlaps itself
    assert len(dropped) == 99 + 4  # 4 real GT instances touch an Ambiguous span (1+1+2 in 3 classes)


def test_clip_to_durations():
    dets = DetectionSet(np.array(["v", "w"], dtype=object), np.array([-1.0, 3.0]), np.array([4.0, 9.0]),
                        np.array(["A", "A"], dtype=object), np.array([0.5, 0.6]))
    out = clip_to_durations(dets, {"v": 3.0, "w": 5.0})
    np.testing.assert_allclose(np.stack([out.start, out.end], 1), [[0.0, 3.0], [3.0, 5.0]])
    with pytest.raises(TadkitError) as info:
        clip_to_durations(dets, {"v": 3.0})
    assert info.value.video == "w" and info.value.field == "duration"
    with pytest.raises(TadkitError):
        clip_to_durations(dets, {"v": 3.0, "w": -1.0})
    with pytest.raises(TadkitError) as info:
        top_k_per_video(dets, 0)
    assert info.value.field == "k"
