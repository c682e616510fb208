"""Readers on the real annotation files in ../shared/data, checked against their documented counts
and against each other (the same THUMOS14 ground truth ships in four formats)."""

from __future__ import annotations

import csv
import functools
import json
from collections import Counter

import numpy as np
import pytest
from conftest import shared_path

from tadkit.data.annotations import detect_format, load_annotations, normalize_video_ids, select_subset
from tadkit.data.records import AnnotationSet

pytestmark = pytest.mark.shared

# THUMOS ids of the 20 detection classes, as listed in ../shared/methods/README.md.
THUMOS_IDS = {
    "BaseballPitch": 7, "BasketballDunk": 9, "Billiards": 12, "CleanAndJerk": 21, "CliffDiving": 22,
    "CricketBowling": 23, "CricketShot": 24, "Diving": 26, "FrisbeeCatch": 31, "GolfSwing": 33,
    "HammerThrow": 36, "HighJump": 40, "JavelinThrow": 45, "LongJump": 51, "PoleVault": 68, "Shotput": 79,
    "SoccerPenalty": 85, "TennisSwing": 92, "ThrowDiscus": 93, "VolleyballSpiking": 97,
}


@functools.lru_cache(maxsize=None)
def cached(*parts: str) -> AnnotationSet:
    """Big real files are read once per test session (tests only read the result)."""
    return load_annotations(shared_path(*parts))


def counts(aset: AnnotationSet, subset: str) -> tuple[int, int, int]:
    part = aset.subset(subset)
    return len(part.videos), part.num_instances(), part.num_ambiguous()


def instance_multiset(aset: AnnotationSet) -> Counter:
    return Counter((vid, round(s.start, 3), round(s.end, 3), s.label)
                   for vid, v in aset.videos.items() for s in v.segments)


def ambiguous_multiset(aset: AnnotationSet) -> Counter:
    return Counter((vid, round(s, 3), round(e, 3)) for vid, v in aset.videos.items() for s, e in v.ambiguous)


# ---------------------------------------------------------------------------------------- THUMOS14


def test_actionformer_json_counts_and_class_order():
    path = shared_path("data", "thumos14", "actionformer", "thumos14.json")
    assert detect_format(path) == "activitynet"
    aset = load_annotations(path)
    assert aset.format == "activitynet" and aset.version == "Thumos14-30fps"
    assert aset.subsets == ["Test", "Validation"]  # kept as written in the file
    assert counts(aset, "Test") == (212, 3358, 0)
    assert counts(aset, "validation") == (200, 3007, 0)  # subset() is case-insensitive
    assert "video_test_0001292" not in aset.videos  # only Ambiguous in THUMOS14: ActionFormer drops it
    # No class list in the file -> sorted labels, which is also ActionFormer's own label_id order.
    raw = json.loads(path.read_text())["database"]
    label_id = {a["label"]: a["label_id"] for v in raw.values() for a in v["annotations"]}
    assert aset.classes == sorted(label_id, key=label_id.get)
    video = aset.videos["video_test_0000004"]
    assert (video.duration, video.fps) == (33.83, 30.0)
    assert (video.segments[0].start, video.segments[0].end, video.segments[0].label) == (0.2, 1.1, "CricketBowling")


def test_afsd_thumos_gt_json_with_string_segments():
    path = shared_path("data", "thumos14", "afsd", "thumos_gt.json")
    aset = load_annotations(path)
    assert counts(aset, "train") == (200, 3007, 0)
    assert counts(aset, "test") == (210, 3311, 0)
    assert aset.num_instances() == 6318
    first = aset.videos["video_test_0000896"].segments[0]
    assert (first.start, first.end, first.label) == (18.6, 24.8, "HighJump")  # was ["18.6", "24.8"]
    assert all(v.duration is None for v in aset.videos.values())


def test_evalkit_test_directory():
    path = shared_path("data", "thumos14", "evalkit", "test")
    assert detect_format(path) == "thumos-evalkit"
    aset = load_annotations(path)
    assert aset.subsets == ["test"]
    assert counts(aset, "test") == (213, 3358, 99)
    lines = sum(1 for p in path.glob("*_test.txt") for line in p.read_text().splitlines() if line.strip())
    assert aset.num_instances() + aset.num_ambiguous() == lines == 3457
    # video_test_0001292 has only Ambiguous rows: kept, with no action instance.
    only_ambiguous = aset.videos["video_test_0001292"]
    assert only_ambiguous.segments == [] and len(only_ambiguous.ambiguous) > 0
    assert aset.classes == list(THUMOS_IDS) and aset.external_ids == THUMOS_IDS
    assert list(aset.videos) == sorted(aset.videos)
    assert all(v.duration is None for v in aset.videos.values())


