"""Synthetic benchmark data: determinism, layout, timeline statistics, realism and learnability."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tadkit.cli import main as cli_main
from tadkit.data.records import Segment, VideoAnnotation
from tadkit.data.synthetic import (
    DIFFICULTY_PRESETS,
    THUMOS14_CLASSES,
    THUMOS14_STATS,
    SynthConfig,
    SynthDifficulty,
    center_labels,
    default_timelines,
    difficulty_from_spec,
    generate_dataset,
    make_timelines,
    make_world,
    num_features,
    render_features,
)
from tadkit.errors import TadkitError
from conftest import shared_path

# Short videos and few channels keep every test fast; the generator's code paths are the same.
SMALL = dict(dim=32, videos=3, min_video_seconds=60.0, max_video_seconds=90.0)


def small_config(**overrides) -> SynthConfig:
    return SynthConfig(**{**SMALL, **overrides})


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "data", small_config(seed=7), progress=False)


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(small_dataset, tmp_path):
    again = generate_dataset(tmp_path / "again", small_config(seed=7), progress=False)
    first, second = tree_bytes(small_dataset), tree_bytes(again)
    assert first.keys() == second.keys()
    assert len([k for k in first if k.endswith(".npy")]) == 6
    for name in first:
        assert first[name] == second[name], name


def test_different_seed_differs(small_dataset, tmp_path):
    other = generate_dataset(tmp_path / "other", small_config(seed=8), progress=False)
    first, second = tree_bytes(small_dataset), tree_bytes(other)
    assert first["annotations.json"] != second["annotations.json"]
    shared = [k for k in first if k.endswith(".npy") and k in second]
    assert shared and all(first[k] != second[k] for k in shared)


def test_video_does_not_depend_on_other_videos_or_subsets(tmp_path):
    full = generate_dataset(tmp_path / "full", small_config(seed=3, videos=3), progress=False)
    part = generate_dataset(tmp_path / "part", small_config(seed=3, videos=2, subsets=("test",)), progress=False)
    full_db = json.loads((full / "annotations.json").read_text())["database"]
    part_db = json.loads((part / "annotations.json").read_text())["database"]
    assert sorted(part_db) == ["video_test_0000001", "video_test_0000002"]
    for video_id, entry in part_db.items():
        assert entry == full_db[video_id]
        a = (full / "features" / f"{video_id}.npy").read_bytes()
        assert a == (part / "features" / f"{video_id}.npy").read_bytes()


def test_latent_signal_is_shared_across_dims():
    """Same seed at two dims = the same latent video seen through two channel mixings."""
    video = default_timelines(small_config(videos=1, subsets=("test",))).videos["video_test_0000001"]
    latents = []
    for dim in (256, 1024):  # >= 2 x latent_dim, so the mixing is invertible per stream
        config = small_config(dim=dim, difficulty=SynthDifficulty(observation_noise=0.0))
        world = make_world(THUMOS14_CLASSES, config)
        features = render_features(world, video, config).astype(np.float64)
        half = dim // 2
        rgb = features[:, :half] @ np.linalg.pinv(world.mix_rgb.astype(np.float64))
        flow = features[:, half:] @ np.linalg.pinv(world.mix_flow.astype(np.float64))
        latents.append(np.concatenate([rgb, flow], axis=1))
    np.testing.assert_allclose(latents[0], latents[1], atol=1e-3)
    assert np.abs(latents[0]).max() > 0.1  # not trivially zero


# ------------------------------------------------------------------------------------------------
# layout and read-back
# ------------------------------------------------------------------------------------------------


def test_layout_and_feature_lengths(small_dataset):
    spec = json.loads((small_dataset / "features" / "features.json").read_text())
    assert spec["fps"] is None and spec["stride_frames"] == 4 and spec["clip_frames"] == 16
    assert spec["offset_frames"] == 0 and spec["dim"] == 32
    database = json.loads((small_dataset / "annotations.json").read_text())["database"]
    for video_id, entry in database.items():
        features = np.load(small_dataset / "features" / f"{video_id}.npy")
        assert features.dtype == np.float32 and features.shape[1] == 32
        assert np.isfinite(features).all()
        expected = entry["duration"] * entry["fps"] / 4  # 7.5 features/s at 30 fps
        assert features.shape[0] == math.floor(round(entry["duration"] * entry["fps"]) / 4)
        assert abs(features.shape[0] - expected) < 1


def test_annotations_read_back_with_json(small_dataset):
    document = json.loads((small_dataset / "annotations.json").read_text())
    assert document["classes"] == list(THUMOS14_CLASSES)
    assert {v["subset"] for v in document["database"].values()} == {"validation", "test"}
    for video_id, entry in document["database"].items():
        assert 60.0 <= entry["duration"] <= 90.0 and entry["fps"] in (30.0, 25.0, 24.0)
        assert entry["annotations"], video_id
        for ann in entry["annotations"]:
            start, end = ann["segment"]
            assert 0 <= start < end <= entry["duration"]
            assert ann["label"] in THUMOS14_CLASSES


def test_annotations_and_features_pass_the_readers(small_dataset):
    from tadkit.data.annotations import load_annotations
    from tadkit.data.features import FeatureStore

    annotations = load_annotations(small_dataset / "annotations.json")
    expected = default_timelines(small_config(seed=7))
    assert annotations.classes == list(THUMOS14_CLASSES)
    assert list(annotations.videos) == list(expected.videos)
    for video_id, video in annotations.videos.items():
        assert video.segments == expected.videos[video_id].segments
    # The feature reader's own check: files present, D, lengths consistent with duration x fps / stride.
    report = FeatureStore(small_dataset / "features").check(annotations, progress=False)
    assert report.num_videos == 6 and report.dim == 32 and not report.length_unchecked


def test_float16_and_odd_dim(tmp_path):
    out = generate_dataset(tmp_path / "f16", small_config(videos=1, dim=33, dtype="float16"), progress=False)
    array = np.load(out / "features" / "video_test_0000001.npy")
    assert array.dtype == np.float16 and array.shape[1] == 33 and np.isfinite(array).all()


def test_refuses_to_overwrite_then_replaces_and_drops_stale(tmp_path):
    out = generate_dataset(tmp_path / "d", small_config(videos=2), progress=False)
    with pytest.raises(TadkitError, match="--overwrite"):
        generate_dataset(out, small_config(videos=1), progress=False)
    generate_dataset(out, small_config(videos=1), overwrite=True, progress=False)
    names = sorted(p.name for p in (out / "features").glob("*.npy"))
    assert names == ["video_test_0000001.npy", "video_validation_0000001.npy"]


# ------------------------------------------------------------------------------------------------
# default timelines: THUMOS-like statistics
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_timeline_statistics(seed):
    timelines = default_timelines(SynthConfig(seed=seed, videos=150))
    videos = list(timelines.videos.values())
    durations = np.concatenate([v.segment_array()[:, 1] - v.segment_array()[:, 0] for v in videos])
    per_video = np.array([len(v.segments) for v in videos])
    assert len(videos) == 300 and timelines.subsets == ["validation", "test"]
    assert all(60.0 <= v.duration <= 600.0 for v in videos)  # 1-10 min
    assert 2.4 <= np.median(durations) <= 3.6  # THUMOS14: 3.0 s
    assert (durations > 30).any() and (durations > 30).mean() < 0.02  # a real but thin tail
    assert 11 <= per_video.mean() <= 20  # THUMOS14: 15.4 per video
    assert {s.label for v in videos for s in v.segments} == set(THUMOS14_CLASSES)
    pairs = [(a, b) for v in videos for a, b in zip(v.segments, v.segments[1:])]
    overlapping = np.mean([b.start < a.end for a, b in pairs])
    same_class = np.mean([a.label == b.label for a, b in pairs])
    assert overlapping < 0.2 and same_class > 0.7  # mostly disjoint, long same-class runs
    assert np.mean([v.fps == 30.0 for v in videos]) > 0.9


def test_cliffdiving_is_also_diving_like_thumos():
    videos = default_timelines(SynthConfig(videos=100)).videos.values()
    cliff = [(v.video_id, s.start, s.end) for v in videos for s in v.segments if s.label == "CliffDiving"]
    diving = {(v.video_id, s.start, s.end) for v in videos for s in v.segments if s.label == "Diving"}
    assert cliff and all(c in diving for c in cliff)
    off = default_timelines(SynthConfig(videos=100, cliffdiving_also_diving=False)).videos.values()
    off_diving = {(v.video_id, s.start, s.end) for v in off for s in v.segments if s.label == "Diving"}
    assert not any(c in off_diving for c in cliff)


def test_stats_table_is_thumos14():
    assert len(THUMOS14_STATS) == 20
    ids = [s.thumos_id for s in THUMOS14_STATS]
    assert ids == [7, 9, 12, 21, 22, 23, 24, 26, 31, 33, 36, 40, 45, 51, 68, 79, 85, 92, 93, 97]


# ------------------------------------------------------------------------------------------------
# timeline mode: real segments kept exactly
# ------------------------------------------------------------------------------------------------


def test_timeline_mode_keeps_every_real_segment():
    from tadkit.data.annotations import load_annotations

    path = shared_path("data", "thumos14", "actionformer", "thumos14.json")
    source = load_annotations(path)
    timelines = make_timelines(SynthConfig(timeline=str(path)))
    assert timelines.classes == source.classes
    assert list(timelines.videos) == list(source.videos)
    assert timelines.num_instances() == source.num_instances() == 3007 + 3358
    for video_id, video in timelines.videos.items():
        assert video.segments == source.videos[video_id].segments
        assert video.duration == source.videos[video_id].duration
    only_test = make_timelines(SynthConfig(timeline=str(path), subsets=("test",)))
    assert len(only_test.videos) == 212 and only_test.num_instances() == 3358


def test_timeline_dataset_features_follow_real_durations(tmp_path):
    from tadkit.data.annotations import load_annotations

    path = shared_path("data", "thumos14", "actionformer", "thumos14.json")
    raw = json.loads(path.read_text())
    keep = ["video_test_0000004", "video_test_0001207", "video_validation_0000311"]  # 30, 24 and 25 fps
    small = {"version": raw["version"], "database": {k: raw["database"][k] for k in keep}}
    source_file = tmp_path / "three.json"
    source_file.write_text(json.dumps(small))
    out = generate_dataset(tmp_path / "d", SynthConfig(timeline=str(source_file), dim=16), progress=False)
    written = load_annotations(out / "annotations.json")
    for video_id in keep:
        entry = raw["database"][video_id]
        assert [(s.start, s.end, s.label) for s in written.videos[video_id].segments] == [
            (a["segment"][0], a["segment"][1], a["label"]) for a in entry["annotations"]
        ]
        length = np.load(out / "features" / f"{video_id}.npy").shape[0]
        assert abs(length - entry["duration"] * entry["fps"] / 4) < 1


def test_timeline_without_duration_uses_last_end_plus_margin(tmp_path):
    document = {
        "database": {
            "a": {"subset": "test", "annotations": [{"segment": [2.0, 4.5], "label": "X"}]},
            "b": {"subset": "test", "duration": 30.0, "fps": 25.0,
                  "annotations": [{"segment": [1.0, 3.0], "label": "Y"}]},
        }
    }
    source = tmp_path / "gt.json"
    source.write_text(json.dumps(document))
    timelines = make_timelines(SynthConfig(timeline=str(source), timeline_margin=5.0))
    assert timelines.videos["a"].duration == pytest.approx(9.5) and timelines.videos["a"].fps == 30.0
    assert timelines.videos["b"].duration == 30.0 and timelines.videos["b"].fps == 25.0
    out = generate_dataset(tmp_path / "d", SynthConfig(timeline=str(source), dim=8), progress=False)
    assert np.load(out / "features" / "a.npy").shape == (num_features(9.5, 30.0), 8)  # 71 features


def test_timeline_from_evalkit_directory_sizes_videos_from_segments_and_ambiguous():
    """The evalkit has no durations: each video ends 5 s after its last segment or Ambiguous range."""
    timelines = make_timelines(SynthConfig(timeline=str(shared_path("data", "thumos14", "evalkit", "test"))))
    assert len(timelines.videos) == 213 and timelines.num_instances() == 3358 and timelines.num_ambiguous() == 99
    for video in timelines.videos.values():
        ends = [s.end for s in video.segments] + [e for _, e in video.ambiguous]
        assert video.duration == pytest.approx(max(ends) + 5.0) and video.fps == 30.0
    only_ambiguous = timelines.videos["video_test_0001292"]
    assert not only_ambiguous.segments and only_ambiguous.ambiguous


def test_timeline_errors_are_one_clear_tadkit_error(tmp_path):
    with pytest.raises(TadkitError, match="not found") as missing:
        make_timelines(SynthConfig(timeline=str(tmp_path / "nope.json")))
    assert "nope.json" in str(missing.value)
    source = tmp_path / "gt.json"
    source.write_text(json.dumps({"database": {"a": {"subset": "test", "annotations": []}}}))
    with pytest.raises(TadkitError, match="subset"):
        make_timelines(SynthConfig(timeline=str(source), subsets=("validation",)))


# ------------------------------------------------------------------------------------------------
# realism of the features
# ------------------------------------------------------------------------------------------------

CLEAN = SynthDifficulty(
    noise=0.0, observation_noise=0.0, intra_class=0.0, distractor_rate=0.0, boundary_jitter=0.0,
    scene_scale=0.0, background_scale=0.0,
)


def _single_action(difficulty: SynthDifficulty, dim: int = 64) -> tuple[np.ndarray, SynthConfig]:
    config = SynthConfig(dim=dim, difficulty=difficulty)
    video = VideoAnnotation("v", "test", duration=60.0, fps=30.0, segments=[Segment(20.0, 40.0, "PoleVault")])
    return render_features(make_world(THUMOS14_CLASSES, config), video, config), config


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_boundaries_ramp_over_several_features():
    def transition_width(ramp: float) -> int:
        features, _ = _single_action(replace(CLEAN, ramp_seconds=ramp))
        norm = np.linalg.norm(features[120:180], axis=1)  # the action starts at 20 s = feature 150
        plateau = np.linalg.norm(features[165])  # 2 s inside
        return int(((norm > 0.1 * plateau) & (norm < 0.9 * plateau)).sum())

    sharp, soft = transition_width(0.1), transition_width(1.5)
    assert sharp >= 2  # even a sharp edge is smeared by the 16-frame clip
    assert soft >= sharp + 4


def test_start_middle_end_phases_differ():
    features, _ = _single_action(CLEAN)
    start, middle, end = features[151], features[225], features[298]  # u ~ 0.01, 0.5, 0.99
    assert _cosine(features[224], middle) > 0.99  # smooth inside a phase
    assert _cosine(start, end) < 0.8
    assert _cosine(start, middle) < 0.95 and _cosine(middle, end) < 0.95
    assert np.linalg.norm(features[100]) < 1e-3 * np.linalg.norm(middle)  # clean background is empty


def test_ambiguous_ranges_render_as_unlabelled_action_like_bursts():
    config = SynthConfig(dim=32, difficulty=CLEAN)
    video = VideoAnnotation("v", "test", duration=30.0, fps=30.0, ambiguous=[(10.0, 14.0)])
    features = render_features(make_world(THUMOS14_CLASSES, config), video, config)
    norms = np.linalg.norm(features, axis=1)
    assert norms[90] > 0.1 and norms[30] < 1e-6  # 12 s is inside, 4 s is clean background


def test_confusable_groups_share_prototypes():
    world = make_world(THUMOS14_CLASSES, SynthConfig(dim=8))
    sims = world.class_protos @ world.class_protos.T
    same = world.groups[:, None] == world.groups[None, :]
    off_diagonal = ~np.eye(len(THUMOS14_CLASSES), dtype=bool)
    assert sims[same & off_diagonal].mean() > sims[~same].mean() + 0.3
    diving, cliff = THUMOS14_CLASSES.index("Diving"), THUMOS14_CLASSES.index("CliffDiving")
    assert world.groups[diving] == world.groups[cliff]


def test_difficulty_spec_parsing():
    assert difficulty_from_spec([]) == SynthDifficulty()
    hard = difficulty_from_spec(["hard"])
    assert hard.noise == DIFFICULTY_PRESETS["hard"]["noise"] > SynthDifficulty().noise
    mixed = difficulty_from_spec(["hard", "noise=0.1", "distractor-rate=0"])
    assert mixed.noise == 0.1 and mixed.distractor_rate == 0.0 and mixed.intra_class == hard.intra_class
    cases = [(["loud"], "preset"), (["volume=1"], "knob"), (["noise=x"], "number"), (["scene_context=2"], r"\[0, 1\]")]
    for bad, match in cases:
        with pytest.raises(TadkitError, match=match):
            difficulty_from_spec(bad)


# ------------------------------------------------------------------------------------------------
# learnable but not trivial
# ------------------------------------------------------------------------------------------------


def _frames(config: SynthConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    timelines = make_timelines(config)
    world = make_world(timelines.classes, config)
    out = {}
    for subset in timelines.subsets:
        xs, ys = [], []
        for video in timelines.subset(subset).videos.values():
            features = render_features(world, video, config)
            xs.append(features)
            ys.append(center_labels(video, timelines.classes, len(features), config))
        out[subset] = (np.concatenate(xs).astype(np.float64), np.concatenate(ys))
    return out


def _ridge(x: np.ndarray, y: np.ndarray, k: int, lam: float = 1e-3):
    """Linear least-squares classifier on standardized features (closed form, deterministic)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    targets = np.eye(k)[y]
    w = np.linalg.solve(z.T @ z + lam * len(z) * np.eye(z.shape[1]), z.T @ (targets - targets.mean(0)))
    return lambda q: ((q - mean) / std) @ w + targets.mean(0)


