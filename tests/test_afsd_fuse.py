"""`tadkit detect VIDEO --checkpoint RGB.pt --fuse FLOW.pt`: the authors' RGB and flow end-to-end AFSD models
fused on a new video, through the CLI.

The two checkpoints are official-layout ``BDNet`` state dicts (random tensors, head width 64, quarter-width
I3D; :func:`test_afsd_official_e2e.official_bdnet`) converted with `tadkit convert afsd-official`; the video
is a 30 s `tadkit data synth --video` clip (moving shapes, so the flow is not zero). The expected
detections are computed here from the two single-stream outputs with the official fusion
(``AFSD/thumos14/test.py``, ``fusion``): the RGB model on RGB clips and the flow model on flow clips
(same offsets, centre crop 96, ``/ 255 * 2 - 1``, zero padding), ``loc``, ``prop_loc``, ``conf``,
``prop_conf`` and ``center`` averaged as raw outputs, then decoded once (softmax, refinement, soft-NMS:
:func:`tadkit.methods.afsd.inference.detect_video`, the official loop).

OpenCV's TV-L1 takes about 1 s per 112 x 112 frame pair on this CPU (300 pairs here, twice), so this module
swaps it for OpenCV's Farneback flow (deterministic, ~50 ms): the fusion is what is checked. Real TV-L1
through the same frame writer is `tests/test_video_frames.py::test_real_tvl1_flow`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_afsd_official_e2e import official_bdnet

from tadkit.cli import main
from tadkit.video.flow import tvl1_available

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not tvl1_available(), reason="TV-L1 flow needs OpenCV's contrib build: pip install 'tadkit[flow]'"),
]

@pytest.fixture(scope="module", autouse=True)
def fast_flow():
    import cv2

    def farneback(gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(gray0, gray1, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tadkit.video.flow.make_tvl1", lambda: farneback)
        yield


RAW_KEYS = ("loc", "prop_loc", "conf", "prop_conf", "center")  # what the official fusion averages
SECTION = "The authors' AFSD models, RGB and flow fused"
DOC_COMMANDS = [
    "tadkit convert afsd-official checkpoint_rgb.ckpt afsd_rgb.pt",
    "tadkit convert afsd-official checkpoint_flow.ckpt afsd_flow.pt",
    "tadkit detect my_video.mp4 --checkpoint afsd_rgb.pt --fuse afsd_flow.pt --out fused.json",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The user's files of the docs section: the authors' two checkpoints and a video."""
    root = tmp_path_factory.mktemp("afsd_fuse")
    data = root / "synth"
    assert main(["data", "synth", "--video", "--out", str(data), "--seed", "3", "--videos", "1", "--subset", "test",
                 "--video-duration", "30", "--video-size", "112"]) == 0
    sorted((data / "videos").glob("*.mp4"))[0].rename(root / "my_video.mp4")
    # the release's format: train.py's save_model writes model.module.state_dict(), a bare state dict
    torch.save(official_bdnet(in_channels=3, seed=0), root / "checkpoint_rgb.ckpt")
    torch.save(official_bdnet(in_channels=2, seed=1), root / "checkpoint_flow.ckpt")
    return root


@pytest.fixture(scope="module")
def converted(workspace: Path) -> Path:
    """The docs' commands, run as written in the workspace (what they print: ``printed.txt`` there)."""
    import contextlib
    import io
    import os

    from doc_blocks import section_commands, tadkit_argv

    commands = section_commands("new-video.md", SECTION)
    assert commands == DOC_COMMANDS
    here, printed = os.getcwd(), io.StringIO()
    os.chdir(workspace)
    try:
        with contextlib.redirect_stdout(printed):
            for command in commands:
                assert main(tadkit_argv(command)) == 0, command
    finally:
        os.chdir(here)
    (workspace / "printed.txt").write_text(printed.getvalue())
    return workspace


def frame_store(root: Path) -> Path:
    """`tadkit data frames my_video.mp4 --flow` (RGB + flow frames as the official npy files), once."""
    frames = root / "frames"
    if not (frames / "frames.json").exists():
        assert main(["data", "frames", str(root / "my_video.mp4"), "--out", str(frames), "--flow"]) == 0
    return frames


