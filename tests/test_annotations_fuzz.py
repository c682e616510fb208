"""Fuzzing: random and mangled JSON / CSV / txt / npy inputs. Every reader must either return a valid
AnnotationSet or raise TadkitError -- never another exception (that would be a traceback in the CLI)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tadkit.data.annotations import load_annotations
from tadkit.data.records import AnnotationSet
from tadkit.errors import TadkitError

EXAMPLES = int(os.environ.get("TADKIT_FUZZ_EXAMPLES", "100"))  # raise it for a long local fuzzing run
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",  # CI runs are reproducible; local runs explore
    suppress_health_check=[HealthCheck.too_slow],
)


def assert_valid(aset: AnnotationSet) -> None:
    """Invariants every reader promises (what evaluation and training rely on)."""
    assert isinstance(aset, AnnotationSet)
    assert len(set(aset.classes)) == len(aset.classes) and all(isinstance(c, str) and c for c in aset.classes)
    for video_id, video in aset.videos.items():
        assert isinstance(video_id, str) and video_id == video.video_id
        assert isinstance(video.subset, str) and video.subset
        for value in (video.duration, video.fps):
            assert value is None or (math.isfinite(value) and value > 0)
        assert video.num_frames is None or (isinstance(video.num_frames, int) and video.num_frames >= 0)
        for segment in video.segments:
            assert math.isfinite(segment.start) and math.isfinite(segment.end)
            assert 0 <= segment.start <= segment.end
            assert aset.has_class(segment.label)
        for start, end in video.ambiguous:
            assert math.isfinite(start) and math.isfinite(end) and 0 <= start <= end


def check(path: Path, **kwargs) -> None:
    try:
        aset = load_annotations(path, **kwargs)
    except TadkitError as error:
        assert "\n" not in str(error)  # the CLI prints it on one line
        return
    assert_valid(aset)


# ------------------------------------------------------------------------------------- values

scalars = (
    st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from(["1.5", "-2", "nan", "inf", "1e400", " 3 ", "", "0x10"])
)


def sorted_if_numbers(pair: list) -> list:
    """Order numeric pairs so that most generated segments are valid (reversed ones come from `bad`)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) for v in pair):
        return sorted(pair)
    return pair


json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                                           max_size=3), max_leaves=8)


def mostly(good, bad=json_values, one_in: int = 16):
    """Usually ``good``, one time in ``one_in`` ``bad``: keeps a fair share of examples valid, so the
    success path is fuzzed too, not only the first error."""
    return st.integers(1, one_in).flatmap(lambda k: bad if k == 1 else good)


good_time = st.floats(0, 1e4) | st.integers(0, 100)
bad_time = st.sampled_from([math.nan, math.inf, -math.inf, -1.5, "4.2", "x", None, True])
times = mostly(good_time, bad_time)
labels = mostly(st.sampled_from(["Run", "Jump", "Swim", "Ambiguous"]), st.sampled_from(["", "Fly"]) | json_values)
segment = mostly(st.lists(times, min_size=2, max_size=2).map(sorted_if_numbers))


def maybe(strategy):
    """A dict entry that is absent, well typed, or (rarely) anything at all."""
    return mostly(st.none() | strategy)


annotation = mostly(st.fixed_dictionaries({"segment": segment, "label": labels}, optional={"extra": json_values}))
video_entry = mostly(st.fixed_dictionaries(
    {
        "subset": mostly(st.sampled_from(["training", "validation", "Test"]), st.just("") | json_values),
        "annotations": mostly(st.lists(annotation, max_size=4)),
    },
    optional={
        "duration": maybe(st.floats(0, 1e3)),
        "fps": maybe(st.floats(0, 60)),
        "num_frames": maybe(st.integers(0, 10**4)),
        "ambiguous": mostly(st.lists(segment, max_size=2)),
    },
))
activitynet_doc = st.fixed_dictionaries(
    {"database": mostly(st.dictionaries(mostly(st.sampled_from(["a", "b", "v_c"]), st.text(max_size=4)), video_entry,
                                        max_size=4))},
    optional={
        "version": json_values,
        "classes": mostly(st.lists(st.sampled_from(["Run", "Jump", "Swim", "Ambiguous"]), max_size=4, unique=True)),
        "external_ids": mostly(st.dictionaries(st.sampled_from(["Run", "Jump", "Fly"]), mostly(st.integers(0, 99)),
                                               max_size=3)),
    },
)

VALID_JSON = json.dumps({"version": "x", "classes": ["Run", "Jump"], "database": {
    "a": {"subset": "validation", "duration": 10.5, "annotations": [{"segment": [1, 2.5], "label": "Run"}]},
    "b": {"subset": "test", "annotations": [{"segment": ["3", "4"], "label": "Jump"}], "ambiguous": [[0, 1]]}}})


