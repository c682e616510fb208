"""data.mode: video — whole videos, ActionFormer's random truncation in training (tadkit.data.truncate)."""

from __future__ import annotations

import numpy as np
import pytest

from tadkit.data.dataset import WindowDataset, collate_windows
from tadkit.data.features import FeatureSpec, FeatureStore, write_feature_dir
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.data.truncate import crop_length, truncate_video
from tadkit.engine.config import Config


class FixedDraws:
    """A generator whose ``integers`` returns given starts (to compare with the official loop)."""

    def __init__(self, starts: list[int]) -> None:
        self.starts = np.asarray(starts, dtype=np.int64)

    def integers(self, low, high, size=None, endpoint=False):
        assert size == len(self.starts) and endpoint
        assert (self.starts >= low).all() and (self.starts <= high).all()
        return self.starts


def official_truncation(segments: np.ndarray, labels: np.ndarray, starts: list[int], length: int,
                        thresh: float, offset: float):
    """truncate_feats' trial loop (libs/datasets/data_utils.py) re-derived in float64, one start at a time."""
    segments = segments.astype(np.float64)
    for st in starts:
        left = np.maximum(st - offset, segments[:, 0])
        right = np.minimum(st + length + offset, segments[:, 1])
        ratio = np.clip(right - left, 0, None) / np.abs(segments[:, 1] - segments[:, 0])
        keep = ratio >= thresh
        if keep.any():
            break
    return st, np.stack([left[keep], right[keep]], 1) - st, labels[keep]


