"""Sliding windows (A2Net rule), GT coverage, padding, whole-video resampling and collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tadkit.data.features import FeatureTiming
from tadkit.data.records import Window
from tadkit.data.windows import (
    SlidingWindowConfig,
    collate_windows,
    cut_window,
    frame_grid_starts,
    gt_coverage,
    make_resampled_window,
    make_sliding_windows,
    plan_sliding_windows,
    resample_features,
    resample_indices,
    sliding_windows,
    window_starts,
)
from tadkit.errors import TadkitError

UNIT = FeatureTiming(fps=1.0, stride_frames=1.0, clip_frames=1.0)  # 1 feature = 1 s: exact arithmetic


def official_a2net_starts(frame_count: int, is_train: bool) -> list[float]:
    """Literal restatement of A2Net's window-start rule (spec a2net.md 1.2), used as the reference."""
    window_size = 512.0
    stride = window_size / 4 if is_train else window_size / 2
    num_window = int(1.0 * (frame_count + stride - window_size) / stride)
    starts = [i * stride for i in range(num_window)]
    if is_train and num_window == 0:
        starts = [0]
    if frame_count > window_size:
        starts.append(frame_count - window_size)
    return starts


# ------------------------------------------------------------------------------------------- starts


@pytest.mark.parametrize(
    "frames, training, expected",
    [
        (1000, True, [0, 128, 256, 384, 488]),  # 4 regular + final at F - 512
        (1000, False, [0, 256, 488]),
        (513, True, [0, 1]),  # one regular window, final window shifted by one frame
        (513, False, [0, 1]),
        (512, True, [0]),  # exactly one window, no final window (F is not > 512)
        (512, False, [0]),
        (400, True, [0]),  # shorter than a window: one padded window at 0
        (400, False, [0]),
        (640, True, [0, 128]),  # final start equals the last regular start: not repeated
        (1, True, [0]),
    ],
)
def test_window_starts_hand_cases(frames, training, expected):
    stride = 128 if training else 256
    assert window_starts(frames, 512, stride, training=training).tolist() == expected


@pytest.mark.parametrize(
    "frames, training, expected",
    [
        (640, True, [0, 128, 128]),  # the script keeps the duplicate
        (768, False, [0, 256, 256]),
        (400, False, []),  # the script gives test videos shorter than 512 frames no window at all
        (300, True, [0]),  # int(-0.66) == 0 -> fallback window
        (256, True, []),  # int(-1.0) == -1 -> no window
    ],
)
def test_official_quirks_hand_cases(frames, training, expected):
    stride = 128 if training else 256
    assert window_starts(frames, 512, stride, training=training, official_quirks=True).tolist() == expected


@pytest.mark.parametrize("training", [True, False])
def test_official_quirks_equal_the_reference_for_every_length(training):
    stride = 128 if training else 256
    for frames in range(1, 3000):
        ours = window_starts(frames, 512, stride, training=training, official_quirks=True).tolist()
        assert ours == official_a2net_starts(frames, training), frames


@pytest.mark.parametrize("training", [True, False])
def test_generalized_rule_is_official_without_duplicates_and_never_empty(training):
    stride = 128 if training else 256
    for frames in range(1, 3000):
        ours = window_starts(frames, 512, stride, training=training).tolist()
        reference = list(dict.fromkeys(official_a2net_starts(frames, training))) or [0]
        assert ours == reference, frames


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 5000), window=st.integers(1, 300), stride=st.integers(1, 300))
def test_windows_cover_the_whole_sequence(length, window, stride):
    starts = window_starts(length, window, stride)
    assert starts[0] == 0 and np.all(np.diff(starts) > 0)
    assert starts[-1] + window >= length  # the last window reaches the end
    if length >= window:
        assert starts[-1] + window == length  # ... and no window hangs past it
        assert np.all(np.diff(starts) <= stride)  # no gaps between windows
    else:
        assert starts.tolist() == [0]


def test_feature_starts_match_frame_starts_when_frames_divide():
    # 1000 frames = 250 features at stride 4; A2Net train (window 128 features, stride 32)
    assert sliding_windows(250, 128, 32).tolist() == [0, 32, 64, 96, 122]
    assert frame_grid_starts(1000, 128, 32, 4).tolist() == [0, 32, 64, 96, 122]
    # 1003 frames: the final frame start 491 maps to feature floor(491 / 4) = 122
    assert frame_grid_starts(1003, 128, 32, 4).tolist() == [0, 32, 64, 96, 122]
    assert frame_grid_starts(1006, 128, 32, 4).tolist() == [0, 32, 64, 96, 123]


