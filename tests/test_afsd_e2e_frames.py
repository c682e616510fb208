"""End-to-end AFSD from pixels through the CLI: synth --video -> data frames -> train afsd_e2e -> test ->
detect on one mp4.

A tiny model (narrow I3D from scratch, 32-frame clips) trains for a few epochs on 3 synthetic videos; the
test checks the whole frames path: the loss (triplet included) falls, the run directory holds the frame
model, `tadkit test` scores every video, and `tadkit detect video.mp4 --checkpoint` — which decodes the
video itself — gives the same detections for that video as `tadkit test` (same clips, decoding, NMS).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tadkit.cli import main

OVERRIDES_TINY = [
    "--set", "data.window=32",
    "--set", "data.stride_train=8",
    "--set", "data.stride_test=16",
    "--set", "data.crop_size=48",
    "--set", "data.subset_test=validation",  # test on the training videos
    "--set", "model.kwargs.clip_length=32",
    "--set", "model.kwargs.crop_size=48",
    "--set", "model.kwargs.width=32",
    "--set", "model.kwargs.gn_groups=8",
    "--set", "model.kwargs.backbone_width=0.125",
    "--set", "model.kwargs.num_classes=2",
    "--set", "train.epochs=4",
    "--set", "train.lr_decay_epochs=[3]",
    "--set", "train.batch_size=4",
    "--set", "train.tensorboard=false",
    "--set", "test.batch_size=4",
]


@pytest.fixture(scope="module")
def e2e_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("afsd_frames")
    data = root / "synth"
    assert main(["data", "synth", "--video", "--out", str(data), "--seed", "1", "--videos", "3",
                 "--subset", "validation", "--video-classes", "2", "--video-duration", "12"]) == 0
    frames = root / "frames"
    assert main(["data", "frames", str(data / "videos"), "--out", str(frames), "--size", "64"]) == 0
    overrides = ["--set", f"data.annotations={data / 'annotations.json'}", "--set", f"data.frames={frames}",
                 *OVERRIDES_TINY]
    run = root / "run"
    assert main(["train", "afsd/synthetic_frames", *overrides, "--out", str(run), "--no-progress"]) == 0
    test = root / "test"
    assert main(["test", "afsd/synthetic_frames", *overrides, "--checkpoint", str(run / "last.pt"),
                 "--out", str(test), "--no-progress"]) == 0
    video = sorted((data / "videos").glob("*.mp4"))[0]
    detect_out = root / "detect.json"
    assert main(["detect", str(video), "--checkpoint", str(run / "last.pt"), "--out", str(detect_out),
                 "--no-progress"]) == 0
    return {
        "history": json.loads((run / "history.json").read_text()),
        "config": (run / "config.yaml").read_text(),
        "results": json.loads((test / "results.json").read_text())["results"],
        "report": json.loads((test / "report.json").read_text()),
        "annotations": json.loads((data / "annotations.json").read_text()),
        "detect": json.loads(detect_out.read_text())["results"],
        "video": video.stem,
    }


def test_frames_training_runs_with_the_contrastive_term(e2e_run: dict) -> None:
    epochs = e2e_run["history"]["epochs"]
    assert len(epochs) == 4 and "afsd_e2e" in e2e_run["config"]
    totals = [e["loss"]["total"] for e in epochs]
    assert all(np.isfinite(totals)) and totals[-1] < totals[0], totals
    assert all("triplet" in e["loss"] and e["loss"]["triplet"] > 0 for e in epochs)


def test_frames_test_scores_every_video_in_seconds(e2e_run: dict) -> None:
    database = e2e_run["annotations"]["database"]
    classes = {a["label"] for v in database.values() for a in v["annotations"]}
    assert set(e2e_run["results"]) == set(database)
    for video_id, detections in e2e_run["results"].items():
        duration = database[video_id]["duration"]
        assert detections, video_id
        for det in detections:
            start, end = det["segment"]
            assert 0.0 <= start <= end <= duration + 1e-6  # clips -> seconds, clipped to the video
            assert det["label"] in classes
    assert "activitynet" in json.dumps(e2e_run["report"])


def test_detect_on_the_mp4_equals_test_for_that_video(e2e_run: dict) -> None:
    """`tadkit detect` decodes the mp4 itself: same frames, clips and NMS as the stored frames."""
    ours = e2e_run["detect"][e2e_run["video"]]
    theirs = e2e_run["results"][e2e_run["video"]]
    assert len(ours) == len(theirs) > 0
    key = lambda d: (-d["score"], d["segment"][0], d["label"])  # noqa: E731
    for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key)):
        assert a["label"] == b["label"]
        np.testing.assert_allclose(a["segment"], b["segment"], atol=1e-3)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_demo_frames_renders_decodes_trains_and_reports(tmp_path) -> None:
    """`tadkit demo --method afsd --frames` (shortened): videos -> frames -> afsd_e2e -> report; a re-run
    reuses videos, frames and the finished training."""
    out = tmp_path / "demo"
    args = ["demo", "--method", "afsd", "--frames", "--videos", "2", "--epochs", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    frames = json.loads((out / "video_data" / "frames" / "frames.json").read_text())
    assert len(frames["videos"]) == 4 and frames["size"] == [64, 64]
    history = json.loads((out / "run_afsd_frames" / "history.json").read_text())
    assert len(history["epochs"]) == 1 and "afsd_e2e" in (out / "run_afsd_frames" / "config.yaml").read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["num_detections"] > 0
    mtime = (out / "run_afsd_frames" / "last.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "run_afsd_frames" / "last.pt").stat().st_mtime_ns == mtime  # nothing retrained


def test_demo_frames_is_for_afsd_only(tmp_path, capsys) -> None:
    assert main(["demo", "--method", "a2net", "--frames", "--out", str(tmp_path / "d")]) == 2
    assert "--frames is for afsd" in capsys.readouterr().err
