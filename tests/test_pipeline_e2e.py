"""End to end: `tadkit demo` (synthetic data -> train -> detect -> both protocols -> plots), `tadkit test`,
`tadkit eval` on what test wrote, and `tadkit detect` on one feature file and on one real video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tadkit.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    # Small but learnable: 8 + 8 short videos of easy synthetic data, 20 short epochs (~1.5 min on 2 cores).
    code = main(["demo", "--out", str(out), "--videos", "8", "--epochs", "20", "--max-video-seconds", "120",
                 "--difficulty", "easy", "--no-progress"])
    assert code == 0
    return out


def test_demo_writes_results_report_and_plots(demo_dir: Path):
    report = json.loads((demo_dir / "report.json").read_text())
    assert report["primary_protocol"] == "thumos14"
    thumos, anet = report["protocols"]["thumos14"], report["protocols"]["activitynet"]
    assert thumos["tiou"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert anet["tiou"] == pytest.approx([0.5 + 0.05 * i for i in range(10)])
    for result in (thumos, anet):
        assert all(0.0 <= m <= 1.0 for m in result["mAP"])
        assert result["average_mAP"] == pytest.approx(float(np.mean(result["mAP"])))
    # Looser matching can only find more true positives: mAP is non-increasing in tIoU here.
    assert thumos["mAP"][0] >= thumos["mAP"][-1]
    assert [b["name"] for b in report["per_duration"]["bins"]] == ["ES", "S", "M", "L", "EL"]

    results = json.loads((demo_dir / "results.json").read_text())["results"]
    gt = json.loads((demo_dir / "data" / "annotations.json").read_text())["database"]
    test_videos = {v for v, info in gt.items() if info["subset"] == "test"}
    assert set(results) <= test_videos and len(results) == len(test_videos)
    for vid, rows in results.items():
        assert len(rows) <= 200  # A2Net keeps the top 200 per video
        duration = gt[vid]["duration"]
        assert all(0.0 <= r["segment"][0] <= r["segment"][1] <= duration + 1e-6 for r in rows)
    lines = (demo_dir / "detections_thumos14.txt").read_text().splitlines()
    assert len(lines) == sum(len(rows) for rows in results.values())
    assert {int(line.split()[3]) for line in lines} <= {7, 9, 12, 21, 22, 23, 24, 26, 31, 33, 36, 40, 45, 51, 68,
                                                          79, 85, 92, 93, 97}
    pngs = sorted(demo_dir.glob("*.png"))
    assert {p.name for p in pngs} >= {"per_duration_map.png", "training_curves.png"}
    assert len([p for p in pngs if p.name.startswith("timeline_")]) == 3
    assert all(p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000 for p in pngs)
    history = json.loads((demo_dir / "run_a2net" / "history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == list(range(1, 21))
    assert history[-1]["loss"]["total"] < history[0]["loss"]["total"]  # it learns


def test_trained_model_beats_its_initialisation(demo_dir: Path, tmp_path: Path, capsys):
    """Same pipeline, same data: the demo's trained weights vs the weights it started from."""
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.engine.config import load_config
    from tadkit.models import build_model
    from tadkit.pipeline import run_test

    config = load_config(demo_dir / "run_a2net" / "config.yaml")
    trained, _ = load_checkpoint_model(demo_dir / "run_a2net" / "last.pt")
    torch.manual_seed(config.train.seed)
    untrained = build_model(config.model.name, **config.model.kwargs)
    scores = {}
    for name, model in (("trained", trained), ("untrained", untrained)):
        outputs = run_test(model, config, tmp_path / name, progress=False)
        scores[name] = outputs.report.results["thumos14"].mAP[2]  # tIoU 0.3
    assert scores["trained"] > scores["untrained"] + 0.05, scores