# ---------------------------------------------------------------------------------------------- padding


def test_short_video_is_padded_by_repeating_its_last_feature():
    feats = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    windows = make_sliding_windows("v", feats, UNIT, np.zeros((0, 2)), np.zeros(0), SlidingWindowConfig(window=128), training=False)
    assert len(windows) == 1
    w = windows[0]
    assert w.features.shape == (128, 3) and w.valid_length == 50
    np.testing.assert_array_equal(w.features[:50], feats)
    np.testing.assert_array_equal(w.features[50:], np.repeat(feats[-1:], 78, axis=0))


def test_final_window_of_a_long_video_needs_no_padding_and_zero_pad_option():
    feats = np.random.default_rng(0).standard_normal((300, 2)).astype(np.float32)
    windows = make_sliding_windows("v", feats, UNIT, np.zeros((0, 2)), np.zeros(0), SlidingWindowConfig(window=128), training=False)
    assert [w.valid_length for w in windows] == [128] * len(windows)
    np.testing.assert_array_equal(windows[-1].features, feats[-128:])
    padded, valid = cut_window(feats[:10], 0, 16, pad="zero")
    assert valid == 10 and np.all(padded[10:] == 0)


# -------------------------------------------------------------------------------------- GT in windows


@pytest.mark.parametrize(
    "segment, kept",
    [
        ((119.0, 129.0), False),  # 9 of 10 inside: exactly 0.9 is not > 0.9
        ((118.9, 128.9), True),  # 9.1 of 10 inside
        ((-1.0, 9.0), False),  # 0.9 at the start of the window
        ((-0.5, 9.5), True),
        ((10.0, 20.0), True),
        ((128.0, 140.0), False),
    ],
)
def test_ninety_percent_rule_boundary(segment, kept):
    plans = plan_sliding_windows(
        "v", 1000, UNIT, np.array([segment]), np.array([3]), SlidingWindowConfig(window=128, stride=1000), training=False
    )
    first = plans[0]
    assert first.start == 0
    assert (len(first.gt_labels) == 1) == kept
    if kept:
        s, e = segment
        np.testing.assert_allclose(first.gt_segments[0], [max(s, 0), min(e, 128)], rtol=1e-6)  # clipped
        assert first.gt_labels[0] == 3


def test_inclusive_coverage_keeps_the_boundary_case():
    config = SlidingWindowConfig(window=128, stride=1000, coverage_inclusive=True)
    plans = plan_sliding_windows("v", 1000, UNIT, np.array([[119.0, 129.0]]), np.array([0]), config, training=False)
    assert len(plans[0].gt_labels) == 1


def test_training_drops_windows_without_gt_and_test_keeps_all():
    segments = np.array([[10.0, 20.0]])
    config = SlidingWindowConfig(window=128, stride=32)
    train = plan_sliding_windows("v", 1000, UNIT, segments, np.array([0]), config, training=True)
    test = plan_sliding_windows("v", 1000, UNIT, segments, np.array([0]), config, training=False)
    assert [p.start for p in train] == [0]  # only window 0 holds the GT
    assert len(test) == len(sliding_windows(1000, 128, 32, training=False))
    default = SlidingWindowConfig(window=128)  # stride None: 32 in training, 64 at test (A2Net)
    assert [p.start for p in plan_sliding_windows("v", 1000, UNIT, segments, np.array([0]), default, training=False)] == (
        sliding_windows(1000, 128, 64, training=False).tolist()
    )
    assert sum(len(p.gt_labels) for p in test) == 1
    keep_all = SlidingWindowConfig(window=128, stride=32, drop_empty=False)
    assert len(plan_sliding_windows("v", 1000, UNIT, segments, np.array([0]), keep_all, training=True)) == len(
        sliding_windows(1000, 128, 32)
    )


def test_require_full_gt_keeps_only_windows_with_a_whole_instance():
    config = SlidingWindowConfig(window=100, stride=50, min_gt_coverage=0.5, coverage_inclusive=True, require_full_gt=True)
    plans = plan_sliding_windows("v", 300, UNIT, np.array([[90.0, 110.0]]), np.array([1]), config, training=True)
    # windows start 0, 50, 100, 150, 200; only 50 holds [90, 110] entirely; 0 and 100 hold half of it
    assert [p.start for p in plans] == [50]