@st.composite
def mangled(draw, text: str) -> str:
    """Delete, duplicate or overwrite a few random slices of a valid document."""
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, min(len(text), i + 6)))
        op = draw(st.sampled_from(["delete", "insert", "replace"]))
        junk = draw(st.text(alphabet='{}[]",:-.0123456789eaNIn \n\\', max_size=4))
        text = text[:i] + (junk if op != "delete" else "") + (text[i:] if op == "insert" else text[j:])
    return text


def with_file(name: str, content: str | bytes, call) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        call(path)


@FUZZ
@given(doc=mostly(activitynet_doc), zero_length=st.sampled_from(["keep", "drop", "error"]))
def test_fuzz_activitynet_structures(doc, zero_length):
    text = json.dumps(doc, allow_nan=True)
    with_file("gt.json", text, lambda p: check(p, zero_length=zero_length))
    with_file("gt.json", text, lambda p: check(p, format="activitynet"))


@FUZZ
@given(text=mangled(VALID_JSON))
def test_fuzz_mangled_json(text):
    with_file("gt.json", text, check)


@FUZZ
@given(data=st.binary(max_size=64))
def test_fuzz_random_bytes_every_format(data):
    for name in ("gt.json", "x_Annotation.csv"):
        with_file(name, data, check)
    with_file("gt.json", data, lambda p: check(p, format="bsn"))


# ---------------------------------------------------------------------------------------- CSV

AFSD_HEADER = "video,type,type_idx,start,end,startFrame,endFrame"
GTAD_HEADER = "video-name,t-init,t-end,f-init,f-end,video-duration,frame-rate,video-frames,label-idx"
junk_cells = st.sampled_from(["", "nan", "-3", "inf", '"a,b"', '"', "1e400", "x"]) | st.text(
    alphabet="0123456789.,-e\"x \n", max_size=5)
number_cells = mostly(st.floats(0, 500).map(lambda v: f"{v:.2f}") | st.integers(0, 3000).map(str), junk_cells)
video_cells = mostly(st.sampled_from(["v1", "v2", "video_test_3"]), junk_cells)


@st.composite
def afsd_row(draw) -> list[str]:
    start, end = sorted([draw(st.floats(0, 300)), draw(st.floats(0, 300))])
    label, idx = draw(st.sampled_from([("Run", "9"), ("Jump", "7"), ("Ambiguous", "0")]))
    row = [draw(video_cells), label, idx, f"{start:.1f}", f"{end:.1f}", draw(number_cells), draw(number_cells)]
    return draw(mostly(st.just(row), st.lists(number_cells | junk_cells, max_size=9)))


@st.composite
def gtad_row(draw) -> list[str]:
    start, end = sorted([draw(st.floats(0, 300)), draw(st.floats(0, 300))])
    video, duration = draw(st.sampled_from([("v1", "300"), ("v2", "120.5")]))
    row = [video, f"{start:.1f}", f"{end:.1f}", "0", "9", duration, "30", "9000",
           draw(mostly(st.integers(-1, 19).map(str), junk_cells))]
    return draw(mostly(st.just(row), st.lists(number_cells | junk_cells, max_size=10)))


VALID_CSV = AFSD_HEADER + "\nv1,Run,9,1.0,2.0,30,60\nv1,Ambiguous,0,3,4,90,120\nv2,Jump,7,0.5,1.5,15,45\n"


@FUZZ
@given(kind=st.sampled_from(["afsd", "gtad", "other"]), data=st.data())
def test_fuzz_csv_rows(kind, data):
    header = {"afsd": AFSD_HEADER, "gtad": GTAD_HEADER, "other": data.draw(st.sampled_from(["video,type,start", ""]))}
    rows = data.draw(st.lists(afsd_row() if kind == "afsd" else gtad_row(), max_size=5))
    text = "\n".join([header[kind]] + [",".join(r) for r in rows]) + "\n"
    with_file("test_Annotation.csv", text, check)
    with_file("thumos14_test_groundtruth.csv", text, lambda p: check(p, format="afsd-csv"))


info_row = st.tuples(video_cells, number_cells, number_cells, number_cells, number_cells).map(list)


@FUZZ
@given(text=mangled(VALID_CSV), info=st.lists(mostly(info_row, st.lists(number_cells, max_size=6)), max_size=3))
def test_fuzz_mangled_csv_with_video_info(text, info):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "val_Annotation.csv"
        path.write_text(text)
        (Path(tmp) / "val_video_info.csv").write_text(
            "\n".join(["video,fps,sample_fps,count,sample_count"] + [",".join(r) for r in info]) + "\n")
        check(path)


# ------------------------------------------------------------------------------ evalkit / BSN

evalkit_line = mostly(
    st.tuples(st.sampled_from(["video_test_1", "video_test_2"]), number_cells, number_cells).map(" ".join),
    st.lists(video_cells | number_cells, max_size=4).map(" ".join),
)