def _probe(config: SynthConfig) -> tuple[float, float, float]:
    """(20-way accuracy on action frames, majority-class chance, balanced action/background accuracy),
    trained on `validation`, measured on `test`."""
    data = _frames(config)
    (x_train, y_train), (x_test, y_test) = data["validation"], data["test"]
    seen = np.bincount(y_train[y_train >= 0], minlength=20) >= 20  # classes the probe could learn
    train = (y_train >= 0) & seen[np.maximum(y_train, 0)]
    test = (y_test >= 0) & seen[np.maximum(y_test, 0)]
    scores = _ridge(x_train[train], y_train[train], 20)(x_test[test])
    scores[:, ~seen] = -np.inf
    accuracy = float((scores.argmax(1) == y_test[test]).mean())
    chance = float(np.bincount(y_test[test]).max() / test.sum())
    action = _ridge(x_train, (y_train >= 0).astype(int), 2)(x_test).argmax(1) == 1
    balanced = 0.5 * (action[y_test >= 0].mean() + (~action[y_test < 0]).mean())
    return accuracy, chance, float(balanced)


LEARN = dict(dim=64, videos=40, min_video_seconds=60.0, max_video_seconds=90.0)


def test_default_data_is_learnable_but_not_trivial():
    accuracy, chance, balanced = _probe(SynthConfig(seed=0, **LEARN))
    assert accuracy > max(2.0 * chance, 0.35), (accuracy, chance)  # clearly above chance
    assert accuracy < 0.8, accuracy  # clearly below perfect: classes are confusable
    assert 0.6 < balanced < 0.9, balanced  # action vs background: learnable, not separable