def test_gt_is_in_window_steps_and_maps_back_to_seconds():
    timing = FeatureTiming.clip_start(fps=30.0, stride_frames=4, clip_frames=16)
    seconds = np.array([[10.0, 12.5], [30.1, 31.0]])
    feats = np.zeros((1500, 2), np.float32)
    windows = make_sliding_windows("v", feats, timing, seconds, np.array([0, 1]), SlidingWindowConfig(window=128), training=True)
    assert windows, "GT must produce training windows"
    for w in windows:
        assert w.step == pytest.approx(4 / 30)
        assert w.gt_segments.dtype == np.float32 and w.gt_labels.dtype == np.int64
        assert np.all(w.gt_segments >= 0) and np.all(w.gt_segments <= 128)
        back = w.to_seconds(w.gt_segments)
        for row, label in zip(back, w.gt_labels):
            np.testing.assert_allclose(row, seconds[label], atol=1e-4)  # wholly inside: unclipped


@settings(max_examples=100, deadline=None)
@given(
    starts=st.lists(st.integers(0, 500), min_size=1, max_size=8),
    window=st.integers(1, 200),
    segs=st.lists(
        st.tuples(st.floats(-50, 800), st.one_of(st.just(0.0), st.floats(1e-3, 100))), min_size=0, max_size=12
    ),
)
def test_vectorized_coverage_equals_per_segment_loop(starts, window, segs):
    segments = np.array([[s, s + d] for s, d in segs], dtype=np.float64).reshape(-1, 2)
    coverage, clipped = gt_coverage(np.array(starts), window, segments)
    for i, b in enumerate(starts):
        for j, (s, e) in enumerate(segments):
            overlap = min(b + window, e) - max(b, s)
            expected = overlap / (e - s) if e > s else 0.0
            assert coverage[i, j] == pytest.approx(max(expected, 0.0), abs=1e-9)
            if expected > 0:
                np.testing.assert_allclose(clipped[i, j], [max(s, b) - b, min(e, b + window) - b], atol=1e-9)


def test_frames_grid_needs_frame_count():
    with pytest.raises(TadkitError) as info:
        plan_sliding_windows("v", 100, UNIT, np.zeros((0, 2)), np.zeros(0), SlidingWindowConfig(start_grid="frames"), training=True)
    assert "video v" in str(info.value) and "field num_frames" in str(info.value)


# ------------------------------------------------------------------------------------------ resampling


@pytest.mark.parametrize("n, length", [(7, 20), (100, 37), (750, 750), (1000, 128), (3, 1)])
def test_interpolation_matches_torch_linear(n, length):
    feats = np.random.default_rng(n).standard_normal((n, 5)).astype(np.float32)
    ours = resample_features(feats, length)
    as_double = torch.from_numpy(feats.T[None].astype(np.float64))  # double: no float32 coordinate rounding
    reference = F.interpolate(as_double, size=length, mode="linear", align_corners=False)[0].T
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-5, atol=1e-5)


def test_interpolated_features_sit_where_the_time_mapping_says():
    # feature k carries the time of its own cell centre; after resampling, step j must carry the time of
    # its own cell centre under the window's t0/step mapping
    n, length = 333, 100
    for timing in (
        FeatureTiming.clip_centre(fps=25.0, stride_frames=16, clip_frames=16),  # t0 = 0.32 s
        FeatureTiming(fps=30.0, stride_frames=4, clip_frames=16, offset_frames=-6.0),
    ):
        feats = timing.index_to_seconds(np.arange(n) + 0.5)[:, None].astype(np.float32)
        w = make_resampled_window("v", feats, timing, np.zeros((0, 2)), np.zeros(0), length, time_base="features")
        assert w.t0 == pytest.approx(timing.t0)
        interior = slice(1, length - 1)  # the first/last half cells are clamped
        np.testing.assert_allclose(w.features[interior, 0], w.to_seconds(np.arange(length) + 0.5)[interior], rtol=1e-5)
    # with features spanning exactly the whole video (clip-start convention), the duration mapping agrees
    timing = FeatureTiming.clip_start(fps=25.0, stride_frames=16, clip_frames=16)
    feats = timing.index_to_seconds(np.arange(n) + 0.5)[:, None].astype(np.float32)
    duration = n * timing.seconds_per_feature
    wd = make_resampled_window("v", feats, timing, np.zeros((0, 2)), np.zeros(0), length, duration=duration)
    assert wd.t0 == 0.0 and wd.step == pytest.approx(duration / length)
    np.testing.assert_allclose(wd.features[1:-1, 0], wd.to_seconds(np.arange(length) + 0.5)[1:-1], rtol=1e-5)


