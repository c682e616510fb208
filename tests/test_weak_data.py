"""The weak data path: whole videos resampled to T, per-video meta, video-level labels from every
annotation format, no segment anywhere in a batch, and the bad-input errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import shared_path
from tadkit.data.annotations import load_annotations
from tadkit.data.dataset import VideoDataset, VideoSample, collate_videos, video_label_matrix
from tadkit.data.features import FeatureSpec, FeatureStore, write_feature_dir
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from tadkit.methods.ecm.model import build_ecm

CLASSES = ["jump", "run", "throw"]
FPS, STRIDE = 30.0, 4


@pytest.fixture
def data(tmp_path):
    """Three videos (30, 30, 25 fps), features every 4 frames; v_tiny has only 5 features."""
    rng = np.random.default_rng(0)
    durations = {"v_tiny": (0.7, FPS), "v_mid": (40.0, FPS), "v_long": (90.0, 25.0)}
    raw, videos = {}, {}
    for vid, (duration, fps) in durations.items():
        n = int(round(duration * fps / STRIDE))
        raw[vid] = rng.standard_normal((n, 4)).astype(np.float32)
        videos[vid] = raw[vid]
    write_feature_dir(tmp_path, FeatureSpec(fps=None, stride_frames=STRIDE, clip_frames=16, dim=4), videos)
    ann = AnnotationSet(
        {
            "v_tiny": VideoAnnotation("v_tiny", "validation", 0.7, FPS, [Segment(0.1, 0.5, "run")]),
            "v_mid": VideoAnnotation("v_mid", "validation", 40.0, FPS,
                                     [Segment(5.0, 7.0, "jump"), Segment(30.0, 33.0, "throw"), Segment(8, 9, "jump")]),
            "v_long": VideoAnnotation("v_long", "test", 90.0, 25.0, [], num_frames=2251),
        },
        CLASSES,
        source="ann.json",
    )
    return FeatureStore(tmp_path), ann, raw


def interpolate_reference(x: np.ndarray, length: int) -> np.ndarray:
    """Cell-centre linear interpolation per channel with np.interp (edges clamp)."""
    n = x.shape[0]
    pos = (np.arange(length) + 0.5) * n / length - 0.5
    return np.stack([np.interp(pos, np.arange(n), x[:, d]) for d in range(x.shape[1])], axis=1)


def test_samples_are_whole_videos_with_meta_and_labels(data):
    store, ann, raw = data
    ds = VideoDataset(ann, store, length=50, training=False, progress=False)
    assert ds.video_ids == ["v_tiny", "v_mid", "v_long"]
    by_id = {ds[i].video_id: ds[i] for i in range(len(ds))}
    mid = by_id["v_mid"]
    np.testing.assert_allclose(mid.features, interpolate_reference(raw["v_mid"], 50), rtol=1e-5, atol=1e-5)
    assert mid.meta == {"video_id": "v_mid", "t0": 0.0, "step": pytest.approx(40.0 / 50), "valid_length": 50,
                        "fps": 30.0, "frame_num": 1200, "duration": 40.0, "num_features": 300,
                        "feature_fps": 30.0, "stride_frames": 4.0}  # the features' own time mapping (ACRNet's CAS)
    assert mid.video_labels.tolist() == [1.0, 0.0, 1.0]  # jump twice counts once
    long = by_id["v_long"]  # no labels is fine at test; the annotated frame count wins over duration x fps
    assert long.video_labels.tolist() == [0.0, 0.0, 0.0] and long.meta["frame_num"] == 2251
    assert long.meta["fps"] == 25.0


def test_length_larger_than_the_feature_count_interpolates(data):
    store, ann, raw = data
    ds = VideoDataset(ann, store, length=750, subset="validation", progress=False)
    tiny = ds[ds.video_ids.index("v_tiny")]
    assert raw["v_tiny"].shape[0] == 5 and tiny.features.shape == (750, 4)
    np.testing.assert_allclose(tiny.features, interpolate_reference(raw["v_tiny"], 750), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tiny.features[0], raw["v_tiny"][0], atol=1e-6)  # clamped ends, no extrapolation
    np.testing.assert_allclose(tiny.features[-1], raw["v_tiny"][-1], atol=1e-6)
    assert tiny.meta["num_features"] == 5 and tiny.meta["step"] == pytest.approx(0.7 / 750)


def test_batches_carry_no_segments(data):
    store, ann, _ = data
    ds = VideoDataset(ann, store, length=40, subset="validation", progress=False)
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_videos)))
    assert set(batch) == {"features", "meta", "video_labels"}  # never "targets"
    assert batch["features"].shape == (2, 4, 40) and batch["video_labels"].dtype == torch.float32
    assert {f.name for f in dataclasses.fields(VideoSample)} == {"features", "meta", "video_labels"}
    sample = ds[0]
    with pytest.raises((AttributeError, TypeError)):
        sample.segments = np.zeros((1, 2))  # frozen, slotted: nothing can be attached
    assert not any("segment" in key for key in sample.meta)
    # one ECM training step on the batch (the contract the engine uses)
    model = build_ecm(in_dim=4, hidden_dim=8, num_classes=3).train()
    losses = model.loss(model(batch), batch)
    losses["total"].backward()
    assert torch.isfinite(losses["total"]) and model.attention_module.conv_1.weight.grad is not None


def test_training_video_without_labels_is_an_error(data):
    store, ann, _ = data
    with pytest.raises(TadkitError) as info:
        VideoDataset(ann, store, length=20, training=True, progress=False)  # v_long has no label
    assert (info.value.file, info.value.video, info.value.field) == ("ann.json", "v_long", "labels")
    assert len(VideoDataset(ann, store, length=20, training=False, progress=False)) == 3


def test_label_outside_the_class_list_is_an_error(data):
    store, ann, _ = data
    ann.videos["v_mid"].segments.append(Segment(1.0, 2.0, "swim"))
    with pytest.raises(TadkitError) as info:
        VideoDataset(ann, store, length=20, subset="validation", progress=False)
    assert (info.value.file, info.value.video, info.value.field) == ("ann.json", "v_mid", "label")
    assert "swim" in str(info.value)


def test_acrnet_sampling_still_random_in_training(data):
    store, ann, raw = data
    ds = VideoDataset(ann, store, length=200, subset="validation", resample_mode="acrnet", time_base="features",
                      progress=False)
    i = ds.video_ids.index("v_mid")
    torch.manual_seed(0)
    a = ds[i].features
    torch.manual_seed(0)
    b = ds[i].features
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, ds[i].features)
    assert ds[i].meta["step"] == pytest.approx(300 / 200 * STRIDE / FPS)


@pytest.mark.parametrize("path, train_subset, classes", [
    ("thumos14/evalkit", "val", 20),
    ("activitynet/v1.2/wtalc_npy", "training", 100),
    ("activitynet/v1.3/bsn", "training", 200),
])
def test_video_labels_from_real_annotation_formats(path, train_subset, classes):
    aset = load_annotations(shared_path("data", *path.split("/")))
    train = aset.subset(train_subset)
    matrix = video_label_matrix(train, require_labels=True)  # every training video has a label
    assert matrix.shape == (len(train.videos), classes) and len(train.videos) > 100
    for row, video in zip(matrix, train.videos.values()):
        assert set(np.flatnonzero(row).tolist()) == {train.class_index(s.label) for s in video.segments}
    assert (matrix.sum(axis=0) > 0).all()  # every class has training videos


def test_unlabelled_split_cannot_be_a_training_split():
    aset = load_annotations(shared_path("data", "activitynet", "v1.3", "bsn"))
    with pytest.raises(TadkitError) as info:
        video_label_matrix(aset.subset("testing"), require_labels=True)
    assert info.value.field == "labels" and info.value.video is not None


def test_acrnet_mode_is_the_methods_own_sampler(data):
    """`resample_mode: acrnet` = `acrnet_sample_indices`: the same random per-bin draws in training (torch's
    RNG seeds the NumPy generator), uniform indices at test, every feature (variable length) when n <= T."""
    from tadkit.data.dataset import _torch_rng
    from tadkit.methods.acrnet.sampling import acrnet_sample_indices

    store, ann, raw = data
    train = VideoDataset(ann, store, length=64, subset="validation", resample_mode="acrnet", time_base="features",
                         progress=False)
    for vid, n in (("v_mid", 300), ("v_tiny", 5)):  # n > T: random bins; n < T: repeated indices
        torch.manual_seed(3)
        sample = train[train.video_ids.index(vid)]
        torch.manual_seed(3)
        expected = acrnet_sample_indices(n, 64, True, _torch_rng())
        assert sample.features.shape == (64, 4) and len(np.unique(expected)) == min(n, 64)
        np.testing.assert_array_equal(sample.features, raw[vid][expected])
        assert sample.meta["valid_length"] == 64 and sample.meta["num_features"] == n
    test = VideoDataset(ann, store, length=64, training=False, resample_mode="acrnet", time_base="features",
                        progress=False)
    long = test[test.video_ids.index("v_long")]  # 90 s at 25 fps / 4 = 562 features > 64: uniform floor(i n / T)
    np.testing.assert_array_equal(long.features, raw["v_long"][(np.arange(64) * 562) // 64])
    assert long.meta["step"] == pytest.approx(562 / 64 * STRIDE / 25.0)
    tiny = test[test.video_ids.index("v_tiny")]  # n = 5 <= T: all five features, valid_length 5
    np.testing.assert_array_equal(tiny.features, raw["v_tiny"])
    assert tiny.meta["valid_length"] == 5 and tiny.meta["step"] == pytest.approx(STRIDE / FPS)
    assert {k: tiny.meta[k] for k in ("fps", "frame_num", "duration", "num_features")} == {
        "fps": 30.0, "frame_num": 21, "duration": 0.7, "num_features": 5}
