"""Torch datasets over a feature directory: lazy reads, window indexing, resampling, video labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tadkit.data.dataset import VideoDataset, WindowDataset, collate_videos, collate_windows
from tadkit.data.features import FeatureSpec, FeatureStore, write_feature_dir
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.data.windows import sliding_windows
from tadkit.errors import TadkitError

CLASSES = ["jump", "run", "throw"]
FPS, STRIDE = 30.0, 4


@pytest.fixture
def data(tmp_path):
    """Three videos at 30 fps, features every 4 frames (7.5 features/s), D = 3 + 2 in a split layout."""
    rng = np.random.default_rng(0)
    durations = {"v_short": 12.0, "v_mid": 40.0, "v_long": 90.0}
    videos, raw = {}, {}
    for vid, duration in durations.items():
        n = int(duration * FPS / STRIDE)
        rgb, flow = rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal((n, 2)).astype(np.float16)
        raw[vid] = np.concatenate([rgb, flow.astype(np.float32)], axis=1)
        videos[vid] = {"rgb": rgb, "flow": flow}
    spec = FeatureSpec(fps=None, stride_frames=STRIDE, clip_frames=16, dim=5, streams=("rgb", "flow"), layout="split")
    write_feature_dir(tmp_path, spec, videos)
    ann = AnnotationSet(
        {
            "v_short": VideoAnnotation("v_short", "validation", 12.0, FPS, [Segment(2.0, 4.0, "run")]),
            "v_mid": VideoAnnotation("v_mid", "validation", 40.0, FPS, [Segment(5.0, 7.0, "jump"), Segment(30.0, 33.0, "throw")]),
            "v_long": VideoAnnotation("v_long", "test", 90.0, FPS, [Segment(60.0, 61.0, "jump"), Segment(70.0, 75.0, "jump")]),
        },
        CLASSES,
        source="ann.json",
    )
    return FeatureStore(tmp_path), ann, raw


def test_sliding_dataset_indexes_every_window_and_reads_the_right_rows(data):
    store, ann, raw = data
    ds = WindowDataset(ann, store, "sliding", window=64, training=False, progress=False)
    expected = {vid: len(sliding_windows(len(raw[vid]), 64, 32, training=False)) for vid in raw}
    assert ds.windows_per_video() == expected and len(ds) == sum(expected.values())
    for i in range(len(ds)):
        w = ds[i]
        plan = ds.plans[i]
        source = raw[w.video_id]
        real = source[plan.start : plan.start + 64]
        np.testing.assert_array_equal(w.features[: len(real)], real)
        assert w.features.shape == (64, 5) and w.valid_length == len(real)
        assert w.t0 == pytest.approx(plan.start * STRIDE / FPS) and w.step == pytest.approx(STRIDE / FPS)


def test_training_dataset_drops_windows_without_gt_and_maps_labels(data):
    store, ann, _ = data
    ds = WindowDataset(ann, store, "sliding", window=64, subset="validation", training=True, progress=False)
    assert set(ds.windows_per_video()) == {"v_short", "v_mid"}
    assert all(len(p.gt_labels) > 0 for p in ds.plans)
    labels = {CLASSES[i] for p in ds.plans for i in p.gt_labels}
    assert labels == {"run", "jump", "throw"}
    clipped = 0
    for p in ds.plans:  # every kept GT is > 90 % of an annotated instance of the same class
        for (s, e), label in zip(p.t0 + p.gt_segments * p.step, p.gt_labels):
            inst = [seg for seg in ann.videos[p.video_id].segments if seg.label == CLASSES[label]]
            assert any(seg.start - 1e-4 <= s < e <= seg.end + 1e-4 and e - s > 0.9 * seg.duration for seg in inst)
            clipped += not any(abs(seg.start - s) < 1e-4 and abs(seg.end - e) < 1e-4 for seg in inst)
    # v_short's run [2, 4] s = features [15, 30]: the window at 16 holds 14/15 of it, clipped
    assert clipped == 1


def test_dataloader_batches_follow_the_model_contract(data):
    store, ann, _ = data
    ds = WindowDataset(ann, store, "sliding", window=64, training=False, progress=False)
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_windows)
    batch = next(iter(loader))
    assert batch["features"].shape == (4, 5, 64) and batch["features"].dtype == torch.float32
    assert len(batch["targets"]) == 4 and set(batch["meta"][0]) == {"video_id", "t0", "step", "valid_length"}
    np.testing.assert_array_equal(batch["features"][0].numpy(), ds[0].features.T)


def test_resample_dataset_one_window_per_video(data):
    store, ann, raw = data
    ds = WindowDataset(ann, store, "resample", window=100, training=False, progress=False)
    assert len(ds) == 3
    w = ds[ds._order.index("v_mid")]
    assert w.features.shape == (100, 5) and w.t0 == 0.0 and w.step == pytest.approx(0.4)
    np.testing.assert_allclose(w.to_seconds(w.gt_segments), [[5.0, 7.0], [30.0, 33.0]], atol=1e-5)
    # no resampling: the whole video at its feature rate
    full = WindowDataset(ann, store, "resample", window=None, progress=False)[0]
    assert full.features.shape == (len(raw["v_short"]), 5) and full.step == pytest.approx(STRIDE / FPS)


def test_acrnet_sampling_is_random_in_training_and_seeded_by_torch(data):
    store, ann, raw = data
    train = WindowDataset(ann, store, "resample", window=200, resample_mode="acrnet", training=True, progress=False)
    torch.manual_seed(3)
    a = train[2].features
    torch.manual_seed(3)
    b = train[2].features
    c = train[2].features
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    test = WindowDataset(ann, store, "resample", window=200, resample_mode="acrnet", training=False, progress=False)
    vid = test._order[2]
    n = len(raw[vid])
    np.testing.assert_array_equal(test[2].features, raw[vid][(np.arange(200) * n) // 200])


def test_video_dataset_multi_hot_labels(data):
    store, ann, _ = data
    ds = VideoDataset(ann, store, length=50, progress=False)
    batch = collate_videos([ds[i] for i in range(len(ds))])
    labels = {vid: batch["video_labels"][i].tolist() for i, vid in enumerate(ds.video_ids)}
    assert labels == {"v_short": [0, 1, 0], "v_mid": [1, 0, 1], "v_long": [1, 0, 0]}
    assert batch["features"].shape == (3, 5, 50)


def test_min_features_skips_short_videos(data):
    store, ann, _ = data
    ds = WindowDataset(ann, store, "resample", window=10, min_features=100, progress=False)
    assert ds.skipped == ["v_short"] and len(ds) == 2


def test_unknown_label_names_video_and_field(data):
    store, ann, _ = data
    ann.videos["v_mid"].segments.append(Segment(1.0, 2.0, "Ambiguous"))
    with pytest.raises(TadkitError) as info:
        WindowDataset(ann, store, progress=False)
    message = str(info.value)
    assert "file ann.json" in message and "video v_mid" in message and "field label" in message


def test_dataset_checks_features_before_indexing(data):
    store, ann, _ = data
    (store.root / "flow" / "v_long.npy").unlink()
    with pytest.raises(TadkitError) as info:
        WindowDataset(ann, store, progress=False)
    assert "video v_long" in str(info.value) and "field path" in str(info.value)


def test_empty_subset_is_an_error(data):
    store, ann, _ = data
    with pytest.raises(TadkitError, match="field subset"):
        WindowDataset(ann, store, subset="training", progress=False)


def test_construction_reads_no_feature_values(data, monkeypatch):
    store, ann, _ = data
    calls = []
    original = type(store.video("v_mid")).__getitem__
    monkeypatch.setattr(type(store.video("v_mid")), "__getitem__", lambda self, i: calls.append(i) or original(self, i))
    ds = WindowDataset(ann, store, window=64, training=False, progress=False)
    assert calls == []  # planning uses file headers only
    ds[0]
    assert len(calls) == 1 and calls[0] == slice(0, 64)


def test_dataset_pickles_without_mapped_data(data):
    import pickle

    store, ann, raw = data
    ds = WindowDataset(ann, store, window=64, training=False, progress=False)
    ds[0]  # opens memmaps
    blob = pickle.dumps(ds)
    assert len(blob) < 50_000  # file contents are not in the pickle
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again[3].features, ds[3].features)