def test_difficulty_presets_order_the_probe():
    easy, _, easy_bal = _probe(SynthConfig(seed=1, difficulty=difficulty_from_spec(["easy"]), **LEARN))
    hard, chance, hard_bal = _probe(SynthConfig(seed=1, difficulty=difficulty_from_spec(["hard"]), **LEARN))
    assert easy > hard + 0.15 and easy_bal > hard_bal + 0.1
    assert hard > 1.5 * chance  # even "hard" stays learnable


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def test_cli_synth_writes_a_dataset_and_reports_errors_on_one_line(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "synth", "--out", str(out), "--seed", "5", "--dim", "16", "--videos", "2"]
    assert cli_main(args + ["--subset", "test", "--difficulty", "hard", "noise=1.0", "--dtype", "float16"]) == 0
    assert "2 videos" in capsys.readouterr().out
    provenance = json.loads((out / "synth.json").read_text())
    assert provenance["config"]["difficulty"]["noise"] == 1.0
    assert provenance["config"]["difficulty"]["intra_class"] == DIFFICULTY_PRESETS["hard"]["intra_class"]
    assert np.load(out / "features" / "video_test_0000002.npy").dtype == np.float16

    for extra, needle in (
        ([], "--overwrite"),
        (["--overwrite", "--difficulty", "volume=3"], "knob"),
        (["--overwrite", "--timeline", str(tmp_path / "missing.json"), "--videos", "3"], "missing.json"),
        (["--overwrite", "--videos", "0"], "videos"),
        (["--overwrite", "--dim", "1"], "dim"),
    ):
        capsys.readouterr()
        assert cli_main(args + extra) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err


