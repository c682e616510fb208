"""Windows on the real THUMOS14 timeline (ActionFormer annotation file) with fake features of the right length.

Our windows and kept GT are compared with a literal restatement of A2Net's frame-based window script
(spec a2net.md 1.2), written independently of tadkit.data.windows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tadkit.data.dataset import WindowDataset
from tadkit.data.features import FeatureSpec, FeatureStore, a2net_thumos_fps, write_feature_dir
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from conftest import shared_path

WINDOW_FRAMES = 512


def _read_actionformer(path) -> AnnotationSet:
    database = json.loads(path.read_text())["database"]
    videos, classes = {}, set()
    for vid, info in database.items():
        segments = [Segment(float(a["segment"][0]), float(a["segment"][1]), a["label"]) for a in info["annotations"]]
        classes.update(s.label for s in segments)
        fps = a2net_thumos_fps(vid)  # A2Net's clock: 30 fps (29.97 -> 30) except the listed videos
        num_features = int(round(info["duration"] * fps / 4))
        videos[vid] = VideoAnnotation(
            vid, info["subset"].lower(), float(info["duration"]), fps, segments, num_frames=4 * num_features
        )
    return AnnotationSet(videos, sorted(classes), source=str(path), format="actionformer")


def _reference_windows(video: VideoAnnotation, is_train: bool) -> list[tuple[int, list[tuple[str, float, float]]]]:
    """A2Net's script: frame starts, then GT kept iff overlap / length > 0.9, clipped, in frames."""
    frame_count = video.num_frames
    stride = WINDOW_FRAMES / 4 if is_train else WINDOW_FRAMES / 2
    count = int(1.0 * (frame_count + stride - WINDOW_FRAMES) / stride)
    starts = [i * stride for i in range(count)]
    if is_train and count == 0:
        starts = [0]
    if frame_count > WINDOW_FRAMES:
        starts.append(frame_count - WINDOW_FRAMES)
    out = []
    for start in starts:
        end = start + WINDOW_FRAMES
        kept = []
        for seg in video.segments:
            g_start, g_end = seg.start * video.fps, seg.end * video.fps
            if g_end <= g_start:
                continue
            overlap = min(end, g_end) - max(start, g_start)
            if overlap / (g_end - g_start) > 0.9:
                kept.append((seg.label, max(start, g_start) - start, min(end, g_end) - start))
        if is_train and not kept:
            continue
        out.append((int(start), kept))
    return out


@pytest.fixture(scope="module")
def thumos(tmp_path_factory):
    ann = _read_actionformer(shared_path("data", "thumos14", "actionformer", "thumos14.json"))
    root = tmp_path_factory.mktemp("thumos_features")
    spec = FeatureSpec(fps=None, stride_frames=4, clip_frames=16, dim=2, streams=("rgb", "flow"))
    write_feature_dir(root, spec, {vid: np.zeros((v.num_frames // 4, 2), np.float16) for vid, v in ann.videos.items()})
    return ann, FeatureStore(root, fps_table=a2net_thumos_fps)


@pytest.mark.shared
@pytest.mark.parametrize("subset, training", [("validation", True), ("test", False)])
def test_windows_and_kept_gt_equal_a2net_script(thumos, subset, training):
    ann, store = thumos
    ds = WindowDataset(
        ann, store, "sliding", window=128, subset=subset, training=training,
        start_grid="frames", official_quirks=True, progress=False,
    )
    ours: dict[str, list] = {}
    for plan in ds.plans:
        kept = sorted(
            (ann.classes[label], 4 * s, 4 * e) for (s, e), label in zip(plan.gt_segments.tolist(), plan.gt_labels)
        )
        ours.setdefault(plan.video_id, []).append((4 * plan.start, kept))
    total_windows = total_gt = 0
    for vid, video in ds.annotations.videos.items():
        reference = _reference_windows(video, training)
        mine = ours.get(vid, [])
        assert [w[0] for w in mine] == [w[0] for w in reference], vid
        for (_, kept), (_, ref_kept) in zip(mine, reference):
            ref_kept = sorted(ref_kept)
            assert [k[0] for k in kept] == [k[0] for k in ref_kept], vid
            np.testing.assert_allclose([k[1:] for k in kept], [k[1:] for k in ref_kept], atol=1e-3, err_msg=vid)
            total_gt += len(kept)
        total_windows += len(reference)
    assert len(ds) == total_windows > 0 and total_gt > 0
    if training:
        # every instance short enough to fit a window with room for the stride is kept somewhere
        kept_any = {(p.video_id, int(label)) for p in ds.plans for label in p.gt_labels}
        for vid, video in ds.annotations.videos.items():
            for seg in video.segments:
                if seg.duration * video.fps <= WINDOW_FRAMES - 128:
                    assert (vid, ann.class_index(seg.label)) in kept_any


@pytest.mark.shared
def test_generalized_windows_on_the_feature_grid_equal_the_script_without_duplicates(thumos):
    ann, store = thumos
    ds = WindowDataset(ann, store, "sliding", window=128, subset="test", training=False, progress=False)
    starts: dict[str, list[int]] = {}
    for plan in ds.plans:
        starts.setdefault(plan.video_id, []).append(4 * plan.start)
    for vid, video in ds.annotations.videos.items():
        reference = list(dict.fromkeys(w[0] for w in _reference_windows(video, False))) or [0]
        assert starts[vid] == reference, vid
