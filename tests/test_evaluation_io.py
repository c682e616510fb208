"""Prediction files: readers, writers (exact round trips, atomic), and clear errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import shared_path
from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError
from tadkit.evaluation import load_predictions, write_activitynet_json, write_thumos_txt
from tadkit.evaluation.predictions import detect_prediction_format
from test_evaluation_reference import make_dets

THUMOS_IDS = {"BaseballPitch": 7, "VolleyballSpiking": 97}


def assert_same(a: DetectionSet, b: DetectionSet) -> None:
    assert a.video.tolist() == b.video.tolist()
    assert a.label.tolist() == b.label.tolist()
    for col in ("start", "end", "score"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))  # bit-identical floats


@pytest.fixture
def awkward_dets():
    rng = np.random.default_rng(0)
    rows = [("video_test_0000004", 0.1 + 0.2, 1 / 3, "BaseballPitch", 1e-7),
            ("video_test_0000004", 12.5, 12.5, "VolleyballSpiking", 0.0),
            ("video_test_0000011", -0.5, 2e6 / 3, "BaseballPitch", 1.0)]
    rows += [("video_test_0000011", s, s + d, "VolleyballSpiking", sc)
             for s, d, sc in zip(rng.random(20) * 100, rng.random(20) * 9, rng.random(20))]
    return make_dets(rows)


def test_activitynet_json_round_trip(tmp_path, awkward_dets):
    path = tmp_path / "out" / "preds.json"
    write_activitynet_json(awkward_dets, path)
    data = json.loads(path.read_text())
    assert set(data) == {"version", "results", "external_data"}  # what the official checker requires
    assert list(data["results"]) == ["video_test_0000004", "video_test_0000011"]
    assert_same(load_predictions(path), awkward_dets)
    assert [p.name for p in path.parent.iterdir()] == ["preds.json"]  # no temp file left


def test_thumos_txt_round_trip(tmp_path, awkward_dets):
    path = tmp_path / "preds.txt"
    write_thumos_txt(awkward_dets, path, THUMOS_IDS)
    first = path.read_text().splitlines()[0].split()
    assert first[0] == "video_test_0000004" and first[3] == "7" and "e" not in first[4]  # no exponent (MATLAB)
    assert_same(load_predictions(path, class_ids=THUMOS_IDS), awkward_dets)
    # {id: name} maps work too, and the default map is the 20 THUMOS14 detection classes
    assert_same(load_predictions(path, class_ids={7: "BaseballPitch", 97: "VolleyballSpiking"}), awkward_dets)
    assert_same(load_predictions(path), awkward_dets)
    # unmapped ids stay visible as labels (reported as unknown by the evaluator)
    assert set(load_predictions(path, class_ids={"BaseballPitch": 7}).label.tolist()) == {"BaseballPitch", "97"}


def test_thumos_writer_refuses_labels_without_id_and_leaves_no_file(tmp_path, awkward_dets):
    path = tmp_path / "preds.txt"
    with pytest.raises(TadkitError) as info:
        write_thumos_txt(awkward_dets, path, {"BaseballPitch": 7})
    assert "VolleyballSpiking" in str(info.value) and info.value.field == "label"
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_csv_reader(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("score,video,label,start,end,extra\n0.5,v1,a,1.0,2.5,x\n\n0.25,v2,b,0,1e1,y\n")
    dets = load_predictions(path)
    assert dets.video.tolist() == ["v1", "v2"] and dets.label.tolist() == ["a", "b"]
    np.testing.assert_array_equal(dets.end, [2.5, 10.0])
    assert detect_prediction_format(path) == "csv"


def test_format_detection_from_content(tmp_path):
    (tmp_path / "a.out").write_text('{"results": {}}')
    (tmp_path / "b.out").write_text("video,start,end,label,score\nv,0,1,a,0.5\n")
    (tmp_path / "c.out").write_text("v 0 1 7 0.5\n")
    kinds = [detect_prediction_format(tmp_path / n) for n in ("a.out", "b.out", "c.out")]
    assert kinds == ["activitynet", "csv", "thumos"]
    assert len(load_predictions(tmp_path / "c.out")) == 1


@pytest.mark.shared
def test_official_sample_file():
    dets = load_predictions(shared_path("data", "activitynet", "predictions", "sample_detection_prediction.json"))
    assert len(dets) == 7654 and len(dets.videos()) == 4926
    assert dets.video[0] == "wONwHYy59Tc" and dets.label[0] == "Blow-drying hair"
    assert dets.start[0] == pytest.approx(94.5214, abs=1e-4) and dets.end[0] > dets.start[0]
    assert np.all(dets.score == 1.0)


BAD_FILES = [
    ("a.json", '{"results": {"v1": [{"segment": [1, 2], "label": "a", "score": NaN}]}}', "v1", "score"),
    ("b.json", '{"results": {"v1": [{"segment": [5, 2], "label": "a", "score": 0.5}]}}', "v1", "segment"),
    ("c.json", '{"results": {"v1": [{"segment": [1, 2], "label": "a"}]}}', "v1", "score"),
    ("d.json", '{"results": {"v1": [{"segment": [1], "label": "a", "score": 1}]}}', "v1", "segment"),
    ("e.json", '{"results": {"v1": [{"segment": ["x", 2], "label": "a", "score": 1}]}}', "v1", "segment"),
    ("f.json", '{"results": {"v1": {"segment": [1, 2]}}}', "v1", "results"),
    ("g.json", '{"version": 1}', None, "results"),
    ("h.json", '{"results": {"v1": [{"segment": [1, 2], "label": null, "score": 1}]}}', "v1", "label"),
    ("i.json", '{"results": [', None, None),
    ("j.txt", "video_test_1 1.0 2.0 7 0.5\nvideo_test_2 1.0 2.0 7\n", "video_test_2", "line"),
    ("k.txt", "video_test_1 1.0 2.0 7.5 0.5\n", "video_test_1", "class_id"),
    ("l.txt", "video_test_1 3.0 2.0 7 0.5\n", "video_test_1", "segment"),
    ("m.txt", "video_test_1 1.0 2.0 7 inf\n", "video_test_1", "score"),
    ("n.csv", "video,start,end,score\nv,0,1,0.5\n", None, "label"),
    ("o.csv", "video,start,end,label,score\nv,0,abc,a,0.5\n", "v", "end"),
    ("p.csv", "video,start,end,label,score\nv,0,1\n", "v", "line"),
]


@pytest.mark.parametrize("name,text,video,field", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_malformed_files_raise_one_clear_error(tmp_path, name, text, video, field):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TadkitError) as info:
        load_predictions(path, strict=True)  # strict: reversed segments (b, l) are errors too
    err = info.value
    assert err.file == str(path) and err.video == video and err.field == field
    assert "\n" not in str(err)
    if name in ("b.json", "l.txt"):  # without strict they are read as they are (the evaluators score them)
        dets = load_predictions(path)
        assert len(dets) == 1 and dets.end[0] < dets.start[0]
        assert "strict" in str(err) and ("line 1" if name == "l.txt" else "detection 0") in str(err)
    else:
        with pytest.raises(TadkitError) as plain:
            load_predictions(path)
        assert str(plain.value) == str(err)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(TadkitError, match="not found"):
        load_predictions(tmp_path / "missing.json")
    with pytest.raises(TadkitError, match="directory"):
        load_predictions(tmp_path)
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TadkitError, match="UTF-8"):
        load_predictions(tmp_path / "bin.txt")
    with pytest.raises(TadkitError, match="format"):
        load_predictions(tmp_path / "bin.txt", format="xml")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["p.json", "p.txt", "p.csv"]), st.text(max_size=200))
def test_fuzz_text_either_parses_or_raises_tadkit_error(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    try:
        dets = load_predictions(path, strict=True)
    except TadkitError as err:
        assert err.file == str(path)
        return
    assert np.all(np.isfinite(dets.score)) and np.all(dets.end >= dets.start)


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
_detection = st.fixed_dictionaries(
    {"segment": st.one_of(_json_values, st.lists(st.floats() | st.integers(), min_size=2, max_size=2)),
     "label": _json_values, "score": _json_values})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=5), st.lists(_detection | _json_values, max_size=3), max_size=3))
def test_fuzz_json_structures(tmp_path, results):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"results": results}), encoding="utf-8")
    try:
        dets = load_predictions(path)
    except TadkitError:
        return
    assert len(dets) == sum(len(v) for v in results.values())
    assert os.path.exists(path)


# streaming readers (memory): same result and same errors as a whole-document parse
STREAM_CASES = [
    '{"version": 1, "results": {"v1": [{"segment": [1, 2], "label": "a", "score": 0.5}], "v2": []}}',
    '{"results": {"v1": [{"segment": [1, 2], "label": "a", "score": 0.5}]}, "external_data": {}}',
    '{"results": {"v1": [{"segment": [1, 2], "label": "a", "score": 0.5}], '
    '"v1": [{"segment": [3, 4], "label": "b", "score": 0.1}]}}',  # duplicate key: json keeps the last
    '{"results": {"v1": [{"segment": [1, 2], "label": null, "score": 0.5}]}, "x": [}',  # syntax error wins
    '{"results": {}, "results": {"v1": [{"segment": [1, 2], "label": "a", "score": 0.5}]}}',
]


@pytest.mark.parametrize("text", STREAM_CASES)
def test_streaming_json_reader_equals_whole_parse(tmp_path, text):
    from tadkit.evaluation.predictions import _add_activitynet_video, _Columns

    path = tmp_path / "p.json"
    path.write_text(text)
    try:
        data = json.loads(text)
        cols = _Columns()
        for video, items in data["results"].items():
            _add_activitynet_video(cols, video, items, str(path), False)
        expected, error = cols.build(), None
    except (ValueError, TadkitError) as exc:
        expected, error = None, exc
    if error is None:
        assert_same(load_predictions(path), expected)
    else:
        with pytest.raises(TadkitError, match="invalid JSON" if isinstance(error, ValueError) else ""):
            load_predictions(path)


@pytest.mark.shared
@pytest.mark.parametrize("parts", [("data", "thumos14", "actionformer", "thumos14.json"),
                                   ("data", "thumos14", "afsd", "thumos_gt.json")])
def test_streaming_annotation_reader_equals_whole_parse(parts):
    from tadkit.data.annotations import load_annotations
    from tadkit.data.formats._common import load_json
    from tadkit.data.formats.activitynet import read_activitynet

    path = shared_path(*parts)
    streamed = load_annotations(path)
    whole = read_activitynet(path, data=load_json(path))
    assert streamed.classes == whole.classes and list(streamed.videos) == list(whole.videos)
    assert all(streamed.videos[v] == whole.videos[v] for v in whole.videos)


@pytest.mark.parametrize("text,match", [
    ('{"database": {"a": {"subset": "x", "annotations": []}, "a": {"subset": "x", "annotations": []}}}',
     "duplicate video id"),
    ('{"database": {"a": {"subset": "x", "annotations": [{"segment": [2, 1], "label": "c"}]}}, "z": [}',
     "malformed JSON"),
    ('{"database": {"a": {"subset": "x", "annotations": [{"segment": [1, 2], "label": "c"}]}}, '
     '"classes": ["d"]}', "not in the file's class list"),
])
def test_streaming_annotation_errors_unchanged(tmp_path, text, match):
    from tadkit.data.annotations import load_annotations

    path = tmp_path / "gt.json"
    path.write_text(text)
    with pytest.raises(TadkitError, match=match):
        load_annotations(path)
