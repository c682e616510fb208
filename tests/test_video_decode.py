"""Decoding and the I3D input pipeline: resize/crop/scale rules, nearest-frame resampling, windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_video_synthetic import index_of, write_video

from tadkit.errors import TadkitError
from tadkit.video.decode import (
    Preprocess,
    center_crop,
    iter_frames,
    iter_native_frames,
    iter_windows,
    num_stacks,
    preprocess_rgb,
    probe_video,
    resample_nearest,
    resize_short_side,
    resized_size,
    to_unit_range,
)


# ----------------------------------------------------------------------------- spatial rules


@pytest.mark.parametrize(
    "hw, expected",
    [((240, 320), (256, 341)), ((320, 240), (341, 256)), ((360, 480), (256, 341)), ((720, 1280), (256, 455)),
     ((256, 256), (256, 256)), ((100, 301), (256, 770))],
)
def test_resized_size_short_side_256_long_side_truncated(hw, expected):
    # 256 * 301 / 100 = 770.56 -> 770 (int truncates, does not round)
    assert resized_size(*hw) == expected


def test_resize_is_pil_bilinear():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = resize_short_side(frame)
    assert out.shape == (256, 341, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(frame).resize((341, 256), Image.BILINEAR))
    assert np.array_equal(out, expected)
    bicubic = np.asarray(Image.fromarray(frame).resize((341, 256), Image.BICUBIC))
    assert not np.array_equal(out, bicubic)  # the filter matters for matching the reference


def test_center_crop_uses_floor_offsets():
    frame = np.arange(257 * 341, dtype=np.int64).reshape(257, 341, 1)
    crop = center_crop(frame, 224)
    # top = floor(33 / 2) = 16, left = floor(117 / 2) = 58
    assert crop.shape == (224, 224, 1)
    assert crop[0, 0, 0] == 16 * 341 + 58
    with pytest.raises(ValueError):
        center_crop(np.zeros((200, 300, 3)), 224)


def test_unit_range_endpoints_and_dtype():
    out = to_unit_range(np.array([0, 255, 51], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, 1.0, 51 * 2 / 255 - 1], rtol=0, atol=1e-7)


def test_preprocess_rgb_composes_resize_crop_scale():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    out = preprocess_rgb(frame, Preprocess())
    resized = np.asarray(Image.fromarray(frame).resize((341, 256), Image.BILINEAR)).astype(np.float64)
    expected = resized[16:240, 58:282] * 2 / 255 - 1
    assert out.shape == (224, 224, 3)
    np.testing.assert_allclose(out, expected, atol=1e-6)


# ----------------------------------------------------------------------------- resampling


def _fake_frames(times):
    """Frames whose single pixel holds their index, at the given presentation times."""
    return [(float(t), np.array([i])) for i, t in enumerate(times)]


def _brute_nearest(times, fps, native_fps, eps=1e-6):
    """The documented rule, spelled out: every target time, the frame at the smallest distance
    (distances within ``eps`` seconds are ties, which go to the earlier frame)."""
    times = np.asarray(times, dtype=np.float64)
    end = times[-1] + 1 / native_fps
    out, j = [], 0
    while j / fps < end - eps:
        d = np.abs(times - j / fps)
        out.append(int(np.flatnonzero(d <= d.min() + eps)[0]))
        j += 1
    return out


@given(
    native=st.sampled_from([10.0, 19.62, 24.0, 29.97, 30.0]),
    target=st.sampled_from([5.0, 7.5, 15.0, 25.0, 30.0, 60.0]),
    n=st.integers(1, 80),
)
@settings(max_examples=60, deadline=None)
def test_resample_nearest_matches_brute_force(native, target, n):
    times = np.arange(n) / native
    got = [int(f[0]) for _, f in resample_nearest(_fake_frames(times), target, native)]
    assert got == _brute_nearest(times, target, native)


def test_resample_nearest_irregular_timestamps_and_times():
    times = [0.0, 0.05, 0.31, 0.32, 0.70]
    out = list(resample_nearest(_fake_frames(times), 10.0, native_fps=10.0))
    # targets 0.0..0.7 (end = 0.70 + 1/10): 0.2 is nearer 0.31 than 0.05, 0.3 nearer 0.31 than 0.32,
    # 0.5 nearer 0.32 than 0.70
    assert [int(f[0]) for _, f in out] == [0, 1, 2, 2, 3, 3, 4, 4]
    np.testing.assert_allclose([t for t, _ in out], np.arange(8) / 10)


def test_resampled_video_frame_count_and_identity(tmp_path):
    path = write_video(tmp_path / "v.mp4", 30, fps=10)
    same = list(iter_frames(path, fps=10))
    assert index_of([f.mean() for _, f in same]).tolist() == list(range(30))
    half = list(iter_frames(path, fps=5))
    assert index_of([f.mean() for _, f in half]).tolist() == list(range(0, 30, 2))
    double = list(iter_frames(path, fps=20))
    assert len(double) == 60
    # target 0.05 s is equidistant from frames 0 and 1: the tie goes to the earlier frame
    assert index_of([f.mean() for _, f in double[:4]]).tolist() == [0, 0, 1, 1]


# ----------------------------------------------------------------------------- windows


@given(n=st.integers(0, 60), length=st.integers(1, 12), step=st.integers(1, 15))
@settings(max_examples=150, deadline=None)
def test_windows_are_full_and_every_step(n, length, step):
    calls = []

    def transform(x):
        calls.append(int(x[0]))
        return int(x[0])

    windows = list(iter_windows(_fake_frames(np.arange(n) / 10.0), length, step, transform))
    starts = [w.start for w in windows]
    assert starts == [k * step for k in range(num_stacks(n, length, step))]
    assert all(w.start + length <= n for w in windows)
    for k, w in enumerate(windows):
        assert w.index == k
        assert w.items == list(range(w.start, w.start + length))
        assert w.start_time == pytest.approx(w.start / 10.0)
    # frames in no window are never transformed, and none is transformed twice
    used = sorted({i for w in windows for i in w.items})
    assert len(calls) == len(set(calls))
    assert set(used) <= set(calls)
    assert all(i % step < length for i in calls)


def test_num_stacks_formula():
    assert num_stacks(355, 64, 64) == 5
    assert num_stacks(63, 64, 64) == 0
    assert num_stacks(64, 64, 64) == 1
    assert num_stacks(100, 16, 4) == 22


# ----------------------------------------------------------------------------- against the reference extractor


@pytest.mark.shared
@pytest.mark.parametrize("fps, stack, step", [(None, 64, 64), (25.0, 24, 24), (15.0, 24, 12)])
def test_window_starts_match_reference_timestamps(shared, fps, stack, step):
    """video_features' reference (ffmpeg-resampled) has the same number of stacks; its timestamps are
    stack END times, i.e. ours (stack start times) + stack / fps."""
    video = shared("data", "activitynet", "samples", "v_GGSY1Qvo990.mp4")
    ref = np.load(shared("data", "activitynet", "samples", "v_GGSY1Qvo990_i3d_reference_video_features.npz"))
    key = "streams-None_stack-None_step-None_fps-None" if fps is None else f"streams-None_stack-{stack}_step-{step}_fps-{fps:g}"
    ref_ms = ref[f"{key}__timestamps_ms"]
    windows = list(iter_windows(iter_frames(video, fps), stack, step, lambda f: None))
    used_fps = float(ref[f"{key}__fps"])
    starts = np.array([w.start_time for w in windows])
    assert len(windows) == len(ref_ms) == ref[f"{key}__rgb"].shape[0]
    np.testing.assert_allclose(starts + stack / used_fps, ref_ms / 1000, atol=1e-3)


# ----------------------------------------------------------------------------- bad input


def test_missing_and_corrupt_videos_raise_tadkit_error(tmp_path):
    with pytest.raises(TadkitError, match="not found") as missing:
        probe_video(tmp_path / "nope.mp4")
    assert missing.value.video == "nope"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(TadkitError) as corrupt:
        list(iter_native_frames(junk))
    assert corrupt.value.file == str(junk) and corrupt.value.video == "junk"


def test_truncated_video_yields_a_prefix_or_a_tadkit_error(tmp_path):
    path = write_video(tmp_path / "full.mp4", 30, fps=10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    try:
        frames = list(iter_native_frames(cut))
    except TadkitError as error:
        assert error.video == "cut"
    else:
        assert len(frames) < 30