def test_truncation_matches_the_official_trial_loop():
    rng = np.random.default_rng(3)
    for case in range(200):
        n = int(rng.integers(20, 300))
        max_len = int(rng.integers(5, n))
        k = int(rng.integers(1, 6))
        starts = np.sort(rng.uniform(-3, n, k))
        segments = np.stack([starts, starts + rng.uniform(0.5, 40, k)], 1).astype(np.float32)
        labels = rng.integers(0, 4, k)
        draws = [int(s) for s in rng.integers(0, n - max_len, 200, endpoint=True)]
        offset = 2.0
        cut = truncate_video(n, segments, labels, max_len=max_len, trunc_thresh=0.5, offset=offset,
                             crop_ratio=None, rng=FixedDraws(draws))
        st, ref_segments, ref_labels = official_truncation(segments, labels, draws, max_len, 0.5, offset)
        assert (cut.start, cut.length) == (st, max_len), case
        np.testing.assert_allclose(cut.segments, ref_segments, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(cut.labels, ref_labels)


def test_short_videos_stay_whole_unless_cropped_and_crop_bounds_are_the_officials():
    segments, labels = np.array([[-1.0, 4.0]], np.float32), np.array([2])
    whole = truncate_video(50, segments, labels, max_len=64, trunc_thresh=0.5, offset=2.0, crop_ratio=None,
                           rng=np.random.default_rng(0))
    assert (whole.start, whole.length) == (0, 50)
    np.testing.assert_array_equal(whole.segments, segments)  # not clipped: ActionFormer keeps them as they are
    rng = np.random.default_rng(0)
    lengths = {crop_length(50, 64, (0.9, 1.0), rng) for _ in range(400)}
    assert lengths == set(range(45, 51))  # round(0.9 * 50) = 45 .. 50, both ends reached
    # Python's round is half-to-even: 0.9 * 25 = 22.5 -> 22, the official bound
    assert min(crop_length(25, 64, (0.9, 1.0), rng) for _ in range(400)) == 22
    assert crop_length(500, 64, (0.9, 1.0), rng) == 64  # long videos: always max_len


FPS, STRIDE, CLIP = 10.0, 4, 16


@pytest.fixture
def store_and_annotations(tmp_path):
    rng = np.random.default_rng(0)
    durations = {"a": 40.0, "b": 9.0, "c": 30.0}  # 100, 22 and 75 features
    videos = {vid: rng.standard_normal((int(d * FPS / STRIDE), 3)).astype(np.float32) for vid, d in durations.items()}
    spec = FeatureSpec(fps=FPS, stride_frames=STRIDE, clip_frames=CLIP, dim=3, offset_frames="centre")
    write_feature_dir(tmp_path, spec, videos)
    ann = AnnotationSet({
        "a": VideoAnnotation("a", "validation", 40.0, FPS, [Segment(5.0, 9.0, "x"), Segment(30.0, 34.0, "y")]),
        "b": VideoAnnotation("b", "validation", 9.0, FPS, [Segment(1.0, 3.0, "y")]),
        "c": VideoAnnotation("c", "validation", 30.0, FPS, []),
    }, ["x", "y"], source="ann.json")
    return FeatureStore(tmp_path), ann, videos


def test_video_mode_test_samples_are_whole_videos_on_the_official_grid(store_and_annotations):
    store, ann, videos = store_and_annotations
    ds = WindowDataset(ann, store, "video", window=32, training=False, progress=False)
    assert len(ds) == 3
    sample = ds[0]
    np.testing.assert_array_equal(sample.features, videos["a"])
    # ActionFormer's grid: x = t * fps / stride - 0.5 * num_frames / stride, and back (x * stride + 0.5 num_frames) / fps
    np.testing.assert_allclose(sample.gt_segments, np.array([[5.0, 9.0], [30.0, 34.0]]) * FPS / STRIDE - 0.5 * CLIP / STRIDE,
                               rtol=1e-6)
    assert sample.t0 == pytest.approx(0.5 * CLIP / FPS) and sample.step == pytest.approx(STRIDE / FPS)
    batch = collate_windows([ds[0], ds[1]])
    assert batch["features"].shape == (2, 3, 100) and [m["valid_length"] for m in batch["meta"]] == [100, 22]


def test_video_mode_training_cuts_long_videos_and_keeps_times_consistent(store_and_annotations):
    store, ann, videos = store_and_annotations
    ds = WindowDataset(ann, store, "video", window=32, training=True, progress=False, crop_ratio=(0.9, 1.0))
    assert len(ds) == 2  # c has no action: dropped from training
    import torch

    torch.manual_seed(0)
    seen_starts = set()
    for _ in range(30):
        sample = ds[0]
        assert sample.features.shape == (32, 3) and 1 <= len(sample.gt_labels) <= 2
        start = int(round((sample.t0 - 0.5 * CLIP / FPS) / sample.step))
        seen_starts.add(start)
        np.testing.assert_array_equal(sample.features, videos["a"][start:start + 32])
        seconds = sample.t0 + sample.gt_segments.astype(np.float64) * sample.step
        # a kept segment is its GT cut to the widened window: inside [t_start - half clip, t_end + half clip]
        for (lo, hi), label in zip(seconds, sample.gt_labels):
            gt = [(5.0, 9.0), (30.0, 34.0)][int(label)]
            assert gt[0] - 1e-4 <= lo < hi <= gt[1] + 1e-4
        short = ds[1]
        assert 20 <= short.features.shape[0] <= 22  # the 0.9..1.0 crop of a 22-feature video
    assert len(seen_starts) > 3  # the cut is random


def test_config_passes_the_video_mode_options():
    config = Config.from_dict({"data": {"mode": "video", "window": 2304, "trunc_thresh": 0.5, "crop_ratio": [0.9, 1.0]}})
    kwargs = config.data.window_dataset_kwargs(training=True)
    assert kwargs["mode"] == "video" and kwargs["window"] == 2304 and kwargs["crop_ratio"] == (0.9, 1.0)
    from tadkit.errors import TadkitError

    with pytest.raises(TadkitError, match="crop_ratio"):
        Config.from_dict({"data": {"crop_ratio": [1.0, 0.5]}})


def test_video_mode_resampling_is_actionformers_force_upsampling(store_and_annotations):
    """ActivityNet recipe (libs/datasets/anet.py, feat_stride > 0 and force_upsampling): features linearly
    resized to L (F.interpolate, align_corners False); feat_stride = ((n - 1) stride + clip) / L frames,
    num_frames = feat_stride; GT x = t fps / feat_stride - 0.5; training drops / clips GT past L + 0.5."""
    import torch
    from torch.nn import functional as F

    store, ann, videos = store_and_annotations
    length = 16
    test = WindowDataset(ann, store, "video", window=length, training=False, progress=False, video_length=length)
    sample = test[0]
    n = videos["a"].shape[0]
    expected = F.interpolate(torch.from_numpy(videos["a"].T[None]), size=length, mode="linear", align_corners=False)[0].T
    np.testing.assert_allclose(sample.features, expected.numpy(), rtol=1e-6, atol=1e-6)
    feat_stride = ((n - 1) * STRIDE + CLIP) / length
    assert sample.step == pytest.approx(feat_stride / FPS) and sample.t0 == pytest.approx(0.5 * feat_stride / FPS)
    official = np.array([[5.0, 9.0], [30.0, 34.0]]) * FPS / feat_stride - 0.5
    np.testing.assert_allclose(sample.gt_segments, official, rtol=1e-5)
    # a segment running past the features' end (x = L + 0.5, i.e. (L + 1) feat_stride / fps = 43.775 s here):
    # kept and clipped when >= trunc_thresh of it is inside, else dropped
    end = (length + 1) * feat_stride / FPS
    ann.videos["a"].segments.append(Segment(end - 0.7, end + 6.3, "x"))  # 10 % inside
    ann.videos["a"].segments.append(Segment(end - 2.0, end + 1.0, "y"))  # 67 % inside
    train = WindowDataset(ann, store, "video", window=length, training=True, progress=False, video_length=length)
    cut = train[0]
    assert cut.features.shape[0] == length  # L = window: no crop without crop_ratio
    assert sorted(cut.gt_labels.tolist()) == [0, 1, 1]
    assert float(cut.gt_segments.max()) == pytest.approx(length + 0.5)
