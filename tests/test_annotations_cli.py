"""`tadkit data convert|stats` through tadkit.cli.main, and the statistics they print."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from tadkit.cli import build_parser, main
from tadkit.data.annotations import (
    A2NET_DURATION_BINS,
    LOG_EDGES,
    annotation_stats,
    bin_durations,
    format_stats,
    load_annotations,
)
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------ convert


@pytest.mark.shared
def test_convert_evalkit_round_trip(tmp_path, capsys):
    kit = shared_path("data", "thumos14", "evalkit")
    out = tmp_path / "thumos.json"
    code, stdout, _ = run(capsys, "data", "convert", str(kit), "--out", str(out), "--subset", "test")
    assert code == 0 and "213 videos, 3358 instances, 99 ambiguous, 20 classes" in stdout
    original = load_annotations(kit, subset="test")
    back = load_annotations(out)
    assert back.format == "activitynet" and back.videos == original.videos
    assert (back.classes, back.external_ids) == (original.classes, original.external_ids)


@pytest.mark.shared
def test_convert_afsd_csv_keeps_video_info(tmp_path, capsys):
    src = shared_path("data", "thumos14", "afsd", "val_Annotation.csv")
    out = tmp_path / "val.json"
    assert run(capsys, "data", "convert", str(src), "--out", str(out), "--indent", "1")[0] == 0
    entry = json.loads(out.read_text())["database"]["video_validation_0000051"]
    assert (entry["fps"], entry["num_frames"]) == (30.0, 5091)
    assert entry["duration"] == pytest.approx(5091 / 30)


def test_convert_zero_length_flag(tmp_path, capsys):
    src = tmp_path / "gt.json"
    src.write_text(json.dumps({"database": {"a": {"subset": "s", "annotations": [
        {"segment": [1, 1], "label": "x"}, {"segment": [1, 2], "label": "x"}]}}}))
    out = tmp_path / "o.json"
    assert run(capsys, "data", "convert", str(src), "--out", str(out), "--zero-length", "drop")[0] == 0
    assert len(json.loads(out.read_text())["database"]["a"]["annotations"]) == 1
    code, _, err = run(capsys, "data", "convert", str(src), "--out", str(out), "--zero-length", "error")
    assert code == 2 and "zero-length" in err


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "content, extra, expected",
    [
        (None, [], "no such file"),
        ('{"database": {"a": ', [], "malformed JSON"),
        ('{"database": {"a": {"subset": "s", "annotations": [{"segment": [3, 1], "label": "x"}]}}}', [],
         "video a, field annotations[0].segment: reversed"),
        ('{"database": {"a": {"subset": "s", "annotations": []}}}', ["--subset", "test"], "no subset 'test'"),
        ('{"database": {"a\\nb": 5}}', [], "video a\\nb"),  # ids from files are escaped: still one line
    ],
)
@pytest.mark.parametrize("command", ["stats", "convert"])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, content, extra, expected, command):
    src = tmp_path / "gt.json"
    if content is not None:
        src.write_text(content)
    argv = ["data", command, str(src), *extra] + (["--out", str(tmp_path / "o.json")] if command == "convert" else [])
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith(f"tadkit data: error: file {src}")
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()


def test_data_without_subcommand_returns_2(capsys):
    assert main(["data"]) == 2
    assert "convert" in capsys.readouterr().err


def test_cli_works_without_synthetic_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "tadkit.data.synthetic", None)  # import now raises ImportError
    args = build_parser().parse_args(["data", "stats", "x.json", "--json"])
    assert args.json and args.input == "x.json"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "synth"])


# ------------------------------------------------------------------------------------ stats


def evalkit_rows(kit: Path, subset: str) -> list[tuple[str, str, float, float]]:
    """Independent plain-Python reading of evalkit files: (class, video, start, end)."""
    rows = []
    for path in sorted(kit.glob(f"*_{subset}.txt")):
        cls = path.name[: -len(f"_{subset}.txt")]
        for line in path.read_text().splitlines():
            if line.strip():
                video, start, end = line.split()
                rows.append((cls, video, float(start), float(end)))
    return rows


def a2net_bin(duration: float) -> str:
    # Written out by hand from A2Net Table I, to check the vectorized searchsorted version.
    if duration < 1.5:
        return "ES"
    if duration < 2.5:
        return "S"
    if duration < 4.2:
        return "M"
    if duration < 6.9:
        return "L"
    return "EL"


@pytest.mark.shared
def test_stats_json_matches_independent_counts(capsys):
    kit = shared_path("data", "thumos14", "evalkit")
    code, stdout, _ = run(capsys, "data", "stats", str(kit), "--json")
    assert code == 0
    stats = json.loads(stdout)
    by_name = {s["name"]: s for s in stats["subsets"]}
    for subset, ambiguous in (("test", 99), ("val", 89)):
        rows = evalkit_rows(kit / subset, subset)
        actions = [r for r in rows if r[0] != "Ambiguous"]
        s = by_name[subset]
        assert (s["instances"], s["ambiguous"]) == (len(actions), ambiguous)
        assert s["videos"] == len({r[1] for r in rows})
        expected_bins = Counter(a2net_bin(round(e - st, 6)) for _, _, st, e in actions)
        assert s["a2net_bins"] == {b.name: expected_bins[b.name] for b in A2NET_DURATION_BINS}
        assert sum(s["log_histogram"]) == len(actions)
        assert s["median_instance_s"] == pytest.approx(float(np.median([e - st for _, _, st, e in actions])))
        per_class = Counter(r[0] for r in actions)
        assert {c["name"]: c["instances"][subset] for c in stats["classes"]} == {
            name: per_class[name] for name in (c["name"] for c in stats["classes"])}
    assert {c["name"]: c["external_id"] for c in stats["classes"]}["VolleyballSpiking"] == 97


@pytest.mark.shared
def test_stats_table_output(capsys):
    path = shared_path("data", "thumos14", "afsd", "test_Annotation.csv")
    code, stdout, _ = run(capsys, "data", "stats", str(path))
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].endswith("20 classes, 213 videos, 3358 instances")
    subset_row = next(line for line in lines if line.startswith("test "))
    assert subset_row.split()[1:5] == ["213", "212", "3358", "99"]
    assert any(line.startswith("BaseballPitch") and line.split()[1] == "7" for line in lines)


def test_bins_edges_and_float_noise():
    durations = np.array([0.0, 0.1, 1.4999, 1.5, 2.5, 4.2, 6.8999, 6.9, 1000.0])
    edges = [b.low for b in A2NET_DURATION_BINS] + [math.inf]
    assert bin_durations(durations, edges).tolist() == [2, 1, 1, 2, 2]  # 0.0 is in no bin
    # 54.3 - 52.8 = 1.4999999999999964 in floating point; the annotation means 1.5 s.
    aset = AnnotationSet(videos={"v": VideoAnnotation("v", "s", segments=[Segment(52.8, 54.3, "a"),
                                                                          Segment(3.0, 3.0, "a")])}, classes=["a"])
    stats = annotation_stats(aset)
    assert stats.subsets[0].a2net_bins == {"ES": 0, "S": 1, "M": 0, "L": 0, "EL": 0}
    assert stats.subsets[0].zero_length == 1 and sum(stats.subsets[0].log_histogram) == 1
    assert len(stats.subsets[0].log_histogram) == len(LOG_EDGES) - 1


def test_stats_small_set_by_hand():
    videos = {
        "a": VideoAnnotation("a", "train", duration=10.0, segments=[Segment(0, 2, "x"), Segment(9, 11, "y")]),
        "b": VideoAnnotation("b", "train", segments=[Segment(1, 8, "x")], ambiguous=[(0, 1)]),
        "c": VideoAnnotation("c", "test", duration=5.0),
    }
    stats = annotation_stats(AnnotationSet(videos=videos, classes=["x", "y", "z"], external_ids={"x": 4}))
    train, test = stats.subsets
    assert (train.videos, train.videos_with_instances, train.instances, train.ambiguous) == (2, 2, 3, 1)
    assert (train.past_video_end, train.videos_with_duration, train.classes_present) == (1, 1, 2)
    assert train.video_hours == pytest.approx(10 / 3600)
    assert (test.videos, test.instances, math.isnan(test.mean_instance_s)) == (1, 0, True)
    x, y, z = stats.classes
    assert (x.instances, x.videos, x.mean_duration_s, x.external_id) == ({"train": 2, "test": 0}, 2, 4.5, 4)
    assert (y.videos, z.videos, math.isnan(z.mean_duration_s)) == (1, 0, True)
    assert json.loads(json.dumps(stats.to_dict()))["subsets"][1]["mean_instance_s"] is None  # strict JSON
    table = [line.split() for line in format_stats(stats).splitlines()]
    assert ["x", "4", "2", "0", "2", "4.50"] in table and ["z", "-", "0", "0", "0", "-"] in table


def test_stats_on_a_synth_output_folder_reads_its_annotations(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--videos", "3", "--dim", "8", "--seed", "1"]) == 0
    capsys.readouterr()
    code, folder_out, _ = run(capsys, "data", "stats", str(out), "--json")
    assert code == 0
    _, file_out, _ = run(capsys, "data", "stats", str(out / "annotations.json"), "--json")
    assert json.loads(folder_out) == json.loads(file_out)
    assert sum(s["videos"] for s in json.loads(folder_out)["subsets"]) == 6  # 3 per subset