def test_cli_synth_timeline_videos_and_subset_combine(tmp_path, capsys):
    """--timeline F --videos N --subset S: the first N video ids (sorted) of subset S of F, real segments kept."""
    database = {}
    for subset, prefix in (("val", "video_validation"), ("test", "video_test")):
        for i in (5, 1, 3):  # file order is not id order
            database[f"{prefix}_{i:07d}"] = {"subset": subset, "duration": 70.0 + i, "fps": 30.0, "annotations": [
                {"segment": [10.0 + i, 14.0 + i], "label": "Diving"}]}
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"classes": ["Diving"], "database": database}))
    base = ["data", "synth", "--seed", "2", "--dim", "16", "--timeline", str(timeline)]
    assert cli_main(base + ["--out", str(tmp_path / "two"), "--videos", "2", "--subset", "validation"]) == 0
    assert "2 videos" in capsys.readouterr().out
    two = json.loads((tmp_path / "two" / "annotations.json").read_text())["database"]
    assert sorted(two) == ["video_validation_0000001", "video_validation_0000003"]
    assert two["video_validation_0000003"]["annotations"][0]["segment"] == [13.0, 17.0]
    assert json.loads((tmp_path / "two" / "synth.json").read_text())["config"]["timeline_videos"] == 2

    assert cli_main(base + ["--out", str(tmp_path / "each"), "--videos", "1"]) == 0
    each = json.loads((tmp_path / "each" / "annotations.json").read_text())["database"]
    assert sorted(each) == ["video_test_0000001", "video_validation_0000001"]  # N per subset

    assert cli_main(base + ["--out", str(tmp_path / "all")]) == 0
    assert len(json.loads((tmp_path / "all" / "annotations.json").read_text())["database"]) == 6
    # a video's features do not depend on which other videos were generated
    np.testing.assert_array_equal(np.load(tmp_path / "two" / "features" / "video_validation_0000003.npy"),
                                  np.load(tmp_path / "all" / "features" / "video_validation_0000003.npy"))
    with pytest.raises(TadkitError) as info:
        SynthConfig(timeline_videos=2).validate()
    assert info.value.field == "timeline_videos"


