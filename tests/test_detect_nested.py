"""Issue 18 point 11: `tadkit detect` says what nested same-class segments are (and can drop them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tadkit.cli import main
from tadkit.data.records import DetectionSet
from tadkit.postprocess.merge import enclosing_detection
from test_detect_zeroshot import kinetics_head, random_i3d  # noqa: F401  (fixture)


def dets(rows) -> DetectionSet:
    video, start, end, label, score = zip(*rows)
    return DetectionSet(np.array(video, dtype=object), np.array(start, float), np.array(end, float),
                        np.array(label, dtype=object), np.array(score, float))


def test_enclosing_detection_finds_the_best_same_class_container():
    # the example: 0-17.94, 6.52-13.86, 0-3.26, 0.82-1.63 of one class, by score
    d = dets([("v", 0.0, 17.94, "a", 0.9), ("v", 6.52, 13.86, "a", 0.8), ("v", 0.0, 3.26, "a", 0.7),
              ("v", 0.82, 1.63, "a", 0.6), ("v", 1.0, 2.0, "b", 0.95),  # other class: never nested in "a"
              ("w", 1.0, 2.0, "a", 0.5),  # other video
              ("v", 5.0, 30.0, "a", 0.3)])  # contains others but scores lower: not their container
    assert enclosing_detection(d).tolist() == [-1, 0, 0, 0, -1, -1, -1]
    # equal scores: the earlier row contains the later one, never both ways
    assert enclosing_detection(dets([("v", 0.0, 5.0, "a", 0.5), ("v", 0.0, 5.0, "a", 0.5)])).tolist() == [-1, 0]
    assert enclosing_detection(DetectionSet.empty()).tolist() == []


def _graded_feature_file(model, tmp_path: Path) -> Path:
    """RGB I3D features whose Kinetics logits make "walking the dog" (378) rise in three nested steps, so
    the multi-threshold CAS recipe proposes nested runs of one class."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 0.3, size=(24, 400))
    logits[2:22, 378] += 5.0
    logits[6:18, 378] += 2.0
    logits[9:13, 378] += 3.0
    weight, bias = kinetics_head(model)
    features = np.linalg.lstsq(weight, (logits - bias).T, rcond=None)[0].T.astype(np.float32)
    path = tmp_path / "graded.npy"
    np.save(path, features)
    path.with_suffix(".json").write_text(json.dumps({
        "fps": 10.0, "step": 10, "stack": 10, "streams": ["rgb"], "timestamps": [float(k) for k in range(24)],
        "clip_seconds": 1.0, "duration": 24.0}))
    return path


def test_detect_marks_nested_segments_and_explains_them(random_i3d, tmp_path, capsys):  # noqa: F811
    feats = _graded_feature_file(random_i3d, tmp_path)
    out = tmp_path / "all.json"
    assert main(["detect", str(feats), "--out", str(out), "--no-progress", "--set", "smooth=1"]) == 0
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit() and "walking" in line]
    assert len(rows) >= 2
    assert rows[0][-1] != "#1" and not printed.splitlines()[0].startswith("   1")
    nested = [r for r in rows if r[-2] == "in"]
    assert nested and any(r[-1] == "#1" for r in nested)
    for r in nested:  # what the mark claims is true of the printed rows
        container = rows[int(r[-1][1:]) - 1]
        assert float(container[1]) <= float(r[1]) and float(r[2]) <= float(container[2])
        assert container[3:6] == r[3:6] and float(container[6]) >= float(r[6])
    assert "lie inside the higher-scoring segment #k of the same class" in printed
    assert "one extent per activation threshold (cas.thresholds)" in printed
    kept = json.loads(out.read_text())["results"]["graded"]
    assert len(kept) == len(rows)  # the JSON keeps every extent by default (what the protocols score)

    out_drop = tmp_path / "outer.json"
    assert main(["detect", str(feats), "--out", str(out_drop), "--no-progress", "--set", "smooth=1",
                 "--drop-nested"]) == 0
    printed = capsys.readouterr().out
    assert f"--drop-nested: {len(nested)} segment(s)" in printed and "lie inside" not in printed
    outer = json.loads(out_drop.read_text())["results"]["graded"]
    assert len(outer) == len(kept) - len(nested)
    d = dets([("graded", *r["segment"], r["label"], r["score"]) for r in outer])
    assert (enclosing_detection(d) < 0).all()