@FUZZ
@given(
    classlist=mostly(st.just(["7 Run", "9 Jump"]) | st.none(),
                     st.lists(st.sampled_from(["7 Run", "9 Jump", "7 Jump", "x", "", "12 Swim"]), max_size=4)),
    files=st.dictionaries(
        mostly(st.sampled_from(["Run_test", "Jump_test", "Ambiguous_test"]), st.sampled_from(["Swim_val", "x_y"])),
        st.lists(evalkit_line, max_size=4), min_size=1, max_size=4),
)
def test_fuzz_evalkit_directory(classlist, files):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if classlist is not None:
            (d / "detclasslist.txt").write_text("\n".join(classlist))
        for name, lines in files.items():
            (d / f"{name}.txt").write_text("\n".join(lines))
        check(d, format="thumos-evalkit")
        check(d)


bsn_entry = mostly(st.fixed_dictionaries(
    {"duration_second": maybe(st.floats(1, 100)), "annotations": mostly(st.lists(annotation, max_size=3))},
    optional={"duration_frame": maybe(st.integers(0, 99))},
))


@FUZZ
@given(
    entries=mostly(st.dictionaries(st.sampled_from(["v_a", "v_b", "v_c"]), bsn_entry, max_size=3)),
    data=st.data(),
    classes=mostly(st.none() | st.just(["Run", "Jump", "Swim", "Ambiguous"]),
                   st.lists(st.sampled_from(["Run", "Jump", ""]), max_size=3)),
)
def test_fuzz_bsn(entries, data, classes):
    good_row = st.tuples(*(mostly(good, junk_cells, one_in=20) for good in (
        st.integers(1, 9000).map(str), st.floats(1, 300).map(str), st.floats(1, 60).map(str),
        st.sampled_from(["training", "validation"]))))
    videos = list(entries) if isinstance(entries, dict) else []
    info = [(video, *data.draw(good_row)) for video in videos]  # one row per video, as in the real file
    info += data.draw(mostly(st.just([]), st.lists(st.tuples(video_cells, number_cells, number_cells, number_cells,
                                                             junk_cells), max_size=1)))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "anet_anno_action.json").write_text(json.dumps(entries, allow_nan=True))
        rows = [",".join(map(str, [video, frames, seconds, 30, rfps, subset, 1]))
                for video, frames, seconds, rfps, subset in info]
        (d / "video_info_new.csv").write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\n" + "\n".join(rows))
        if classes is not None:
            (d / "action_name.csv").write_text("\n".join(["action"] + classes))
        check(d / "anet_anno_action.json")
        check(d, format="bsn")


# ------------------------------------------------------------------------------------ W-TALC

npy_items = st.recursive(
    st.none() | st.floats(allow_nan=True) | st.integers(-5, 100) | st.binary(max_size=4) | st.text(max_size=4),
    lambda c: st.lists(c, max_size=3), max_leaves=6)
npy_segment = st.lists(st.floats(0, 50), min_size=2, max_size=2).map(sorted)


def object_array(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


@st.composite
def wtalc_video(draw) -> tuple:
    count = draw(st.integers(0, 2))
    segments = draw(mostly(st.lists(npy_segment, min_size=count, max_size=count), npy_items))
    labels = draw(mostly(st.lists(st.sampled_from([b"Run", b"Jump"]), min_size=count, max_size=count),
                         npy_items | st.lists(st.just(b"Fly"), max_size=2)))
    duration = draw(mostly(st.floats(1, 500), st.sampled_from([math.nan, -1.0, 0.0, math.inf])))
    url = draw(mostly(st.sampled_from([b"https://www.youtube.com/watch?v=ab", b"https://www.youtube.com/watch?v=cd",
                                       b"https://www.youtube.com/watch?v=ef"]), st.sampled_from([b"", b"?v=", b"x"])))
    return segments, labels, duration, url


@settings(FUZZ, max_examples=max(1, EXAMPLES // 2))
@given(videos=st.lists(wtalc_video(), max_size=3), drop=st.sampled_from([None, None, None, "url", "labels"]))
def test_fuzz_wtalc(videos, drop):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        n = len(videos)
        np.save(d / "classlist.npy", np.array([b"Run", b"Jump"]))
        np.save(d / "segments.npy", object_array([v[0] for v in videos]), allow_pickle=True)
        np.save(d / "labels.npy", object_array([v[1] for v in videos]), allow_pickle=True)
        np.save(d / "subset.npy", np.array([b"training"] * n))
        np.save(d / "duration.npy", np.array([v[2] for v in videos], dtype=np.float64))
        np.save(d / "url.npy", np.array([v[3] for v in videos] or [b""]))
        np.save(d / "videoname.npy", np.array([f"video_{i}".encode() for i in range(n)]))
        if drop is not None:
            (d / f"{drop}.npy").unlink()
        check(d)