def test_evalkit_val_and_parent_directory():
    parent = shared_path("data", "thumos14", "evalkit")
    both = load_annotations(parent)
    assert sorted(both.subsets) == ["test", "val"]
    assert counts(both, "val") == (200, 3007, 89)
    assert counts(select_subset(both, "validation"), "val") == (200, 3007, 89)  # alias of "val"
    only_val = load_annotations(parent / "val")
    assert instance_multiset(only_val) == instance_multiset(both.subset("val"))


def test_evalkit_segment_order_is_class_then_file_order():
    path = shared_path("data", "thumos14", "evalkit", "test")
    aset = load_annotations(path)
    video = "video_test_0000004"
    expected = []
    for cls in THUMOS_IDS:  # detclasslist order, lines in file order
        for line in (path / f"{cls}_test.txt").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == video:
                expected.append((float(parts[1]), float(parts[2]), cls))
    assert [(s.start, s.end, s.label) for s in aset.videos[video].segments] == expected


def test_evalkit_with_video_info_csv():
    path = shared_path("data", "thumos14", "evalkit", "test")
    info = shared_path("data", "thumos14", "afsd", "test_video_info.csv")
    aset = load_annotations(path, video_info=info)
    rows = {r["video"]: r for r in csv.DictReader(info.open())}
    for vid, video in aset.videos.items():
        if vid in rows:
            assert video.duration == pytest.approx(float(rows[vid]["count"]) / float(rows[vid]["fps"]))
            assert video.num_frames == int(float(rows[vid]["count"]))
        else:
            assert vid == "video_test_0001292" and video.duration is None  # absent from AFSD's info file


def test_afsd_csv_val_with_sibling_video_info():
    path = shared_path("data", "thumos14", "afsd", "val_Annotation.csv")
    assert detect_format(path) == "afsd-csv"
    aset = load_annotations(path)
    assert aset.subsets == ["val"]
    assert counts(aset, "val") == (200, 3007, 89)
    assert aset.classes == list(THUMOS_IDS) and aset.external_ids == THUMOS_IDS
    video = aset.videos["video_validation_0000051"]
    assert (video.fps, video.num_frames) == (30.0, 5091)
    assert video.duration == pytest.approx(5091 / 30.0)
    # the 25 fps videos named in methods/README.md
    assert aset.videos["video_validation_0000311"].fps == 25.0


def test_afsd_csv_ours_variant_and_test_split():
    test = load_annotations(shared_path("data", "thumos14", "afsd", "test_Annotation.csv"))
    assert counts(test, "test") == (213, 3358, 99)
    ours = load_annotations(shared_path("data", "thumos14", "afsd", "test_Annotation_ours.csv"))
    assert counts(ours, "test") == (212, 3358, 0)
    assert ours.videos["video_test_0000004"].duration is not None  # test_video_info.csv found as sibling


def test_gtad_groundtruth_csv():
    path = shared_path("data", "thumos14", "afsd", "thumos14_test_groundtruth.csv")
    aset = load_annotations(path)
    assert aset.format == "afsd-csv" and aset.subsets == ["test"]
    assert counts(aset, "test") == (213, 3358, 99)
    video = aset.videos["video_test_0000278"]
    assert video.duration == pytest.approx(215.166667) and video.num_frames == 6455
    assert video.ambiguous[:2] == [(0.0, 1.4), (95.7, 97.2)]


def test_thumos14_formats_agree():
    """The same test-set ground truth read from four files in three formats is identical."""
    evalkit = load_annotations(shared_path("data", "thumos14", "evalkit", "test"))
    afsd = load_annotations(shared_path("data", "thumos14", "afsd", "test_Annotation.csv"))
    gtad = load_annotations(shared_path("data", "thumos14", "afsd", "thumos14_test_groundtruth.csv"))
    actionformer = load_annotations(shared_path("data", "thumos14", "actionformer", "thumos14.json"), subset="test")
    reference = instance_multiset(evalkit)
    assert instance_multiset(afsd) == reference
    assert instance_multiset(gtad) == reference
    assert instance_multiset(actionformer) == reference
    assert ambiguous_multiset(afsd) == ambiguous_multiset(gtad) == ambiguous_multiset(evalkit)
    afsd_json = load_annotations(shared_path("data", "thumos14", "afsd", "thumos_gt.json"), subset="test")
    assert not (instance_multiset(afsd_json) - reference)  # its 210 videos are a subset