# ------------------------------------------------------------------------------------------------
# presets: thumos14 unchanged, activitynet near the real ActivityNet statistics
# ------------------------------------------------------------------------------------------------

# timeline_stats of ActivityNet v1.3 (BSN anet_anno_action.json, train+val, 14,377 annotated videos);
# test_real_activitynet_statistics re-derives them from the files when ../shared is present.
ANET_V13 = {
    "instances_per_video_mean": 1.541, "videos_with_1_instance": 0.755, "videos_with_3_or_more": 0.115,
    "coverage_median": 0.718, "coverage_mean": 0.653, "videos_covered_over_95pct": 0.162,
    "instance_share_median": 0.326, "instance_share_p25": 0.078, "instance_share_p75": 0.794,
    "video_seconds_median": 115.38, "video_seconds_p5": 18.04, "video_seconds_p95": 224.51,
    "single_class_videos": 0.999, "overlap_pairs": 0.028, "videos_at_30fps": 0.660,
}
# Allowed |synthetic - real| on 150 + 150 videos (about 3.5 seed-to-seed standard deviations, measured
# over 40 seeds) and on 2000 + 2000 timelines (the same rule; a few statistics are bounded by the
# v1.2 / v1.3 difference instead, since the preset should sit between the two versions).
ANET_TOL_300 = {
    "instances_per_video_mean": 0.25, "videos_with_1_instance": 0.08, "videos_with_3_or_more": 0.07,
    "coverage_median": 0.08, "coverage_mean": 0.06, "videos_covered_over_95pct": 0.08,
    "instance_share_median": 0.12, "video_seconds_median": 20.0, "single_class_videos": 0.01,
    "videos_at_30fps": 0.10,
}
ANET_TOL_4000 = {
    "instances_per_video_mean": 0.08, "videos_with_1_instance": 0.03, "videos_with_3_or_more": 0.025,
    "coverage_median": 0.03, "coverage_mean": 0.02, "videos_covered_over_95pct": 0.03,
    "instance_share_median": 0.04, "instance_share_p25": 0.02, "instance_share_p75": 0.04,
    "video_seconds_median": 7.0, "video_seconds_p5": 4.0, "video_seconds_p95": 6.0,
    "single_class_videos": 0.01, "overlap_pairs": 0.015, "videos_at_30fps": 0.03,
}


