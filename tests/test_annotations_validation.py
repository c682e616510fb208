"""Readers on small hand-written files: what they accept, and one clear TadkitError (file, video,
field) for every kind of bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tadkit.data.annotations import (
    detect_format,
    load_annotations,
    normalize_video_id,
    normalize_video_ids,
    select_subset,
    write_tadkit_json,
)
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def anet_json(tmp_path: Path, database: dict, **top) -> Path:
    return write(tmp_path / "gt.json", json.dumps({"version": "t", **top, "database": database}))


def video(*annotations, subset="validation", **extra) -> dict:
    return {"subset": subset, "annotations": [{"segment": list(s), "label": name} for s, name in annotations], **extra}


def error_of(call, *args, **kwargs) -> TadkitError:
    with pytest.raises(TadkitError) as info:
        call(*args, **kwargs)
    return info.value


# ------------------------------------------------------------------------------ ActivityNet JSON


def test_tadkit_json_superset_fields(tmp_path):
    path = anet_json(
        tmp_path,
        {"a": video(([1, 2], "Jump"), fps=25, num_frames=250, duration=10.0, ambiguous=[[3, 4]]),
         "b": video(([0.5, 9], "Run"), subset="training")},
        classes=["Run", "Jump", "Swim"],
        external_ids={"Run": 5, "Jump": 7},
    )
    aset = load_annotations(path)
    assert aset.classes == ["Run", "Jump", "Swim"]  # the file's order, unused classes kept
    assert aset.external_ids == {"Run": 5, "Jump": 7}
    a = aset.videos["a"]
    assert (a.fps, a.num_frames, a.duration, a.ambiguous) == (25.0, 250, 10.0, [(3.0, 4.0)])
    assert select_subset(aset, "train").videos.keys() == {"b"}  # training <-> train alias


def test_class_order_without_list_is_sorted(tmp_path):
    path = anet_json(tmp_path, {"a": video(([1, 2], "b"), ([2, 3], "C"), ([3, 4], "a"))})
    assert load_annotations(path).classes == sorted(["b", "C", "a"])


@pytest.mark.parametrize(
    "database, top, video_id, field, message",
    [
        ({"a": video(([5, 2], "x"))}, {}, "a", "annotations[0].segment", "reversed"),
        ({"a": video(([-1, 2], "x"))}, {}, "a", "annotations[0].segment", "negative"),
        ({"a": video((["nan", 2], "x"))}, {}, "a", "annotations[0].segment", "finite"),
        ({"a": video(([1, "inf"], "x"))}, {}, "a", "annotations[0].segment", "finite"),
        ({"a": video(([1, "abc"], "x"))}, {}, "a", "annotations[0].segment", "expected a number"),
        ({"a": video(([1, True], "x"))}, {}, "a", "annotations[0].segment", "expected a number"),
        ({"a": video(([1, 2, 3], "x"))}, {}, "a", "annotations[0].segment", "expected [start, end]"),
        ({"a": video(([1, 2], ""))}, {}, "a", "annotations[0].label", "class name"),
        ({"a": video(([1, 2], "x"))}, {"classes": ["y"]}, "a", "annotations[0].label",
         "not in the file's class list"),
        ({"a": {"annotations": []}}, {}, "a", "subset", "missing"),
        ({"a": {"subset": "val"}}, {}, "a", "annotations", "missing"),
        ({"a": {"subset": "val", "annotations": [{"label": "x"}]}}, {}, "a", "annotations[0].segment", "missing"),
        ({"a": {"subset": "val", "annotations": [{"segment": [1, 2]}]}}, {}, "a", "annotations[0].label", "missing"),
        ({"a": video(duration=-3)}, {}, "a", "duration", "> 0"),
        ({"a": video(fps=0)}, {}, "a", "fps", "> 0"),
        ({"a": video(num_frames=2.5)}, {}, "a", "num_frames", "whole number"),
        ({"a": video(ambiguous=[[4, 3]])}, {}, "a", "ambiguous[0]", "reversed"),
        ({"a": []}, {}, "a", "database", "must be an object"),
    ],
)
def test_activitynet_errors_name_file_video_field(tmp_path, database, top, video_id, field, message):
    path = anet_json(tmp_path, database, **top)
    error = error_of(load_annotations, path)
    assert (error.file, error.video, error.field) == (str(path), video_id, field)
    assert message in error.message
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    "text, field, message",
    [
        ('{"database": {"a": ', None, "malformed JSON"),
        ("[1, 2]", None, "with a 'database' field"),
        ('{"database": []}', "database", "non-object"),
        ('{"database": {}, "classes": ["a", "a"]}', "classes", "twice"),
        ('{"database": {}, "classes": "abc"}', "classes", "list"),
        ('{"database": {}, "external_ids": {"a": "7"}}', "external_ids.a", "integer"),
        ('{"database": {}, "classes": ["b"], "external_ids": {"a": 7}}', "external_ids.a", "not in 'classes'"),
        ('{"database": {"a": {"subset": "s", "duration": ' + "9" * 5000 + "}}}", None, "malformed JSON"),
    ],
)
def test_activitynet_file_level_errors(tmp_path, text, field, message):
    path = write(tmp_path / "gt.json", text)
    error = error_of(load_annotations, path, format="activitynet")
    assert error.file == str(path) and error.field == field and message in error.message


def test_duplicate_video_id_in_json(tmp_path):
    path = write(tmp_path / "gt.json", '{"database": {"a": {"subset": "s", "annotations": []},'
                                       ' "a": {"subset": "s", "annotations": []}}}')
    error = error_of(load_annotations, path)
    assert (error.video, error.field) == ("a", "database") and "duplicate" in error.message


def test_zero_length_policy(tmp_path):
    path = anet_json(tmp_path, {"a": video(([2, 2], "x"), ([1, 3], "x"))})
    assert load_annotations(path).num_instances() == 2  # keep (default)
    assert load_annotations(path, zero_length="drop").videos["a"].segments == [Segment(1.0, 3.0, "x")]
    error = error_of(load_annotations, path, zero_length="error")
    assert (error.video, error.field) == ("a", "annotations[0].segment") and "zero-length" in error.message
    assert "zero_length must be one of" in error_of(load_annotations, path, zero_length="bogus").message


def test_not_utf8_and_missing_path(tmp_path):
    path = tmp_path / "gt.json"
    path.write_bytes(b'{"database": "\xff\xfe"}')
    assert "UTF-8" in error_of(load_annotations, path).message
    assert error_of(load_annotations, tmp_path / "nope.json").file == str(tmp_path / "nope.json")
    assert "format" in error_of(load_annotations, write(tmp_path / "x.yaml", "a: 1")).message
    assert "unknown annotation format" in error_of(load_annotations, path, format="yaml").message


# ---------------------------------------------------------------------------------- writer


def test_writer_round_trip_is_exact(tmp_path):
    aset = AnnotationSet(
        videos={
            "v_x": VideoAnnotation("v_x", "validation", duration=12.345678901234, fps=29.97, num_frames=370,
                                   segments=[Segment(0.1 + 0.2, 5.0, "B"), Segment(0.0, 0.0, "A")],
                                   ambiguous=[(1.0, 2.5)]),
            "y": VideoAnnotation("y", "Test"),
        },
        classes=["B", "A"],
        external_ids={"B": 3},
        version="v",
    )
    out = tmp_path / "sub" / "out.json"
    write_tadkit_json(aset, out)
    back = load_annotations(out)
    assert back.videos == aset.videos  # float repr round-trips bit-exactly (0.1 + 0.2 included)
    assert (back.classes, back.external_ids, back.version) == (aset.classes, aset.external_ids, aset.version)
    assert json.loads(out.read_text())["database"]["v_x"]["annotations"][1]["label_id"] == 1
    assert [p.name for p in out.parent.iterdir()] == ["out.json"]  # no temp file left behind


@pytest.mark.parametrize("segment", [Segment(math.nan, 1.0, "A"), Segment(2.0, 1.0, "A"), Segment(0.0, 1.0, "Z")])
def test_writer_refuses_what_the_reader_would_reject(tmp_path, segment):
    aset = AnnotationSet(videos={"v": VideoAnnotation("v", "s", segments=[segment])}, classes=["A"])
    with pytest.raises(TadkitError):
        write_tadkit_json(aset, tmp_path / "o.json")
    assert not (tmp_path / "o.json").exists()


# --------------------------------------------------------------------------------- evalkit


def evalkit_dir(tmp_path: Path, files: dict[str, str], classlist: str | None = "7 Jump\n9 Run\n") -> Path:
    d = tmp_path / "kit"
    d.mkdir()
    if classlist is not None:
        write(d / "detclasslist.txt", classlist)
    for name, text in files.items():
        write(d / name, text)
    return d


def test_evalkit_small(tmp_path):
    d = evalkit_dir(tmp_path, {"Run_test.txt": "vb 1 2\nva  3.5 4\n\n", "Jump_test.txt": "va 0 1\n",
                               "Ambiguous_test.txt": "vc 1 2\n"})
    assert detect_format(d) == "thumos-evalkit"
    aset = load_annotations(d)
    assert list(aset.videos) == ["va", "vb", "vc"]
    assert aset.videos["va"].segments == [Segment(0.0, 1.0, "Jump"), Segment(3.5, 4.0, "Run")]
    assert aset.videos["vc"].ambiguous == [(1.0, 2.0)] and aset.external_ids == {"Jump": 7, "Run": 9}


def test_evalkit_without_classlist_uses_thumos_ids_when_possible(tmp_path):
    d = evalkit_dir(tmp_path, {"Diving_val.txt": "v 1 2\n", "Ambiguous_val.txt": "v 3 4\n"}, classlist=None)
    aset = load_annotations(d)
    assert aset.classes == ["Diving"] and aset.external_ids == {"Diving": 26} and aset.subsets == ["val"]


@pytest.mark.parametrize(
    "files, video_id, field, message",
    [
        ({"Run_test.txt": "va 1\n"}, "va", "line 1", "expected '<video> <start> <end>'"),
        ({"Run_test.txt": "va 1 x\n"}, "va", "line 1 end", "expected a number"),
        ({"Run_test.txt": "va 1 2\nvb 3 1\n"}, "vb", "Run_test.txt line 2", "reversed"),
        ({"Swim_test.txt": "va 1 2\n"}, None, "label", "not in detclasslist.txt"),
        ({"Run_test.txt": "va 1 2\n", "Run_val.txt": "va 3 4\n"}, "va", "Run_val.txt line 1", "subset"),
    ],
)
def test_evalkit_errors(tmp_path, files, video_id, field, message):
    d = evalkit_dir(tmp_path, files)
    error = error_of(load_annotations, d)
    assert (error.video, error.field) == (video_id, field) and message in error.message


def test_evalkit_bad_classlist(tmp_path):
    d = evalkit_dir(tmp_path, {"Run_test.txt": "va 1 2\n"}, classlist="7 Jump\nRun\n")
    error = error_of(load_annotations, d)
    assert error.file.endswith("detclasslist.txt") and error.field == "line 2"


# -------------------------------------------------------------------------------- AFSD CSV

AFSD_HEADER = "video,type,type_idx,start,end,startFrame,endFrame\n"


def test_afsd_csv_small_with_info(tmp_path):
    path = write(tmp_path / "test_Annotation.csv",
                 AFSD_HEADER + "v1,Run,9,1.0,2.0,30,60\nv1,Ambiguous,0,3,4,90,120\nv2,Jump,7,0.5,1.5,15,45\n")
    write(tmp_path / "test_video_info.csv", "video,fps,sample_fps,count,sample_count\nv1,25.0,10,250.0,100\n")
    aset = load_annotations(path)
    assert aset.classes == ["Jump", "Run"] and aset.external_ids == {"Jump": 7, "Run": 9}
    assert aset.subsets == ["test"]
    assert (aset.videos["v1"].duration, aset.videos["v1"].fps, aset.videos["v1"].num_frames) == (10.0, 25.0, 250)
    assert aset.videos["v1"].ambiguous == [(3.0, 4.0)] and aset.videos["v2"].duration is None


@pytest.mark.parametrize(
    "rows, video_id, field, message",
    [
        ("v1,Run,9,2,1,0,0\n", "v1", "line 2", "reversed"),
        ("v1,Run,9,-1,1,0,0\n", "v1", "line 2", "negative"),
        ("v1,Run,9,nan,1,0,0\n", "v1", "line 2", "finite"),
        ("v1,Run,9,1,,0,0\n", "v1", "line 2 end", "expected a number"),
        ("v1,Run,9,1,2,0\n", None, "line 2", "fields"),
        ("v1,Run,9,1,2,0,0\nv2,Run,8,1,2,0,0\n", "v2", "line 3 type_idx", "type_idx"),
        ("v1,Run,9,1,2,0,0\nv2,Jump,9,1,2,0,0\n", None, "line 3 type_idx", "used by both"),
        (",Run,9,1,2,0,0\n", None, "line 2 video", "video id"),
    ],
)
def test_afsd_csv_errors(tmp_path, rows, video_id, field, message):
    path = write(tmp_path / "val_Annotation.csv", AFSD_HEADER + rows)
    error = error_of(load_annotations, path)
    assert (error.file, error.video, error.field) == (str(path), video_id, field)
    assert message in error.message


def test_video_info_duplicate_and_bad_values(tmp_path):
    path = write(tmp_path / "val_Annotation.csv", AFSD_HEADER + "v1,Run,9,1,2,0,0\n")
    info = write(tmp_path / "val_video_info.csv", "video,fps,sample_fps,count,sample_count\nv1,30,10,300,100\n"
                                                  "v1,30,10,300,100\n")
    error = error_of(load_annotations, path)
    assert (error.file, error.video, error.field) == (str(info), "v1", "line 3") and "duplicate" in error.message
    write(info, "video,fps,sample_fps,count,sample_count\nv1,-30,10,300,100\n")
    error = error_of(load_annotations, path)
    assert (error.video, error.field) == ("v1", "line 2 fps")
    write(info, "video,fps\nv1,30\n")
    assert error_of(load_annotations, path).field == "header"


def test_gtad_csv_label_index(tmp_path):
    header = "video-name,t-init,t-end,f-init,f-end,video-duration,frame-rate,video-frames,label-idx\n"
    path = write(tmp_path / "thumos14_test_groundtruth.csv",
                 header + "v,1,2,30,60,100,30,3000,7\nv,3,4,90,120,100,30,3000,-1\n")
    aset = load_annotations(path)
    assert aset.videos["v"].segments == [Segment(1.0, 2.0, "Diving")]  # index 7 of the THUMOS14 list
    assert aset.videos["v"].ambiguous == [(3.0, 4.0)] and aset.videos["v"].duration == 100.0
    write(path, header + "v,1,2,30,60,100,30,3000,20\n")
    assert error_of(load_annotations, path).field == "line 2 label-idx"
    write(path, header + "v,1,2,30,60,100,30,3000,1\nv,3,4,90,120,101,30,3000,1\n")
    assert "differ" in error_of(load_annotations, path).message


def test_unknown_csv_header(tmp_path):
    path = write(tmp_path / "x.csv", "a,b\n1,2\n")
    assert error_of(load_annotations, path).field == "header"
    assert "empty" in error_of(load_annotations, write(tmp_path / "e.csv", "\n\n")).message


# ------------------------------------------------------------------------------------- BSN


def bsn_dir(tmp_path: Path, entries: dict, info_rows: str, classes: str | None = None) -> Path:
    d = tmp_path / "bsn"
    write(d / "anet_anno_action.json", json.dumps(entries))
    write(d / "video_info_new.csv", "video,numFrame,seconds,fps,rfps,subset,featureFrame\n" + info_rows)
    if classes is not None:
        write(d / "action_name.csv", "action\n" + classes)
    return d


def bsn_entry(*annotations, duration=10.0) -> dict:
    return {"duration_second": duration, "duration_frame": 300, "feature_frame": 288,
            "annotations": [{"segment": list(s), "label": name} for s, name in annotations]}


def test_bsn_small(tmp_path):
    d = bsn_dir(tmp_path, {"v_a": bsn_entry(([1, 2], "Run")), "v_b": bsn_entry()},
                "v_a,300,10.0,30.0,29.97,validation,288\nv_b,300,10.0,30.0,29.97,testing,288\n",
                classes="Swim\nRun\n")
    aset = load_annotations(d)
    assert aset.classes == ["Swim", "Run"] and aset.subsets == ["validation", "testing"]
    assert (aset.videos["v_a"].fps, aset.videos["v_a"].num_frames) == (29.97, 300)


@pytest.mark.parametrize(
    "entries, info, classes, video_id, field, message",
    [
        ({"v_a": bsn_entry(([1, 2], "Run"))}, "", None, "v_a", "subset", "no subset"),
        ({"v_a": bsn_entry(([1, 2], "Fly"))}, "v_a,1,1,1,1,training,1\n", "Run\n", "v_a",
         "annotations[0].label", "class list"),
        ({"v_a": bsn_entry(([3, 2], "Run"))}, "v_a,1,1,1,1,training,1\n", None, "v_a",
         "annotations[0].segment", "reversed"),
        ({"v_a": bsn_entry(duration=0)}, "v_a,1,1,1,1,training,1\n", None, "v_a", "duration_second", "> 0"),
        ({"v_a": {"duration_second": 1, "duration_frame": 1}}, "v_a,1,1,1,1,training,1\n", None, "v_a",
         "annotations", "not a list"),
    ],
)
def test_bsn_errors(tmp_path, entries, info, classes, video_id, field, message):
    d = bsn_dir(tmp_path, entries, info, classes)
    error = error_of(load_annotations, d, format="bsn")
    assert (error.video, error.field) == (video_id, field) and message in error.message


def test_bsn_needs_video_info(tmp_path):
    d = bsn_dir(tmp_path, {"v_a": bsn_entry()}, "")
    (d / "video_info_new.csv").unlink()
    assert "video_info_new.csv" in error_of(load_annotations, d / "anet_anno_action.json").message


# ----------------------------------------------------------------------------------- W-TALC


def object_array(*items) -> np.ndarray:
    """1-D object array of lists (np.array would build a 2-D array from equal-length lists)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def wtalc_dir(tmp_path: Path, **override) -> Path:
    d = tmp_path / "wtalc"
    d.mkdir()
    arrays = {
        "classlist": np.array([b"Run", b"Jump"]),
        "segments": object_array([[1.0, 2.0]], [[0.0, 3.0], [4.0, 5.0]]),
        "labels": object_array([b"Run"], [b"Jump", b"Run"]),
        "subset": np.array([b"training", b"validation"]),
        "duration": np.array([10.0, 20.0]),
        "url": np.array([b"https://www.youtube.com/watch?v=abc", b"https://www.youtube.com/watch?v=v_d-e"]),
    }
    arrays.update(override)
    for name, array in arrays.items():
        if array is not None:
            np.save(d / f"{name}.npy", array, allow_pickle=True)
    return d