def official_fusion_detections(root: Path, streams: tuple[str, ...] = ("rgb", "flow")) -> list[tuple[str, float, float, float]]:
    """The official fused test of ``my_video`` from its RGB and flow frames (`tadkit data frames --flow`):
    (label, start s, end s, score) in the official output order. ``streams=("rgb",)``: the RGB model alone."""
    from tadkit.data.frames import clip_offsets
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.methods.afsd.inference import detect_video

    frames = frame_store(root)
    rgb_model, config = load_checkpoint_model(root / "afsd_rgb.pt")
    flow_model, _ = load_checkpoint_model(root / "afsd_flow.pt")
    classes = torch.load(root / "afsd_rgb.pt", weights_only=True)["classes"]
    fps = json.loads((frames / "frames.json").read_text())["fps"]
    rgb_frames = np.load(frames / "rgb" / "my_video.npy")
    flow_frames = np.load(frames / "flow" / "my_video.npy")
    length, crop = config.data.window, config.data.crop_size
    offsets = clip_offsets(len(rgb_frames), length, config.data.stride_test)

    def clip(array: np.ndarray, offset: int) -> torch.Tensor:  # centre crop, /255*2-1, zero padding
        top, left = (array.shape[1] - crop) // 2, (array.shape[2] - crop) // 2
        part = torch.from_numpy(np.ascontiguousarray(array[offset:offset + length, top:top + crop, left:left + crop]))
        x = part.permute(3, 0, 1, 2).float() / 255.0 * 2.0 - 1.0
        pad = torch.zeros(x.shape[0], length - x.shape[1], crop, crop)
        return torch.cat([x, pad], dim=1)[None]

    fused, priors = [], None
    with torch.no_grad():
        for offset in offsets:
            rgb = rgb_model({"clip": clip(rgb_frames, offset)})
            flow = flow_model({"clip": clip(flow_frames, offset)})
            if streams == ("rgb",):
                fused.append({key: rgb[key] for key in RAW_KEYS})
            else:
                fused.append({key: (rgb[key] + flow[key]) / 2.0 for key in RAW_KEYS})
            priors = flow["priors"][0]
    result = detect_video(fused, offsets, fps, priors, length, len(classes), conf_thresh=rgb_model.config.conf_thresh,
                          sigma=0.5, top_k=5000)
    assert config.test.nms == {"preset": "afsd"}  # what detect applies: the official soft-NMS, sigma 0.5, top_k 5000
    return [(classes[int(c) - 1], float(s[0]), float(s[1]), float(p))
            for s, p, c in zip(result.segments, result.scores, result.classes)]


def _rows(path: Path) -> list[tuple[str, float, float, float]]:
    detections = json.loads(path.read_text())["results"]["my_video"]
    return [(d["label"], d["segment"][0], d["segment"][1], d["score"]) for d in detections]


def _by_class_then_start(rows):
    return sorted(rows, key=lambda r: (r[0], round(r[1], 4), round(r[2], 4), -r[3]))


def test_fused_detections_are_the_official_fusion_of_the_two_streams(converted: Path) -> None:
    """detect --fuse == the official formula computed here from the RGB and flow models' own outputs."""
    expected = official_fusion_detections(converted)
    got = _rows(converted / "fused.json")
    assert len(expected) > 100 and len(got) == len(expected)
    for (label, start, end, score), (x_label, x_start, x_end, x_score) in zip(_by_class_then_start(got),
                                                                           _by_class_then_start(expected)):
        assert label == x_label
        np.testing.assert_allclose([start, end, score], [x_start, x_end, x_score], rtol=1e-5, atol=1e-6)
    printed = (converted / "printed.txt").read_text()
    assert "frames: 289 at 10 fps, 112x112 (rgb+flow)" in printed and "my_video: " in printed
    # the flow model counted: the RGB model alone gives other scores
    rgb_only = official_fusion_detections(converted, streams=("rgb",))
    assert abs(max(r[3] for r in rgb_only) - max(r[3] for r in got)) > 1e-4


def _detect(root: Path, *argv: str) -> int:
    return main(["detect", str(root / "my_video.mp4"), *argv, "--out", str(root / "refused.json"), "--no-progress"])


def _edited_checkpoint(source: Path, out: Path, edit) -> Path:
    data = torch.load(source, weights_only=True)
    edit(data)
    torch.save(data, out)
    return out