def _far_from_real(stats: dict[str, float], tolerances: dict[str, float]) -> dict[str, tuple[float, float]]:
    return {k: (round(stats[k], 3), ANET_V13[k]) for k, tol in tolerances.items() if abs(stats[k] - ANET_V13[k]) > tol}


def test_thumos14_preset_output_is_unchanged(tmp_path, capsys):
    """The default preset's files are pinned (hashes from the generator before presets existed);
    `--preset thumos14` is the default byte for byte, features included."""
    import hashlib

    out = generate_dataset(tmp_path / "d", SynthConfig(seed=0, dim=2, videos=10), progress=False)
    digest = {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
              for name in ("annotations.json", "synth.json")}
    assert digest == {
        "annotations.json": "dfc42ae83402649d1cabccd42305d601d7f06f6ff17ed9c04d7d0aa10b7f601f",
        "synth.json": "7ed27a1704da9f23f10f5935692fd228eee55a12f547957ab39a8f5425094f9a",
    }
    args = ["data", "synth", "--seed", "4", "--dim", "8", "--videos", "2"]
    assert cli_main(args + ["--out", str(tmp_path / "implicit")]) == 0
    assert cli_main(args + ["--out", str(tmp_path / "explicit"), "--preset", "thumos14"]) == 0
    assert tree_bytes(tmp_path / "implicit") == tree_bytes(tmp_path / "explicit")
    assert "preset" not in json.loads((tmp_path / "explicit" / "synth.json").read_text())["config"]


