"""Synthetic videos (`tadkit data synth --video`): annotations, frame counts, actor motion, class
patterns, determinism and the mp4 round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tadkit.cli import main as cli_main
from tadkit.data.records import Segment, VideoAnnotation
from tadkit.data.synthetic_video import (
    MOTIONS,
    VIDEO_CLASSES,
    VideoSynthConfig,
    frame_labels,
    make_video_timelines,
    render_video_frames,
)
from tadkit.errors import TadkitError

av = pytest.importorskip("av")

# Short videos keep the tests fast; the code paths are the ones of the default preset.
SMALL = dict(videos=2, num_classes=3, duration=12.0)
CLEAN = dict(shake=0.0, flicker=0.0, noise=0.0, distractors=0)  # the actor alone on a static background


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """(T-1,) mean absolute difference between frame i and i+1 (grey levels per pixel and channel)."""
    return np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_video") / "data"
    assert cli_main(["data", "synth", "--video", "--out", str(out), "--seed", "3", "--videos", "2",
                     "--video-classes", "3", "--video-duration", "12", "--video-size", "80"]) == 0
    return out


# ------------------------------------------------------------------------------------------------
# annotations, frame counts and the mp4 files
# ------------------------------------------------------------------------------------------------


def test_annotations_read_back_and_match_the_rendered_timeline(dataset):
    from tadkit.data.annotations import load_annotations

    aset = load_annotations(dataset / "annotations.json")
    expected = make_video_timelines(VideoSynthConfig(seed=3, **SMALL))
    assert sorted(aset.subsets) == ["test", "validation"]
    assert aset.classes == list(VIDEO_CLASSES[:3]) == ["sway", "bounce", "circle"]
    assert set(aset.videos) == set(expected.videos) and len(aset.videos) == 4
    for video_id, video in aset.videos.items():
        want = expected.videos[video_id]
        assert video.segments == want.segments and video.segments  # every video has instances
        assert video.subset == want.subset and video.fps == 10.0
        # durations are on the 0.1 s grid: frame count = duration x 10 exactly, no rounding needed
        assert abs(video.duration * 10 - round(video.duration * 10)) < 1e-6
        assert video.num_frames == round(video.duration * 10)
        assert 0.7 * 12 - 0.1 <= video.duration <= 1.3 * 12
        assert all(0 <= s.start < s.end <= video.duration for s in video.segments)
    info = json.loads((dataset / "synth.json").read_text())
    assert info["summary"]["validation"]["frames"] + info["summary"]["test"]["frames"] == sum(
        v.num_frames for v in aset.videos.values())


def test_mp4_decodes_to_the_rendered_frames(dataset):
    from tadkit.data.annotations import load_annotations

    aset = load_annotations(dataset / "annotations.json")
    config = VideoSynthConfig(seed=3, size=80, **SMALL)
    assert sorted(p.name for p in (dataset / "videos").iterdir()) == sorted(f"{v}.mp4" for v in aset.videos)
    for video in list(aset.videos.values())[:2]:
        decoded = decode(dataset / "videos" / f"{video.video_id}.mp4")
        raw = render_video_frames(video, aset.classes, config)
        assert decoded.shape == raw.shape == (video.num_frames, 80, 80, 3)
        error = np.abs(decoded.astype(np.float32) - raw).mean(axis=(1, 2, 3))
        assert error.max() < 8.0, error.max()  # lossless H.264, but yuv420p chroma: the same frames, in order
        # ... and not merely "some" frames: a one-frame shift is much worse than the codec error
        shifted = np.abs(decoded[1:].astype(np.float32) - raw[:-1]).mean()
        assert shifted > 1.3 * error.mean(), (shifted, error.mean())


def test_refuses_to_overwrite_and_rejects_bad_options(dataset, tmp_path):
    with pytest.raises(TadkitError, match="already holds a dataset"):
        from tadkit.data.synthetic_video import generate_video_dataset

        generate_video_dataset(dataset, VideoSynthConfig(seed=3, **SMALL), progress=False)
    for option, value in (("--video-size", "63"), ("--video-size", "128"), ("--video-classes", "21")):
        assert cli_main(["data", "synth", "--video", "--out", str(tmp_path / "x"), option, value]) == 2
    assert not (tmp_path / "x" / "annotations.json").exists()


def test_default_preset_is_short_balanced_and_thumos_like():
    aset = make_video_timelines(VideoSynthConfig(num_classes=5))
    videos = list(aset.videos.values())
    frames = sum(v.num_frames for v in videos)
    assert len(videos) == 40 and 12_000 <= frames <= 16_000, frames
    assert 30 <= np.mean([v.duration for v in videos]) <= 40
    labels = [s.label for v in videos for s in v.segments]
    counts = np.array([labels.count(c) for c in aset.classes])
    assert counts.min() >= 10, dict(zip(aset.classes, counts))  # every class is well represented
    lengths = np.array([s.end - s.start for v in videos for s in v.segments])
    assert 1.5 <= np.median(lengths) <= 5.0  # THUMOS-like short instances
    coverage = np.mean([sum(s.end - s.start for s in v.segments) / v.duration for v in videos])
    assert 0.15 <= coverage <= 0.6


# ------------------------------------------------------------------------------------------------
# what is rendered
# ------------------------------------------------------------------------------------------------


def probe_video(classes: list[str], repeats: int, seconds: float = 3.5, gap: float = 1.5) -> VideoAnnotation:
    """One video with ``repeats`` instances of every class, in a shuffled order, separated by gaps."""
    order = [c for r in range(repeats) for c in np.random.default_rng(r).permutation(classes)]
    segments, t = [], 1.0
    for label in order:
        segments.append(Segment(round(t, 1), round(t + seconds, 1), str(label)))
        t += seconds + gap
    duration = round(t, 1)
    return VideoAnnotation("probe", "validation", duration=duration, fps=10.0, segments=segments,
                           num_frames=round(duration * 10))


def test_actor_moves_inside_instances_and_is_still_outside():
    aset = make_video_timelines(VideoSynthConfig(seed=1, num_classes=10, videos=3, subsets=("validation",)))
    pooled_in, pooled_out = [], []
    for video in aset.videos.values():
        labels = frame_labels(video, aset.classes)
        both_in = (labels[1:] >= 0) & (labels[:-1] >= 0)
        both_out = (labels[1:] < 0) & (labels[:-1] < 0)
        assert both_out.any() and both_in.any()
        clean = motion_energy(render_video_frames(video, aset.classes, VideoSynthConfig(seed=1, **CLEAN)))
        assert clean.shape == (video.num_frames - 1,)
        assert clean[both_out].max() == 0.0  # idle actor, static background: nothing changes
        for i, seg in enumerate(video.segments):  # every instance visibly moves
            inside = (labels[1:] == i) & (labels[:-1] == i)
            if inside.sum() >= 5:
                assert clean[inside].mean() > 0.05, (video.video_id, seg)
        full = motion_energy(render_video_frames(video, aset.classes, VideoSynthConfig(seed=1)))
        assert full[both_out].mean() > 2.0  # camera noise and distractors move outside instances too
        pooled_in.append(full[both_in])
        pooled_out.append(full[both_out])
    ratio = np.concatenate(pooled_in).mean() / np.concatenate(pooled_out).mean()
    print(f"motion energy inside / outside instances with nuisance: {ratio:.3f}")
    assert ratio > 1.05


def _instance_statistics(frames: np.ndarray, video: VideoAnnotation) -> np.ndarray:
    """Per instance, from the pixels of a clean render: spread of the motion centroid in x and y, log
    motion energy, |x-y correlation| of the centroid and the main frequency of the energy."""
    diff = np.abs(np.diff(frames.astype(np.float32), axis=0)).sum(-1)  # (T-1, H, W)
    yy, xx = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]]
    rows = []
    for seg in video.segments:
        lo, hi = round(seg.start * 10) + 3, round(seg.end * 10) - 3  # skip the 0.3 s ease-in / out
        d = diff[lo - 1 : hi - 1]
        energy = d.sum(axis=(1, 2)) + 1e-6
        cx, cy = (d * xx).sum(axis=(1, 2)) / energy, (d * yy).sum(axis=(1, 2)) / energy
        corr = abs(np.corrcoef(cx, cy)[0, 1]) if min(cx.std(), cy.std()) > 0.1 else 0.0
        spectrum = np.abs(np.fft.rfft(energy - energy.mean()))
        rows.append([cx.std(), cy.std(), np.log(energy.mean()), corr, np.argmax(spectrum[1:]) + 1])
    return np.array(rows)


def test_class_motion_patterns_differ():
    classes = list(VIDEO_CLASSES[:10])  # the ten motion families
    video = probe_video(classes, repeats=3)
    frames = render_video_frames(video, classes, VideoSynthConfig(seed=0, num_classes=10, **CLEAN))
    stats = _instance_statistics(frames, video)
    labels = np.array([classes.index(s.label) for s in video.segments])
    mean = {c: stats[labels == i].mean(axis=0) for i, c in enumerate(classes)}
    # the obvious ones, by direction of the centroid's motion
    assert mean["sway"][0] > 5 * mean["sway"][1] and mean["sway"][0] > 4.0
    assert mean["bounce"][1] > 5 * mean["bounce"][0] and mean["bounce"][1] > 2.0
    assert min(mean["circle"][:2]) > 3.0 and min(mean["zigzag"][:2]) > 3.0 and mean["zigzag"][3] > 0.9
    for name in ("pulse", "spin", "squash", "rock"):  # in place: the centroid barely moves
        assert max(mean[name][:2]) < 0.5, (name, mean[name])
    assert mean["shake"][4] > mean["sway"][4]  # faster
    # all ten: leave-one-out nearest class mean on standardised statistics
    z = (stats - stats.mean(axis=0)) / stats.std(axis=0)
    hits = 0
    for i in range(len(z)):
        keep = np.arange(len(z)) != i
        centroids = np.stack([z[keep & (labels == k)].mean(axis=0) for k in range(len(classes))])
        hits += int(np.argmin(((centroids - z[i]) ** 2).sum(axis=1)) == labels[i])
    print(f"leave-one-out accuracy of 5 pixel statistics over 10 classes: {hits / len(z):.2f}")
    assert hits / len(z) >= 0.7  # measured 0.83; chance 0.1


def test_class_size_hint_and_shared_colours():
    sizes = [m.size for m in MOTIONS]
    assert len(set(sizes)) == len(MOTIONS) and 0.17 < min(sizes) and max(sizes) < 0.31
    # colour does not depend on the class: it is drawn per video, before and apart from the timeline
    from tadkit.data.synthetic_video import build_scene

    config = VideoSynthConfig(seed=0, **CLEAN)
    one = build_scene(probe_video(["sway"], 1), VIDEO_CLASSES, config)
    other = build_scene(probe_video(["spin"], 1), VIDEO_CLASSES, config)
    np.testing.assert_array_equal(one.actor_colour, other.actor_colour)


def test_same_seed_same_frames_other_seed_other_frames():
    aset = make_video_timelines(VideoSynthConfig(seed=5, **SMALL))
    video = next(iter(aset.videos.values()))
    config = VideoSynthConfig(seed=5, **SMALL)
    first = render_video_frames(video, aset.classes, config)
    again = render_video_frames(video, aset.classes, replace(config, batch_frames=17))  # batching is invisible
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.uint8 and first.shape == (video.num_frames, 64, 64, 3)
    other = render_video_frames(video, aset.classes, replace(config, seed=6))
    assert np.abs(other.astype(np.int16) - first).mean() > 5.0
    # timelines are per (seed, video): a subset's videos do not depend on the other subsets
    alone = make_video_timelines(VideoSynthConfig(seed=5, subsets=("test",), **SMALL))
    assert {k: v.segments for k, v in alone.videos.items()} == {
        k: v.segments for k, v in aset.videos.items() if v.subset == "test"}


def test_default_encoding_decodes_to_the_same_frames_every_time(tmp_path):
    """crf 0 (lossless, the default): two encodes of one video decode to identical frames (lossy x264
    encodes of identical input differed between runs on this machine)."""
    from tadkit.data.synthetic_video import encode_mp4, make_video_timelines

    config = VideoSynthConfig(seed=5, size=64, **SMALL)
    annotations = make_video_timelines(config)
    video = next(iter(annotations.videos.values()))
    raw = render_video_frames(video, annotations.classes, config)
    decoded = [decode(encode_mp4(raw, tmp_path / f"run{i}.mp4")) for i in range(3)]
    for other in decoded[1:]:
        np.testing.assert_array_equal(other, decoded[0])
    assert np.abs(decoded[0].astype(np.float32) - raw).mean() < 5.0  # only the yuv420p chroma loss