def test_cli_test_matches_cli_eval_on_its_own_outputs(demo_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "test"
    assert main(["test", str(demo_dir / "run_a2net" / "config.yaml"), "--checkpoint", str(demo_dir / "run_a2net" / "last.pt"),
                 "--out", str(out), "--no-progress", "--no-plots"]) == 0
    report = json.loads((out / "report.json").read_text())
    capsys.readouterr()
    gt = demo_dir / "data" / "annotations.json"
    for protocol in ("thumos14", "activitynet"):
        assert main(["eval", "--gt", str(gt), "--pred", str(out / "results.json"), "--protocol", protocol,
                     "--subset", "test", "--format", "json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["mAP"] == pytest.approx(report["protocols"][protocol]["mAP"], abs=1e-9)
    # The THUMOS txt written beside it scores the same under the THUMOS14 protocol.
    assert main(["eval", "--gt", str(gt), "--pred", str(out / "detections_thumos14.txt"), "--protocol", "thumos14",
                 "--subset", "test", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mAP"] == pytest.approx(report["protocols"]["thumos14"]["mAP"], abs=1e-6)


def test_detect_on_a_feature_file_reproduces_test_detections(demo_dir: Path, tmp_path: Path, capsys):
    results = json.loads((demo_dir / "results.json").read_text())["results"]
    video = sorted(results)[0]
    out = tmp_path / "det.json"
    plot = tmp_path / "det.png"
    code = main(["detect", str(demo_dir / "data" / "features" / f"{video}.npy"), "--checkpoint",
                 str(demo_dir / "run_a2net" / "last.pt"), "--feature-fps", "30", "--feature-stride", "4",
                 "--out", str(out), "--plot", str(plot), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "start (s)" in printed and video in printed
    detected = json.loads(out.read_text())["results"][video]
    expected = results[video]
    assert len(detected) == len(expected)
    key = lambda r: (-r["score"], r["segment"][0], r["label"])  # noqa: E731
    for got, want in zip(sorted(detected, key=key), sorted(expected, key=key)):
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)
        assert got["segment"] == pytest.approx(want["segment"], abs=0.05)  # clip to duration may differ slightly
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_detect_feature_file_without_timing_is_a_clear_error(demo_dir: Path, tmp_path: Path, capsys):
    lone = tmp_path / "lone.npy"
    np.save(lone, np.zeros((300, 256), np.float32))
    code = main(["detect", str(lone), "--checkpoint", str(demo_dir / "run_a2net" / "last.pt"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lone.npy" in err[0] and "--feature-fps" in err[0]


def test_detect_rejects_features_of_the_wrong_width(demo_dir: Path, tmp_path: Path, capsys):
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((300, 1024), np.float32))
    code = main(["detect", str(wide), "--checkpoint", str(demo_dir / "run_a2net" / "last.pt"), "--feature-fps", "30",
                 "--feature-stride", "4", "--no-progress"])
    assert code == 2
    assert "256-d" in capsys.readouterr().err


def test_detect_on_a_real_video(tmp_path: Path, shared, monkeypatch, capsys):
    """Raw video -> I3D features -> A2Net -> seconds. I3D weights are random here (their correctness is
    tests/test_i3d_fixture.py's job); this checks the plumbing and the time mapping on a real file."""
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.models.a2net import A2Net, A2NetConfig
    from tadkit.utils.io import torch_save
    from tadkit.video.i3d import I3D, I3DConfig
    import tadkit.video.weights as weights

    video = shared("data", "activitynet", "samples", "v_GGSY1Qvo990.mp4")
    torch.manual_seed(0)
    i3d = I3D(I3DConfig(in_channels=3, num_classes=400)).eval()
    monkeypatch.setattr(weights, "load_i3d", lambda *a, **k: i3d)
    config = A2NetConfig(in_dim=1024, base_dim=32, pyramid_dims=(32, 32, 32, 32, 32, 32), reduce_dim=32,
                         head_dim=32, num_classes=3)
    ckpt = tmp_path / "a2net.pt"
    torch_save({"format": "tadkit-checkpoint/1", "model_name": "a2net", "model_config": config.to_dict(), "model": A2Net(config).state_dict(),
                "classes": ["clean and jerk", "walking the dog", "ballet"]}, ckpt)
    load_checkpoint_model(ckpt)  # a model-only checkpoint loads
    out = tmp_path / "v.json"
    feats = tmp_path / "feats"
    assert main(["detect", str(video), "--checkpoint", str(ckpt), "--stack", "16", "--step", "16", "--out", str(out),
                 "--features-out", str(feats), "--no-progress"]) == 0
    meta = json.loads((feats / "v_GGSY1Qvo990.json").read_text())
    features = np.load(feats / "v_GGSY1Qvo990.npy")
    assert features.shape == (355 // 16, 1024)  # full 16-frame stacks of 355 frames
    assert meta["timestamps"][1] == pytest.approx(16 / meta["fps"], rel=1e-6)
    rows = json.loads(out.read_text())["results"]["v_GGSY1Qvo990"]
    assert rows and {r["label"] for r in rows} <= {"clean and jerk", "walking the dog", "ballet"}
    duration = 355 / meta["fps"]
    assert all(0.0 <= r["segment"][0] <= r["segment"][1] <= duration + 1e-6 for r in rows)
    # 128-feature windows cover the whole 22-feature video: some detection reaches past its middle.
    assert max(r["segment"][1] for r in rows) > duration / 2


def test_empty_result_names_the_step_that_removed_the_last_candidates():
    from tadkit.engine.config import Config
    from tadkit.pipeline import explain_no_detections

    config = Config.from_dict({"model": {"name": "a2net"}})
    trace = [("decoding (windows -> seconds)", 1200), ("test.drop_reversed (end < start)", 0), ("test.nms", 0)]
    text = explain_no_detections(trace, [object()] * 4, config)
    assert text.startswith("no detections: test.drop_reversed (end < start) removed all 1200 candidates")
    assert "not learned the boundaries" in text
    assert explain_no_detections([("decoding (windows -> seconds)", 3), ("test.nms", 2)], [], config) == ""


def test_times_clipped_at_the_video_end_still_warn_about_their_unit():
    """CAS -> seconds clips segments to the video, which hides them from the evaluator's
    frames-vs-seconds check; the pipeline counts them before clipping and warns the same way."""
    import types

    from tadkit.data.records import AnnotationSet, VideoAnnotation
    from tadkit.engine.config import Config
    from tadkit.pipeline import PostprocessLog, _localize_all, clipped_time_warning

    assert clipped_time_warning(10, 100) == [] and clipped_time_warning(0, 0) == []
    (text,) = clipped_time_warning(30, 100)
    assert text.startswith("30 of 100 segments (30%) started after the end of their video")

    def stretched(activation, meta, options):  # a localizer whose seconds are 4x too long
        return np.array([[8.0, 12.0], [30.0, 50.0], [1.0, 2.0]]), np.ones(3), np.zeros(3, int)

    spec = types.SimpleNamespace(localizer=lambda: stretched)
    gt = AnnotationSet({"v": VideoAnnotation("v", "test", duration=10.0)}, ["a"])
    predictions = [types.SimpleNamespace(detections=None, meta={"video_id": "v"}, video_id="v")]
    log = PostprocessLog()
    dets = _localize_all(spec, predictions, gt, Config.from_dict({"model": {"name": "ecm"}}), {"v": 10.0}, log)
    assert dets.end.max() == 10.0  # clipped ...
    assert len(log.notes) == 1 and log.notes[0].startswith("1 of 3 segments")  # ... but not silently
