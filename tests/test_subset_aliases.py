"""Subset aliases: one rule (tadkit.data.records.resolve_subsets) wherever a subset name is matched."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from tadkit.data.annotations import load_annotations, select_subset
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation, canonical_subset, resolve_subsets
from tadkit.errors import TadkitError


def _aset(subsets: dict[str, str]) -> AnnotationSet:
    videos = {vid: VideoAnnotation(vid, sub, 10.0, 30.0, [Segment(1.0, 2.0, "A")]) for vid, sub in subsets.items()}
    return AnnotationSet(videos, ["A"], source="mem.json")


@pytest.mark.parametrize(
    "names, key",
    [(("val", "validation", "Validation", "VAL", "valid"), "validation"),
     (("test", "Test", "testing", "TESTING"), "test"),
     (("train", "training", "Train", "Training"), "train"),
     (("holdout", "HoldOut"), "holdout")],
)
def test_canonical_subset_groups(names, key):
    assert {canonical_subset(n) for n in names} == {key}


def test_aliases_select_the_same_videos_and_exact_wins():
    aset = _aset({"a": "val", "b": "Test", "c": "training", "d": "other"})
    for name in ("val", "validation", "Validation"):
        assert list(aset.subset(name).videos) == ["a"]
    for name in ("test", "Test", "testing"):
        assert list(aset.subset(name).videos) == ["b"]
    for name in ("train", "Train", "training"):
        assert list(aset.subset(name).videos) == ["c"]
    assert list(aset.subset(["validation", "testing"]).videos) == ["a", "b"]
    assert aset.subset("nothing").videos == {}
    # a file that has both spellings: the exact name wins, the alias does not pull the other one in
    both = _aset({"a": "val", "b": "validation"})
    assert list(both.subset("val").videos) == ["a"]
    assert list(both.subset("Validation").videos) == ["b"]
    assert resolve_subsets(["val", "nope"], ["validation", "test"]) == (["validation"], ["nope"])


def test_select_subset_error_lists_the_available_subsets():
    aset = _aset({"a": "val", "b": "test"})
    with pytest.raises(TadkitError) as info:
        select_subset(aset, ["validation", "train"])
    message = str(info.value)
    assert "no subset 'train'" in message and "'val', 'test'" in message
    assert info.value.field == "subset" and info.value.file == "mem.json"


@pytest.mark.shared
def test_real_thumos14_evalkit_val_answers_to_validation():
    kit = shared_path("data", "thumos14", "evalkit")
    aset = load_annotations(kit)
    assert sorted(aset.subsets) == ["test", "val"]
    counts = {name: len(aset.subset(name).videos) for name in ("validation", "Validation", "val", "test", "Test",
                                                                "testing")}
    assert counts == {"validation": 200, "Validation": 200, "val": 200, "test": 213, "Test": 213, "testing": 213}
    assert len(load_annotations(kit, subset="validation").videos) == 200
    assert len(load_annotations(kit, subset=["Validation", "testing"]).videos) == 413
    with pytest.raises(TadkitError, match=r"no subset 'train'.*'(test|val)', '(test|val)'"):
        load_annotations(kit, subset="train")


@pytest.mark.shared
def test_window_dataset_and_evaluation_accept_validation_on_the_evalkit(tmp_path):
    """What `tadkit train configs/a2net/thumos14.yaml` does with subset_train: validation on the evalkit."""
    from tadkit.data.dataset import WindowDataset
    from tadkit.data.features import FeatureSpec, FeatureStore, write_feature_dir
    from tadkit.evaluation.detection import evaluate
    from tadkit.data.records import DetectionSet

    aset = load_annotations(shared_path("data", "thumos14", "evalkit"))
    val = aset.subset("val")
    # fake 2-d features long enough for every GT (30 fps, stride 4), only for the val videos
    lengths = {vid: int(np.ceil(max(s.end for s in v.segments) * 30 / 4)) + 8 if v.segments else 64
               for vid, v in val.videos.items()}
    spec = FeatureSpec(fps=30.0, stride_frames=4, clip_frames=16, offset_frames=0, dim=2)
    root = write_feature_dir(tmp_path / "f", spec, {vid: np.zeros((n, 2), np.float32) for vid, n in lengths.items()})
    ds = WindowDataset(aset, FeatureStore(root), window=128, stride=64, subset="validation", progress=False)
    assert len(ds.annotations.videos) == 200 and set(ds.annotations.subsets) == {"val"}
    assert len(ds) > 200
    # evaluation: "Validation" finds "val"; the report names the file's spelling
    vid, video = next((k, v) for k, v in val.videos.items() if v.segments)
    seg = video.segments[0]
    pred = DetectionSet([vid], [seg.start], [seg.end], [seg.label], [0.9])
    result = evaluate(aset, pred, protocol="thumos14", subset="Validation")
    assert result.subset == "val"