@pytest.mark.parametrize("case", ["swapped", "two_rgb", "classes", "class_order", "frame_fps", "crop", "no_checkpoint"])
def test_pairs_the_official_fusion_would_not_run_are_refused(converted: Path, case: str, capsys) -> None:
    rgb, flow = converted / "afsd_rgb.pt", converted / "afsd_flow.pt"
    tmp = converted / f"edited_{case}.pt"

    def classes(data):
        data["classes"] = [*data["classes"][:-1], "Juggling"]

    def class_order(data):
        data["classes"] = [data["classes"][1], data["classes"][0], *data["classes"][2:]]

    def frame_fps(data):
        data["config"]["data"]["frame_fps"] = 15.0

    def crop(data):
        data["config"]["data"]["crop_size"] = 80

    edits = {"classes": classes, "class_order": class_order, "frame_fps": frame_fps, "crop": crop}
    if case in edits:  # the flow checkpoint with one thing changed
        argv, named = ("--checkpoint", str(rgb), "--fuse", str(_edited_checkpoint(flow, tmp, edits[case]))), tmp
    else:
        argv, named = {"swapped": (("--checkpoint", str(flow), "--fuse", str(rgb)), flow),
                       "two_rgb": (("--checkpoint", str(rgb), "--fuse", str(rgb)), rgb),
                       "no_checkpoint": (("--fuse", str(flow)), None)}[case]
    message = {
        "swapped": "is a flow model; pass the RGB checkpoint as --checkpoint and the flow one as --fuse",
        "two_rgb": "is an RGB model; --fuse takes the flow checkpoint",
        "classes": "the class sets differ: 20 classes (BaseballPitch, BasketballDunk, Billiards, ...), --checkpoint has",
        "class_order": "class 0 is 'BaseballPitch' vs 'BasketballDunk'",
        "frame_fps": "data.frame_fps 15.0 (--checkpoint: 10.0)",
        "crop": "data.crop_size 80 (--checkpoint: 96)",
        "no_checkpoint": "--fuse needs --checkpoint",
    }[case]
    capsys.readouterr()
    assert _detect(converted, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and (named is None or f"file {named}" in err)
    assert "frames:" not in err and not (converted / "refused.json").exists()  # refused before decoding


def test_a_feature_checkpoint_is_refused(converted: Path, capsys) -> None:
    """--fuse fuses end-to-end models; a head-only (feature / I3D-tap) AFSD checkpoint is named."""
    from test_afsd_official_e2e import official_head

    head = converted / "head_only.ckpt"
    torch.save(official_head(832 // 4, 1024 // 4), head)
    assert main(["convert", "afsd-official", str(head), str(converted / "head_only.pt")]) == 0
    capsys.readouterr()
    assert _detect(converted, "--checkpoint", str(converted / "head_only.pt"), "--fuse",
                   str(converted / "afsd_flow.pt")) == 2
    err = capsys.readouterr().err
    assert "reads features; --fuse fuses two end-to-end (frame) checkpoints" in err


def _test_fused(root: Path, out: str, *extra: str) -> int:
    """`tadkit test afsd/thumos14_frames --checkpoint RGB --fuse FLOW` on the frame store of ``my_video``
    (one GT so the evaluation has something to score; batch 1 as detect)."""
    from tadkit.data.formats.activitynet import write_tadkit_json
    from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation

    frames = frame_store(root)
    duration = json.loads((frames / "frames.json").read_text())["videos"]["my_video"]["duration"]
    classes = torch.load(root / "afsd_rgb.pt", weights_only=True)["classes"]
    video = VideoAnnotation("my_video", "test", duration, 10.0, [Segment(3.0, 8.0, "BaseballPitch")])
    write_tadkit_json(AnnotationSet({"my_video": video}, list(classes)), root / "annotations.json")
    return main(["test", "afsd/thumos14_frames", "--checkpoint", str(root / "afsd_rgb.pt"), "--fuse",
                 str(root / "afsd_flow.pt"), "--set", f"data.annotations={root / 'annotations.json'}", "--set",
                 f"data.frames={frames}", "--set", "test.batch_size=1", *extra, "--out", str(root / out),
                 "--no-plots", "--no-html", "--no-progress"])


def test_tadkit_test_fuses_the_pair_on_frames_as_detect_does(converted: Path) -> None:
    """The official evaluation of the fusion reads stored RGB and flow frames with both checkpoints:
    `tadkit test --fuse` on a frame store gives detect --fuse's detections (data.stream and
    test.fuse_streams follow from the pair)."""
    assert _test_fused(converted, "test_fused") == 0
    got = _by_class_then_start(_rows(converted / "test_fused" / "results.json"))
    expected = _by_class_then_start(_rows(converted / "fused.json"))
    assert len(got) == len(expected) > 100
    assert [r[0] for r in got] == [r[0] for r in expected]
    np.testing.assert_allclose([r[1:] for r in got], [r[1:] for r in expected], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (("--set", "test.fuse_streams=[[0,3],[0,2]]"), "an RGB + flow frame pair reads channels [[0, 3], [3, 5]]"),
    (("--fuse", "afsd_flow.pt"), "2 checkpoints to fuse; end-to-end models fuse as one RGB"),
])
def test_tadkit_test_refuses_other_frame_fusions(converted: Path, extra, message, capsys) -> None:
    extra = tuple(str(converted / a) if a.endswith(".pt") else a for a in extra)
    capsys.readouterr()
    assert _test_fused(converted, "test_refused", *extra) == 2
    assert message in capsys.readouterr().err and not (converted / "test_refused" / "results.json").exists()
