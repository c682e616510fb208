"""Feature store: layouts, memory mapping, time mapping, and the checks that name file/video/field."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tadkit.data.features import (
    A2NET_THUMOS_FPS_EXCEPTIONS,
    FeatureSpec,
    FeatureStore,
    FeatureTiming,
    LengthTolerance,
    a2net_thumos_fps,
    save_features,
    write_feature_dir,
)
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from conftest import shared_path


def _annotations(videos: dict[str, tuple[float, float | None]], classes=("a",)) -> AnnotationSet:
    """{video_id: (duration, fps)} -> AnnotationSet with one segment per video."""
    return AnnotationSet(
        {
            vid: VideoAnnotation(vid, "validation", duration=dur, fps=fps, segments=[Segment(0.5, 1.0, "a")])
            for vid, (dur, fps) in videos.items()
        },
        list(classes),
        source="ann.json",
    )


def _features(n: int, d: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


# ---------------------------------------------------------------------------------------------- timing


def test_a2net_convention_feature_k_starts_at_frame_4k():
    timing = FeatureTiming.clip_start(fps=30.0, stride_frames=4, clip_frames=16)
    k = np.array([0, 1, 10, 1000])
    np.testing.assert_allclose(timing.index_to_seconds(k), 4 * k / 30.0)
    assert timing.seconds_per_feature == pytest.approx(4 / 30)


def test_clip_centre_convention_shifts_by_half_a_clip():
    start = FeatureTiming.clip_start(25.0, 16, 16)
    centre = FeatureTiming.clip_centre(25.0, 16, 16)
    k = np.arange(5)
    np.testing.assert_allclose(centre.index_to_seconds(k) - start.index_to_seconds(k), 8 / 25.0)
    # the time a centre-convention feature stands for sits half a step later on the index axis
    np.testing.assert_allclose(start.seconds_to_index(centre.index_to_seconds(k)), k + 0.5)


@settings(max_examples=200, deadline=None)
@given(
    fps=st.floats(1.0, 120.0),
    stride=st.floats(0.5, 64.0),
    offset=st.floats(-32.0, 32.0),
    seconds=st.lists(st.floats(0.0, 20000.0), min_size=1, max_size=20),
)
def test_seconds_index_round_trip(fps, stride, offset, seconds):
    timing = FeatureTiming(fps=fps, stride_frames=stride, clip_frames=16, offset_frames=offset)
    t = np.asarray(seconds)
    np.testing.assert_allclose(timing.index_to_seconds(timing.seconds_to_index(t)), t, rtol=1e-12, atol=1e-8)
    k = timing.seconds_to_index(t)
    np.testing.assert_allclose(timing.seconds_to_index(timing.index_to_seconds(k)), k, rtol=1e-12, atol=1e-8)


def test_uniform_timing_spreads_features_over_duration():
    timing = FeatureTiming.uniform(duration=150.0, length=750)
    np.testing.assert_allclose(timing.index_to_seconds([0, 375, 750]), [0.0, 75.0, 150.0])


def test_expected_length_range_brackets_full_clip_and_padded_counts():
    timing = FeatureTiming(30.0, 4, 16, 0)
    assert timing.expected_length_range(1000) == ((1000 - 16) // 4 + 1, 250)
    acr = FeatureTiming(25.0, 16, 16, 0)  # ACRNet: non-overlapping 16-frame chunks, last partial dropped
    assert acr.expected_length_range(25 * 100.0)[0] == 2500 // 16


def test_a2net_fps_table_matches_spec():
    assert a2net_thumos_fps("video_test_0001207") == 24.0
    assert a2net_thumos_fps("video_validation_0000666") == 25.0
    assert a2net_thumos_fps("video_test_0000004") == 30.0
    assert sum(v == 25.0 for v in A2NET_THUMOS_FPS_EXCEPTIONS.values()) == 11


@pytest.mark.shared
def test_a2net_fps_table_against_real_thumos_annotations():
    path = shared_path("data", "thumos14", "actionformer", "thumos14.json")
    database = json.loads(path.read_text())["database"]
    for vid, info in database.items():
        ours = a2net_thumos_fps(vid)
        if vid in A2NET_THUMOS_FPS_EXCEPTIONS:
            assert info["fps"] == ours, vid
        elif vid != "video_validation_0000411":
            # 29.97 is treated as 30, as A2Net does
            assert round(info["fps"]) == 30 and ours == 30.0, vid
    # The one disagreement with the annotation file: ActionFormer lists this validation video at 24 fps,
    # A2Net's README/spec does not (documented in docs/features.md).
    assert database["video_validation_0000411"]["fps"] == 24.0
    assert a2net_thumos_fps("video_validation_0000411") == 30.0


# --------------------------------------------------------------------------------------------- layouts


def test_concat_layout_round_trip_and_mmap(tmp_path):
    spec = FeatureSpec(fps=30.0, dim=6, streams=("rgb", "flow"))
    a = _features(40, 6)
    write_feature_dir(tmp_path, spec, {"v1": a})
    store = FeatureStore(tmp_path)
    assert store.spec == spec
    assert isinstance(store.arrays("v1")[0], np.memmap)
    assert store.num_features("v1") == 40 and store.dim("v1") == 6
    np.testing.assert_array_equal(store.read("v1", 5, 9), a[5:9])
    np.testing.assert_array_equal(store.video("v1")[np.array([3, 3, 0])], a[[3, 3, 0]])
    assert store.video_ids() == ["v1"]


def test_split_layout_concatenates_rgb_first_and_trims_one_short_stream(tmp_path):
    spec = FeatureSpec(fps=30.0, dim=7, streams=("rgb", "flow"), layout="split")
    rgb, flow = _features(20, 4, 1), _features(19, 3, 2, np.float16)  # flow one feature shorter
    write_feature_dir(tmp_path, spec, {"v": {"rgb": rgb, "flow": flow}})
    store = FeatureStore(tmp_path)
    assert (tmp_path / "rgb" / "v.npy").is_file() and (tmp_path / "flow" / "v.npy").is_file()
    assert store.num_features("v") == 19
    out = store.read("v")
    assert out.dtype == np.float32 and out.shape == (19, 7)
    np.testing.assert_array_equal(out[:, :4], rgb[:19])
    np.testing.assert_array_equal(out[:, 4:], flow.astype(np.float32))


def test_split_layout_rejects_streams_of_very_different_length(tmp_path):
    spec = FeatureSpec(fps=30.0, streams=("rgb", "flow"), layout="split")
    write_feature_dir(tmp_path, spec, {"v": {"rgb": _features(20, 2), "flow": _features(15, 2)}})
    with pytest.raises(TadkitError) as info:
        FeatureStore(tmp_path).num_features("v")
    assert "video v" in str(info.value) and "field length" in str(info.value) and "rgb 20" in str(info.value)


def test_npz_layout_is_memory_mapped_when_uncompressed(tmp_path):
    spec = FeatureSpec(fps=30.0, dim=5, streams=("rgb", "flow"), layout="npz")
    rgb, flow = _features(30, 2, 3), _features(30, 3, 4)
    write_feature_dir(tmp_path, spec, {"v": {"rgb": rgb, "flow": flow}})
    store = FeatureStore(tmp_path)
    assert all(isinstance(a, np.memmap) for a in store.arrays("v"))
    np.testing.assert_array_equal(store.read("v", 10, 12), np.concatenate([rgb, flow], 1)[10:12])


def test_compressed_npz_still_reads(tmp_path):
    spec = FeatureSpec(fps=30.0)
    spec.save(tmp_path)
    a = _features(12, 3)
    np.savez_compressed(tmp_path / "v.npz", features=a)
    np.testing.assert_array_equal(FeatureStore(tmp_path).read("v"), a)


def test_reading_a_window_does_not_read_the_whole_file(tmp_path):
    spec = FeatureSpec(fps=30.0, dim=256)
    big = np.zeros((40000, 256), dtype=np.float32)  # 41 MB
    big[1000:1128] = 1.0
    save_features(tmp_path, "big", big, spec)
    spec.save(tmp_path)
    store = FeatureStore(tmp_path)
    tracemalloc.start()
    rows = store.read("big", 1000, 1128)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rows.shape == (128, 256) and rows.min() == 1.0
    assert peak < 2_000_000, f"read {peak} bytes for a 131 kB window: the file was not memory-mapped"


# ---------------------------------------------------------------------------------------- features.json


def test_spec_offset_centre_and_unknown_keys(tmp_path):
    (tmp_path / "features.json").write_text(
        json.dumps({"fps": None, "stride_frames": 16, "clip_frames": 16, "offset_frames": "centre", "extractor": "i3d"})
    )
    spec = FeatureSpec.load(tmp_path)
    assert spec.offset_frames == 8.0 and spec.fps is None and spec.extra == {"extractor": "i3d"}
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "content, field",
    [
        ({"fps": -3}, "fps"),
        ({"stride_frames": 0}, "stride_frames"),
        ({"offset_frames": "middle"}, "offset_frames"),
        ({"dim": 2.5}, "dim"),
        ({"layout": "hdf5"}, "layout"),
        ({"layout": "split"}, "streams"),
        ({"format": "other/2"}, "format"),
    ],
)
def test_bad_features_json_names_file_and_field(tmp_path, content, field):
    (tmp_path / "features.json").write_text(json.dumps(content))
    with pytest.raises(TadkitError) as info:
        FeatureStore(tmp_path)
    message = str(info.value)
    assert f"file {tmp_path / 'features.json'}" in message and f"field {field}" in message


def test_missing_features_json_and_directory(tmp_path):
    with pytest.raises(TadkitError, match="features.json"):
        FeatureStore(tmp_path)
    with pytest.raises(TadkitError, match="does not exist"):
        FeatureStore(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- fps


def test_fps_precedence_sidecar_spec_table_annotation(tmp_path):
    spec = FeatureSpec(fps=None)
    write_feature_dir(tmp_path, spec, {"a": _features(10, 2), "b": _features(10, 2), "c": _features(10, 2)})
    save_features(tmp_path, "a", _features(10, 2), spec, sidecar={"fps": 12.0, "step": 8})
    ann = _annotations({"a": (5.0, 29.97), "b": (5.0, 29.97), "c": (5.0, 29.97)})
    store = FeatureStore(tmp_path, fps_table={"a": 30.0, "b": 30.0})
    assert store.timing("a", ann.videos["a"]).fps == 12.0  # sidecar wins
    assert store.timing("a", ann.videos["a"]).stride_frames == 8
    assert store.timing("b", ann.videos["b"]).fps == 30.0  # table beats annotations
    assert store.timing("c", ann.videos["c"]).fps == 29.97  # annotations last
    fixed = FeatureStore(tmp_path, spec=FeatureSpec(fps=25.0))
    assert fixed.timing("b", ann.videos["b"]).fps == 25.0
    assert fixed.timing("a", ann.videos["a"]).fps == 12.0


def test_fixed_fps_and_fps_table_conflict(tmp_path):
    FeatureSpec(fps=25.0).save(tmp_path)
    with pytest.raises(TadkitError) as info:
        FeatureStore(tmp_path, fps_table=a2net_thumos_fps)
    assert "field fps" in str(info.value)


def test_sidecar_timestamps_define_the_mapping(tmp_path):
    spec = FeatureSpec(fps=None, stride_frames=4, clip_frames=16)
    # video_features-style: 24-frame stacks every 12 frames at 15 fps, timestamp = clip end
    stamps = (np.arange(21) * 12 + 24) / 15.0
    save_features(tmp_path, "v", _features(21, 2), spec, sidecar={"fps": 15.0, "stack": 24, "step": 12, "timestamps": stamps})
    spec.save(tmp_path)
    timing = FeatureStore(tmp_path).timing("v")
    np.testing.assert_allclose(timing.index_to_seconds(np.arange(21)), stamps)
    assert timing.stride_frames == pytest.approx(12) and timing.clip_frames == 24


def test_uneven_sidecar_timestamps_are_rejected(tmp_path):
    spec = FeatureSpec(fps=None)
    stamps = np.array([0.0, 0.5, 1.0, 2.0])
    save_features(tmp_path, "v", _features(4, 2), spec, sidecar={"fps": 30.0, "timestamps": stamps})
    spec.save(tmp_path)
    with pytest.raises(TadkitError) as info:
        FeatureStore(tmp_path).timing("v")
    message = str(info.value)
    assert f"file {tmp_path / 'v.json'}" in message and "video v" in message and "field timestamps" in message


# ----------------------------------------------------------------------------------------------- check


def _good_dir(tmp_path, fps=30.0):
    """Two videos whose lengths match duration * fps / 4 (A2Net-like extraction)."""
    spec = FeatureSpec(fps=None, stride_frames=4, clip_frames=16, dim=6)
    write_feature_dir(tmp_path, spec, {"v1": _features(750, 6), "v2": _features(300, 6)})
    return _annotations({"v1": (100.0, fps), "v2": (40.0, fps)})


def test_check_passes_on_consistent_directory(tmp_path):
    ann = _good_dir(tmp_path)
    report = FeatureStore(tmp_path).check(ann, progress=False)
    assert report.num_features == {"v1": 750, "v2": 300} and report.dim == 6 and not report.length_unchecked


def _expect(store_or_dir, ann, *, video, field, file, contains="", **store_kwargs):
    store = store_or_dir if isinstance(store_or_dir, FeatureStore) else FeatureStore(store_or_dir, **store_kwargs)
    with pytest.raises(TadkitError) as info:
        store.check(ann, progress=False)
    error = info.value
    message = str(error)
    assert error.video == video and error.field == field and error.file == str(file), message
    assert f"file {file}" in message and f"video {video}" in message and f"field {field}" in message
    assert contains in message
    return message


def test_check_missing_file(tmp_path):
    ann = _good_dir(tmp_path)
    (tmp_path / "v2.npy").unlink()
    _expect(tmp_path, ann, video="v2", field="path", file=tmp_path / "v2.npy", contains="missing")


def test_check_wrong_dimension(tmp_path):
    ann = _good_dir(tmp_path)
    save_features(tmp_path, "v2", _features(300, 4), FeatureSpec())
    _expect(tmp_path, ann, video="v2", field="dim", file=tmp_path / "v2.npy", contains="D=4")


def test_check_inconsistent_dimension_without_declared_dim(tmp_path):
    ann = _good_dir(tmp_path)
    FeatureSpec(fps=None, dim=None).save(tmp_path)
    save_features(tmp_path, "v2", _features(300, 4), FeatureSpec())
    _expect(tmp_path, ann, video="v2", field="dim", file=tmp_path / "v2.npy", contains="v1 has D=6")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_non_finite_values(tmp_path, bad):
    ann = _good_dir(tmp_path)
    a = _features(750, 6)
    a[613, 2] = bad
    save_features(tmp_path, "v1", a, FeatureSpec())
    _expect(tmp_path, ann, video="v1", field="values", file=tmp_path / "v1.npy", contains="feature 613")
    # values are only scanned on request
    assert FeatureStore(tmp_path).check(ann, scan_values=False, progress=False).num_videos == 2


def test_check_length_inconsistent_with_fps(tmp_path):
    # features extracted at 25 fps but annotations claim 30 fps: 20 % too few features
    ann = _good_dir(tmp_path, fps=30.0)
    save_features(tmp_path, "v1", _features(625, 6), FeatureSpec())
    message = _expect(tmp_path, ann, video="v1", field="length", file=tmp_path / "v1.npy", contains="625 features")
    assert "30 fps" in message and "stride of 4" in message


def test_check_length_tolerance_boundary(tmp_path):
    spec = FeatureSpec(fps=30.0, stride_frames=4, clip_frames=16)
    # 100 s at 30 fps: 747..750 plausible; slack max(2, 5 % of 750 = 38) = 38
    write_feature_dir(tmp_path, spec, {"lo": _features(747 - 38, 2), "lo2": _features(747 - 39, 2)})
    ann = _annotations({"lo": (100.0, None)})
    assert FeatureStore(tmp_path).check(ann, progress=False).num_features == {"lo": 709}
    _expect(tmp_path, _annotations({"lo2": (100.0, None)}), video="lo2", field="length", file=tmp_path / "lo2.npy")
    strict = FeatureStore(tmp_path, length_tolerance=LengthTolerance(min_features=2, fraction=0.0))
    _expect(strict, ann, video="lo", field="length", file=tmp_path / "lo.npy")


def test_check_unknown_fps(tmp_path):
    ann = _good_dir(tmp_path, fps=None)
    _expect(tmp_path, ann, video="v1", field="fps", file=tmp_path / "features.json", contains="frame rate unknown")
    # an fps table fills the gap
    assert FeatureStore(tmp_path, fps_table=lambda vid: 30.0).check(ann, progress=False).num_videos == 2


def test_check_sidecar_timestamp_count(tmp_path):
    ann = _good_dir(tmp_path)
    save_features(tmp_path, "v2", _features(300, 6), FeatureSpec(), sidecar={"fps": 30.0, "timestamps": np.arange(299) * 0.1})
    _expect(tmp_path, ann, video="v2", field="timestamps", file=tmp_path / "v2.json", contains="299 timestamps")


def test_check_fixed_length_directory(tmp_path):
    spec = FeatureSpec(fps=None, dim=3, fixed_length=750)
    write_feature_dir(tmp_path, spec, {"a": _features(750, 3), "b": _features(749, 3)})
    ann = _annotations({"a": (80.0, None), "b": (30.0, None)})
    _expect(tmp_path, ann, video="b", field="length", file=tmp_path / "b.npy", contains="749")
    timing = FeatureStore(tmp_path).timing("a", ann.videos["a"])
    assert timing.index_to_seconds(750) == pytest.approx(80.0)


@pytest.mark.parametrize(
    "array, field",
    [(np.zeros((3, 4, 2), np.float32), "shape"), (np.zeros((30, 6), np.int64), "dtype")],
)
def test_check_bad_array_shape_or_dtype(tmp_path, array, field):
    ann = _good_dir(tmp_path)
    np.save(tmp_path / "v2.npy", array)
    _expect(tmp_path, ann, video="v2", field=field, file=tmp_path / "v2.npy")


def test_check_corrupt_file(tmp_path):
    ann = _good_dir(tmp_path)
    (tmp_path / "v2.npy").write_bytes(b"not numpy at all")
    _expect(tmp_path, ann, video="v2", field="path", file=tmp_path / "v2.npy", contains="cannot read")


def test_check_reports_how_many_other_problems(tmp_path):
    ann = _good_dir(tmp_path)
    (tmp_path / "v1.npy").unlink()
    save_features(tmp_path, "v2", _features(300, 5), FeatureSpec())
    message = _expect(tmp_path, ann, video="v1", field="path", file=tmp_path / "v1.npy")
    assert "1 more problem(s) in v2" in message


def test_check_skips_length_when_duration_unknown(tmp_path):
    ann = _good_dir(tmp_path)
    ann.videos["v2"].duration = None
    report = FeatureStore(tmp_path).check(ann, progress=False)
    assert report.length_unchecked == ["v2"] and "length not checked for 1" in report.summary()


def test_video_id_that_escapes_the_directory_is_rejected(tmp_path):
    FeatureSpec().save(tmp_path)
    with pytest.raises(TadkitError) as info:
        FeatureStore(tmp_path).arrays("../etc")
    assert "field video_id" in str(info.value)


def test_fps_table_registry():
    from tadkit.data.features import fps_table_by_name

    assert fps_table_by_name("a2net_thumos") is a2net_thumos_fps
    with pytest.raises(TadkitError, match="field fps_table"):
        fps_table_by_name("nope")


@pytest.mark.parametrize(
    "index",
    [slice(None), slice(2, 8, 3), slice(None, None, -1), slice(8, 2), slice(-3, None), slice(0, 100), -1, 4,
     [3, 3, 0, -1], np.arange(10) % 2 == 0],
    ids=str,
)
def test_video_features_index_like_numpy_across_streams(tmp_path, index):
    a = np.arange(40, dtype=np.float32).reshape(10, 4)
    spec = FeatureSpec(streams=("rgb", "flow"), layout="split")
    write_feature_dir(tmp_path, spec, {"v": {"rgb": a[:, :3], "flow": a[:, 3:].astype(np.float16)}})
    video = FeatureStore(tmp_path).video("v")
    assert video.shape == (10, 4) and len(video) == 10
    np.testing.assert_array_equal(video[index], a[index])
