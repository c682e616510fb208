"""``data.feature_subsample`` (OpenTAD ``sample_stride``; the AFSD feature recipe keeps every 3rd feature):
feature j of the sub-sampled store is stored feature j k, at second ``(j k stride + offset) / fps``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tadkit.data.dataset import WindowDataset
from tadkit.data.features import FeatureSpec, FeatureStore, SubsampledFeatureStore, write_feature_dir
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.data.windows import window_starts
from tadkit.engine.config import PACKAGED_CONFIGS, load_config
from tadkit.errors import TadkitError

FPS, STRIDE, OFFSET = 30.0, 4.0, 8.0
LENGTHS = {"a": 1000, "b": 301, "c": 50}  # features as stored; 1000 -> 334, 301 -> 101, 50 -> 17


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    rng = np.random.default_rng(0)
    videos = {vid: rng.standard_normal((n, 6)).astype(np.float32) for vid, n in LENGTHS.items()}
    for vid, n in LENGTHS.items():
        videos[vid][:, 0] = np.arange(n)  # column 0 = stored row index
    spec = FeatureSpec(fps=FPS, stride_frames=STRIDE, clip_frames=16.0, offset_frames=OFFSET, dim=6)
    return FeatureStore(write_feature_dir(tmp_path / "features", spec, videos))


def _annotations() -> AnnotationSet:
    videos = {}
    for vid, n in LENGTHS.items():
        duration = (n * STRIDE + 12) / FPS
        segs = [Segment(0.25 * duration, 0.25 * duration + 3.0, "Jump"), Segment(0.6 * duration, 0.6 * duration + 1.0, "Throw")]
        videos[vid] = VideoAnnotation(video_id=vid, subset="test", duration=duration, fps=FPS, segments=segs)
    return AnnotationSet(videos=videos, classes=["Jump", "Throw"])


def test_time_mapping_and_rows_of_the_subsampled_store(store: FeatureStore) -> None:
    sub = SubsampledFeatureStore(store, 3)
    assert [sub.num_features(v) for v in LENGTHS] == [334, 101, 17]  # ceil(T / 3), as features[::3]
    timing, base = sub.timing("a"), store.timing("a")
    assert (timing.stride_frames, timing.clip_frames, timing.offset_frames) == (12.0, 16.0, 8.0)
    j = np.array([0, 1, 7, 333])
    np.testing.assert_allclose(timing.index_to_seconds(j), base.index_to_seconds(3 * j), rtol=0, atol=1e-12)
    np.testing.assert_allclose(timing.index_to_seconds(5), (5 * 12 + 8) / 30.0, rtol=0, atol=1e-12)
    video = sub.video("b")
    assert video.shape == (101, 6)
    assert video[:][:, 0].tolist() == list(range(0, 301, 3))
    assert video[10:13][:, 0].tolist() == [30.0, 33.0, 36.0]
    assert video[-1][0] == 300.0 and video[np.array([2, 0])][:, 0].tolist() == [6.0, 0.0]
    with pytest.raises(IndexError):
        video[101]
    assert sub.dim("a") == 6 and sub.root == store.root  # the rest is the wrapped store's
    with pytest.raises(TadkitError, match="positive integer"):
        SubsampledFeatureStore(store, 0)


def test_window_dataset_counts_and_times_with_subsample(store: FeatureStore) -> None:
    annotations = _annotations()
    plain = WindowDataset(annotations, store, window=64, stride=32, subset="test", training=False, progress=False)
    sub = WindowDataset(annotations, store, window=64, stride=32, subset="test", training=False, progress=False,
                        feature_subsample=3)
    counts = sub.windows_per_video()
    for vid, n in LENGTHS.items():
        assert counts[vid] == len(window_starts(-(-n // 3), 64, 32, training=False))
    assert counts == {"a": 10, "b": 3, "c": 1} and plain.windows_per_video()["a"] == 31
    for i, plan in enumerate(sub.plans):
        window = sub[i]
        # window position p is stored feature 3 (start + p): its time is t0 + p * step
        stored = window.features[: window.valid_length, 0]
        np.testing.assert_array_equal(stored, 3 * (plan.start + np.arange(window.valid_length)))
        assert window.step == pytest.approx(12.0 / FPS)
        assert window.t0 == pytest.approx((3 * plan.start * STRIDE + OFFSET) / FPS)
    # GT in window steps: the 3-s Jump of video a sits at the same seconds in both datasets
    t_plain = {(p.video_id, round(p.t0 + p.gt_segments[k, 0] * p.step, 6)) for p in plain.plans for k in range(len(p.gt_labels))}
    t_sub = {(p.video_id, round(p.t0 + p.gt_segments[k, 0] * p.step, 6)) for p in sub.plans for k in range(len(p.gt_labels))}
    assert t_sub and t_sub <= t_plain


def test_every_shipped_afsd_config_loads_and_the_features_recipe_subsamples() -> None:
    configs = sorted((PACKAGED_CONFIGS / "afsd").glob("*.yaml"))
    assert len(configs) >= 2
    loaded = {path.stem: load_config(path) for path in configs}
    assert loaded["thumos14_features"].data.feature_subsample == 3
    assert loaded["thumos14_features"].data.window_dataset_kwargs(True)["feature_subsample"] == 3
    with pytest.raises(TadkitError, match="feature_subsample"):
        load_config(configs[0], ["data.feature_subsample=0"])