def test_resampled_gt_maps_back_to_seconds_and_is_clipped():
    feats = np.zeros((500, 4), np.float32)
    seconds = np.array([[3.0, 9.0], [95.0, 130.0], [140.0, 150.0]])  # video lasts 100 s
    w = make_resampled_window("v", feats, None, seconds, np.array([2, 0, 1]), 128, duration=100.0)
    assert w.features.shape == (128, 4) and w.valid_length == 128
    assert w.step == pytest.approx(100 / 128)
    np.testing.assert_allclose(w.to_seconds(w.gt_segments), [[3.0, 9.0], [95.0, 100.0]], atol=1e-4)
    assert w.gt_labels.tolist() == [2, 0]


def test_duration_time_base_needs_a_duration():
    with pytest.raises(TadkitError) as info:
        make_resampled_window("vid7", np.zeros((10, 2)), None, np.zeros((0, 2)), np.zeros(0), 5, duration=None)
    assert "video vid7" in str(info.value) and "field duration" in str(info.value)


def test_uniform_sampling_acrnet_rule():
    assert resample_indices(10, 4, "uniform").tolist() == [0, 2, 5, 7]
    assert resample_indices(5, 750, "uniform").tolist() == [0, 1, 2, 3, 4]  # short video kept whole
    feats = np.arange(10, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(resample_features(feats, 4, "uniform")[:, 0], [0, 2, 5, 7])


def test_random_sampling_stays_in_its_bins_and_repeats_for_short_videos():
    rng = np.random.default_rng(0)
    n, length = 1000, 750
    lo = (np.arange(length) * n) // length
    hi = ((np.arange(length) + 1) * n) // length
    draws = np.stack([resample_indices(n, length, "random", rng) for _ in range(200)])
    assert np.all(draws >= lo) and np.all(np.where(hi > lo, draws < hi, draws == lo))
    wide = hi - lo >= 2
    assert np.all((draws[:, wide] == (hi[wide] - 1)).any(axis=0))  # the top of each bin is reachable
    short = resample_indices(30, 750, "random", rng)
    assert len(short) == 750 and np.all(np.diff(short) >= 0) and set(short.tolist()) == set(range(30))
    same_a = resample_indices(n, length, "random", np.random.default_rng(5))
    same_b = resample_indices(n, length, "random", np.random.default_rng(5))
    np.testing.assert_array_equal(same_a, same_b)


def test_uniform_short_video_window_keeps_feature_rate():
    timing = FeatureTiming.clip_start(fps=25.0, stride_frames=16, clip_frames=16)
    w = make_resampled_window(
        "v", np.ones((40, 3), np.float32), timing, np.array([[1.28, 2.56]]), np.array([0]), 750, mode="uniform", time_base="features"
    )
    assert w.features.shape == (40, 3) and w.valid_length == 40 and w.step == pytest.approx(0.64)
    np.testing.assert_allclose(w.gt_segments, [[2.0, 4.0]], rtol=1e-6)


# --------------------------------------------------------------------------------------------- collate


def test_collate_shapes_types_and_padding():
    def window(t, n_gt, vid):
        return Window(
            video_id=vid,
            features=np.full((t, 6), float(t), np.float32),
            t0=1.5,
            step=0.25,
            gt_segments=np.arange(2 * n_gt, dtype=np.float32).reshape(n_gt, 2),
            gt_labels=np.arange(n_gt, dtype=np.int64),
            valid_length=t,
        )

    batch = collate_windows([window(16, 2, "a"), window(10, 0, "b")])
    feats = batch["features"]
    assert feats.shape == (2, 6, 16) and feats.dtype == torch.float32 and feats.is_contiguous()
    assert torch.all(feats[0] == 16) and torch.all(feats[1, :, :10] == 10) and torch.all(feats[1, :, 10:] == 0)
    assert batch["targets"][0]["segments"].shape == (2, 2) and batch["targets"][0]["segments"].dtype == torch.float32
    assert batch["targets"][1]["segments"].shape == (0, 2) and batch["targets"][1]["labels"].dtype == torch.int64
    assert batch["meta"][1] == {"video_id": "b", "t0": 1.5, "step": 0.25, "valid_length": 10}


def test_collate_transposes_time_and_channels_correctly():
    feats = np.random.default_rng(1).standard_normal((12, 5)).astype(np.float32)
    w = Window("v", feats, 0.0, 1.0, np.zeros((0, 2), np.float32), np.zeros(0, np.int64), 12)
    np.testing.assert_array_equal(collate_windows([w])["features"][0].numpy(), feats.T)