def test_wtalc_small(tmp_path):
    aset = load_annotations(wtalc_dir(tmp_path))
    assert list(aset.videos) == ["v_abc", "v_v_d-e"] and aset.classes == ["Run", "Jump"]
    assert aset.videos["v_v_d-e"].segments == [Segment(0.0, 3.0, "Jump"), Segment(4.0, 5.0, "Run")]
    assert aset.videos["v_abc"].duration == 10.0


def test_wtalc_falls_back_to_videoname(tmp_path):
    d = wtalc_dir(tmp_path, url=None, videoname=np.array([b"video_1", b"video_2"]))
    assert list(load_annotations(d).videos) == ["video_1", "video_2"]


@pytest.mark.parametrize(
    "override, file, video_id, field, message",
    [
        ({"subset": np.array([b"training"])}, "subset.npy", None, "subset", "entries"),
        ({"classlist": np.array([b"Run"])}, "wtalc", "v_v_d-e", "labels[1][0]", "class list"),
        ({"duration": np.array([10.0, -1.0])}, "duration.npy", "v_v_d-e", "duration[1]", "> 0"),
        ({"url": np.array([b"https://www.youtube.com/watch?v=abc"] * 2)}, "wtalc", "v_abc", "entry 1", "duplicate"),
        ({"segments": object_array([[1.0, 2.0]], [[0.0, 3.0]])}, "wtalc", "v_v_d-e", "segments[1]", "equal length"),
        ({"segments": object_array([[2.0, 1.0]], [[0.0, 3.0], [4.0, 5.0]])}, "wtalc", "v_abc", "segments[0][0]",
         "reversed"),
    ],
)
def test_wtalc_errors(tmp_path, override, file, video_id, field, message):
    error = error_of(load_annotations, wtalc_dir(tmp_path, **override))
    assert (Path(error.file).name, error.video, error.field) == (file, video_id, field)
    assert message in error.message