# ------------------------------------------------------------------------------------- ActivityNet


def test_bsn_activitynet13_counts():
    path = shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json")
    assert detect_format(path) == "bsn" and detect_format(path.parent) == "bsn"
    aset = cached("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json")
    assert counts(aset, "validation") == (4728, 7293, 0)
    assert counts(aset, "training") == (9649, 14859, 0)
    assert counts(aset, "testing") == (4851, 0, 0)
    names = [r["action"] for r in csv.DictReader(path.with_name("action_name.csv").open())]
    assert aset.classes == names and len(names) == 200
    # README: v_GGSY1Qvo990 is validation, "Clean and jerk" [5.82, 16.20]; 355 frames at 19.62 fps.
    video = aset.videos["v_GGSY1Qvo990"]
    assert video.subset == "validation" and video.segments[0].label == "Clean and jerk"
    assert (video.segments[0].start, video.segments[0].end) == pytest.approx((5.82, 16.20), abs=0.01)


def test_bsn_zero_length_policies():
    path = shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json")
    raw = json.loads(path.read_text())
    subset_of = {r["video"]: r["subset"] for r in csv.DictReader(path.with_name("video_info_new.csv").open())}
    zero = Counter(subset_of[v] for v, e in raw.items() for a in e["annotations"] if a["segment"][0] == a["segment"][1])
    assert zero["validation"] > 0  # the official GT has some; the evaluator counts them
    dropped = load_annotations(path, zero_length="drop")
    assert counts(dropped, "validation")[1] == 7293 - zero["validation"]
    assert counts(dropped, "training")[1] == 14859 - zero["training"]
    from tadkit.errors import TadkitError

    with pytest.raises(TadkitError, match="zero-length"):
        load_annotations(path, zero_length="error")


def test_wtalc_activitynet12_counts():
    path = shared_path("data", "activitynet", "v1.2", "wtalc_npy")
    assert detect_format(path) == "wtalc"
    aset = cached("data", "activitynet", "v1.2", "wtalc_npy")
    assert counts(aset, "training")[0] == 4819
    assert counts(aset, "validation")[0] == 2383
    classes = [c.decode() for c in np.load(path / "classlist.npy", allow_pickle=True)]
    assert aset.classes == classes and len(classes) == 100
    segments = np.load(path / "segments.npy", allow_pickle=True, encoding="bytes")
    assert aset.num_instances() == sum(len(s) for s in segments)
    assert all(v.startswith("v_") and len(v) == 13 for v in aset.videos)


def test_wtalc_ids_match_bsn_ids():
    """v_<youtube id> from url.npy is the BSN spelling: most v1.2 videos are found in the v1.3 file."""
    wtalc = cached("data", "activitynet", "v1.2", "wtalc_npy")
    bsn = cached("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json")
    common = set(wtalc.videos) & set(bsn.videos)
    assert len(common) > 0.9 * len(wtalc.videos)
    assert all(wtalc.videos[v].subset == bsn.videos[v].subset for v in common)
    same = sum(
        np.allclose(wtalc.videos[v].segment_array(), bsn.videos[v].segment_array(), atol=1e-3)
        for v in common if len(wtalc.videos[v].segments) == len(bsn.videos[v].segments)
    )
    assert same > 0.95 * len(common)


def test_normalize_ids_against_official_predictions():
    """Official prediction files use bare ids; BSN GT uses v_ ids. Normalizing makes them meet."""
    bsn = select_subset(cached("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"), "validation")
    predictions = json.loads(shared_path("data", "activitynet", "predictions",
                                         "sample_detection_prediction.json").read_text())["results"]
    ids = list(predictions)
    assert not set(ids) & set(bsn.videos)
    normalized = normalize_video_ids(ids, bsn.videos)
    assert set(normalized) >= set(bsn.videos)  # all 4728 validation videos are covered
    unmatched = [v for v in normalized if v not in bsn.videos]
    assert unmatched == [v for v in ids if "v_" + v not in bsn.videos]  # the rest come back unchanged