def test_activitynet_preset_dataset_matches_real_statistics(tmp_path, capsys):
    """150 + 150 videos written by the CLI at 2-d: one class per video, ~1.5 long instances covering
    ~70 % of a ~2 min video, 100 classes, training/validation, features of the right length."""
    from tadkit.data.annotations import load_annotations
    from tadkit.data.synthetic import timeline_stats

    out = tmp_path / "anet"
    assert cli_main(["data", "synth", "--out", str(out), "--preset", "activitynet", "--videos", "150",
                     "--dim", "2", "--seed", "0"]) == 0
    assert "300 videos (training 150, validation 150)" in capsys.readouterr().out
    written = load_annotations(out / "annotations.json")
    assert written.subsets == ["training", "validation"] and len(written.classes) == 100
    stats = timeline_stats(written)
    print({k: round(stats[k], 3) for k in ANET_TOL_300})
    assert not _far_from_real(stats, ANET_TOL_300)
    assert stats["classes_present"] >= 85  # ~1.5 videos per class and subset: most classes appear
    thumos = timeline_stats(make_timelines(SynthConfig(seed=0, videos=150)))
    assert thumos["instances_per_video_mean"] > 8 * stats["instances_per_video_mean"]  # the other kind of timeline
    assert thumos["coverage_median"] < 0.5 * stats["coverage_median"]
    provenance = json.loads((out / "synth.json").read_text())["config"]
    assert provenance["preset"] == "activitynet" and provenance["num_classes"] == 100
    assert provenance["max_video_seconds"] == 240.0
    for video_id in ("v_training_0000001", "v_validation_0000150"):
        video = written.videos[video_id]
        assert np.load(out / "features" / f"{video_id}.npy").shape == (round(video.duration * video.fps) // 4, 2)


def test_activitynet_preset_statistics_on_many_timelines():
    """Timelines only (no features), 2000 + 2000 videos: tighter tolerances."""
    from tadkit.data.synthetic import timeline_stats

    stats = timeline_stats(make_timelines(SynthConfig(seed=1, preset="activitynet", videos=2000)))
    print({k: round(stats[k], 3) for k in ANET_TOL_4000})
    assert not _far_from_real(stats, ANET_TOL_4000)
    assert stats["instances_per_video_max"] <= 25


def test_activitynet_class_count_option_keeps_the_timelines():
    from tadkit.data.synthetic import activitynet_classes

    small = make_timelines(SynthConfig(seed=2, preset="activitynet", videos=40))
    large = make_timelines(SynthConfig(seed=2, preset="activitynet", videos=40, num_classes=200))
    assert small.classes == list(activitynet_classes(100)) == large.classes[:100] and len(large.classes) == 200
    index = {name: i for i, name in enumerate(large.classes)}
    assert {s.label for v in large.videos.values() for s in v.segments} - set(small.classes)  # uses all 200
    for video_id, video in small.videos.items():
        other = large.videos[video_id]
        assert [(s.start, s.end) for s in video.segments] == [(s.start, s.end) for s in other.segments]
        assert [index[s.label] for s in video.segments] == [index[s.label] // 2 for s in other.segments]


def test_preset_errors_name_the_field():
    cases = [
        (SynthConfig(preset="kinetics"), "preset"),
        (SynthConfig(num_classes=200), "num_classes"),  # thumos14 has its 20 classes
        (SynthConfig(preset="activitynet", num_classes=0), "num_classes"),
        (SynthConfig(preset="activitynet", timeline="gt.json"), "preset"),
        (SynthConfig(preset="activitynet", max_video_seconds=1.0), "max_video_seconds"),
    ]
    for config, name in cases:
        with pytest.raises(TadkitError) as info:
            config.validate()
        assert info.value.field == name


def test_timeline_stats_by_hand():
    from tadkit.data.records import AnnotationSet
    from tadkit.data.synthetic import timeline_stats

    videos = {
        "a": VideoAnnotation("a", "x", duration=100.0, fps=30.0, segments=[
            Segment(10.0, 30.0, "A"), Segment(20.0, 40.0, "A"), Segment(90.0, 120.0, "A")]),  # past the end
        "b": VideoAnnotation("b", "x", duration=50.0, fps=25.0, segments=[Segment(0.0, 50.0, "B")]),
        "c": VideoAnnotation("c", "x", duration=10.0, fps=30.0, segments=[]),  # no instances: not counted
    }
    stats = timeline_stats(AnnotationSet(videos=videos, classes=["A", "B"]))
    assert stats["videos"] == 2 and stats["instances_per_video_mean"] == 2.0
    assert stats["coverage_mean"] == pytest.approx((0.4 + 1.0) / 2)  # union [10, 40] + [90, 100] of 100 s
    assert stats["videos_covered_over_95pct"] == 0.5
    assert stats["overlap_pairs"] == 0.5  # (10-30, 20-40) overlap, (20-40, 90-100) do not
    assert stats["instance_share_median"] == pytest.approx(0.2)  # shares 0.2, 0.2, 0.1, 1.0
    assert stats["videos_at_30fps"] == 0.5 and stats["single_class_videos"] == 1.0


def test_real_activitynet_statistics():
    """The constants above are the real v1.3 numbers, and v1.2 is within the 300-video tolerances of
    them: one preset stands for both versions."""
    from tadkit.data.annotations import load_annotations
    from tadkit.data.synthetic import timeline_stats

    v13 = timeline_stats(load_annotations(shared_path("data", "activitynet", "v1.3", "bsn")))
    v12 = timeline_stats(load_annotations(shared_path("data", "activitynet", "v1.2", "wtalc_npy")))
    assert v13["classes"] == 200 and v12["classes"] == 100 and v13["videos"] == 14377 and v12["videos"] == 7202
    for key, value in ANET_V13.items():
        assert v13[key] == pytest.approx(value, abs=0.01 if key.startswith("video_seconds") else 1e-3), key
    assert not {k for k, tol in ANET_TOL_300.items() if k != "videos_at_30fps" and abs(v12[k] - v13[k]) > tol}