def test_wtalc_corrupt_npy(tmp_path):
    d = wtalc_dir(tmp_path)
    (d / "segments.npy").write_bytes(b"\x93NUMPY garbage")
    error = error_of(load_annotations, d)
    assert error.file == str(d / "segments.npy") and "cannot load" in error.message


# ------------------------------------------------------------------------------- video ids


@pytest.mark.parametrize(
    "video_id, known, expected",
    [
        ("v_abc", {"abc"}, "abc"),  # BSN key vs bare ActivityNet set: strip
        ("abc", {"v_abc"}, "v_abc"),  # bare prediction vs BSN GT: add
        ("v_abc", {"v_abc", "abc"}, "v_abc"),  # exact match wins
        ("v_abcdefghi", {"x"}, "v_abcdefghi"),  # unknown: unchanged (may be a bare id starting with v_)
        ("video_test_0000004", {"video_test_0000004"}, "video_test_0000004"),
    ],
)
def test_normalize_video_id(video_id, known, expected):
    assert normalize_video_id(video_id, known) == expected
    assert normalize_video_ids([video_id], list(known)) == [expected]


def test_select_subset_errors_list_available(tmp_path):
    path = anet_json(tmp_path, {"a": video(subset="Validation")})
    error = error_of(load_annotations, path, subset="test")
    assert "'Validation'" in error.message and error.field == "subset"
    assert list(load_annotations(path, subset=["VALIDATION"]).videos) == ["a"]
    assert list(load_annotations(path, subset="val").videos) == ["a"]  # alias
