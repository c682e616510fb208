"""`tadkit extract --preset`: each release's frame sampling and time mapping against a literal re-statement
of its script, on a synthetic video whose frames carry their own index.

Re-stated here (in our words) from the sources cited in tadkit/video/presets.py:

* chunking, CMCS ``extract_features.py`` / ACRNet ``extract.py`` ``run()``: with ``frame_cnt`` images, the last
  chunk starts at ``((frame_cnt - 16) // frequency) * frequency``; chunk i = frames ``i*frequency .. +15``;
* frame counts: TSN's extractor (A2Net README) discards the last frame, so RGB images = flow images =
  decoded frames - 1; tadkit's two-stream window (16 frames + 1 for the last flow field) gives the same chunks;
* seconds: A2Net ``construct_feature_thumos.py`` (``start_idx = begin_frame / sample_interval``: feature k is
  frame 4k), ActionFormer ``libs/datasets/thumos14.py`` (``segments * fps / feat_stride - feat_offset``,
  ``feat_offset = 0.5 * num_frames / feat_stride``), ACRNet / CMCS (chunk k starts at frame 16k at 25 fps).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from tadkit.cli import main
from tadkit.data.features import FeatureStore
from tadkit.errors import TadkitError
from tadkit.video.extract import extract_video
from tadkit.video.presets import PRESETS, apply_to_args, get_preset

BASE, STEP, PER_CHANNEL = 12, 8, 30  # frame i: red level BASE + STEP * (i % 30), green for i // 30


def write_indexed_video(path: Path, num_frames: int, fps: float) -> Path:
    """Flat frames whose red and green levels spell the frame index (lossless x264: levels within +-2)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(num_frames):
            image = np.full((48, 64, 3), 128, dtype=np.uint8)
            image[..., 0] = BASE + STEP * (i % PER_CHANNEL)
            image[..., 1] = BASE + STEP * (i // PER_CHANNEL)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class IndexProbe(nn.Module):
    """Stands in for the RGB I3D: feature[:, j] = frame index of stack frame j (from its red / green means)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor):
        levels = (x[:, :2].mean(dim=(3, 4)) + 1) * 255 / 2  # (B, 2, S)
        digits = torch.round((levels - BASE) / STEP)
        features = torch.zeros(x.shape[0], 1024)
        features[:, : x.shape[2]] = digits[:, 0] + PER_CHANNEL * digits[:, 1]
        return features, None


class ZeroProbe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor):
        return torch.zeros(x.shape[0], 1024), None


def zero_flow(gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
    return np.zeros(gray0.shape + (2,), dtype=np.float32)


def script_chunks(frame_cnt: int, frequency: int, chunk_size: int = 16) -> np.ndarray:
    """CMCS / ACRNet: frame indices of every chunk (frame_cnt images)."""
    assert frame_cnt > chunk_size
    last_start = (frame_cnt - chunk_size) // frequency * frequency
    return np.array([list(range(s, s + chunk_size)) for s in range(0, last_start + 1, frequency)])


def script_seconds(name: str, num_features: int, fps: float) -> np.ndarray:
    """The second each release's consumer assigns to feature k."""
    k = np.arange(num_features, dtype=np.float64)
    if name in ("a2net_thumos14", "ecm_thumos14"):
        sample_interval = 4
        return k * sample_interval / fps  # feature k = frame begin / sample_interval
    if name == "actionformer_thumos14":
        feat_stride, num_frames = 4, 16
        feat_offset = 0.5 * num_frames / feat_stride
        return (k + feat_offset) * feat_stride / fps  # inverse of seconds * fps / feat_stride - feat_offset
    assert name in ("acrnet_thumos14", "cmcs_thumos14")
    return k * 16 / 25.0  # chunk k starts at frame 16k of the 25 fps video


# native rate of the synthetic video per preset: the release's rate (25 for the 25-fps recipes, THUMOS's 30 else)
NATIVE_FPS = {"a2net_thumos14": 30.0, "ecm_thumos14": 30.0, "actionformer_thumos14": 30.0,
              "acrnet_thumos14": 25.0, "cmcs_thumos14": 25.0}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[float, Path]:
    root = tmp_path_factory.mktemp("preset_videos")
    return {fps: write_indexed_video(root / f"v{int(fps)}.mp4", 71, fps) for fps in set(NATIVE_FPS.values())}


def test_every_preset_has_a_test_case():
    assert set(NATIVE_FPS) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(NATIVE_FPS))
def test_preset_frame_sampling_and_time_mapping_match_the_script(name, videos):
    preset = get_preset(name)
    fps = NATIVE_FPS[name]
    video = videos[fps]
    features, meta = extract_video(video, IndexProbe(), flow_model=ZeroProbe(), fps=preset.fps, stack=preset.stack,
                                   step=preset.step, streams=preset.streams, flow_fn=zero_flow)
    decoded = meta["num_frames"]
    assert decoded == 71
    expected = script_chunks(decoded - 1, preset.step)  # TSN / denseflow: one image fewer than frames
    assert np.array_equal(features[:, :16].astype(np.int64), expected)
    np.testing.assert_array_equal(preset.chunk_starts(decoded - 1), expected[:, 0])

    annotated = preset.annotate(meta)
    np.testing.assert_allclose(annotated["timestamps"], script_seconds(name, len(expected), fps), atol=1e-6)
    np.testing.assert_allclose(preset.seconds(np.arange(len(expected)), fps), script_seconds(name, len(expected), fps))


@pytest.mark.parametrize("name", sorted(NATIVE_FPS))
def test_features_json_and_sidecar_give_the_script_seconds(name, videos, tmp_path):
    """What --preset writes, read back by tadkit's feature store: the same seconds as the release's code."""
    preset = get_preset(name)
    fps = NATIVE_FPS[name]
    out = tmp_path / "features"
    out.mkdir()
    features, meta = extract_video(videos[fps], IndexProbe(), flow_model=ZeroProbe(), fps=preset.fps,
                                   stack=preset.stack, step=preset.step, streams=preset.streams, flow_fn=zero_flow)
    (out / "features.json").write_text(json.dumps(preset.features_json(preset.streams, features.shape[1])))
    np.save(out / "v.npy", features)
    (out / "v.json").write_text(json.dumps(preset.annotate(meta)))
    timing = FeatureStore(out).timing("v")
    np.testing.assert_allclose(timing.index_to_seconds(np.arange(len(features))),
                               script_seconds(name, len(features), fps), atol=1e-6)


def test_resampled_25_fps_recipe_takes_the_nearest_frames(tmp_path):
    """ACRNet re-encodes to 25 fps (ffmpeg -r 25); on a 30 fps source tadkit picks the nearest frame per
    1/25 s: output frame m = source frame round(m * 30 / 25) (no exact ties at 30 -> 25)."""
    video = write_indexed_video(tmp_path / "v30.mp4", 90, 30.0)
    preset = get_preset("acrnet_thumos14")
    features, meta = extract_video(video, IndexProbe(), flow_model=ZeroProbe(), fps=preset.fps, stack=preset.stack,
                                   step=preset.step, streams=preset.streams, flow_fn=zero_flow)
    assert meta["fps"] == 25.0 and meta["num_frames"] == 75
    source_of = np.rint(np.arange(75) * 30 / 25).astype(np.int64)
    expected = source_of[script_chunks(75 - 1, 16)]
    assert np.array_equal(features[:, :16].astype(np.int64), expected)


def test_cli_preset_arguments(tmp_path, capsys):
    import argparse

    defaults = {"fps": None, "stack": 16, "step": 16, "stream": "rgb"}
    unset = dict.fromkeys(defaults)
    args = argparse.Namespace(preset="a2net_thumos14", **unset)
    assert apply_to_args(args, defaults).name == "a2net_thumos14"
    assert (args.fps, args.stack, args.step, args.stream) == (None, 16, 4, "rgb+flow")
    plain = argparse.Namespace(preset=None, **{**unset, "step": 8})
    assert apply_to_args(plain, defaults) is None
    assert (plain.fps, plain.stack, plain.step, plain.stream) == (None, 16, 8, "rgb")
    only_rgb = argparse.Namespace(preset="acrnet_thumos14", **{**unset, "stream": "rgb"})
    apply_to_args(only_rgb, defaults)  # explicit --stream rgb (= the parser default): one of its streams
    assert (only_rgb.fps, only_rgb.step, only_rgb.stream) == (25.0, 16, "rgb")
    with pytest.raises(TadkitError, match="--step 8 conflicts with --preset a2net_thumos14"):
        apply_to_args(argparse.Namespace(preset="a2net_thumos14", **{**unset, "step": 8}), defaults)
    with pytest.raises(TadkitError, match="--fps 30.0 conflicts with --preset acrnet_thumos14"):
        apply_to_args(argparse.Namespace(preset="acrnet_thumos14", **{**unset, "fps": 30.0}), defaults)
    with pytest.raises(TadkitError, match="unknown preset"):
        get_preset("nope")
    video = write_indexed_video(tmp_path / "v.mp4", 20, 25.0)
    assert main(["extract", str(video), "--out", str(tmp_path / "o"), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse prints the help and exits
        main(["extract", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in PRESETS)


DOC_COMMANDS = [
    "tadkit extract video.mp4 --out features_acrnet/ --preset acrnet_thumos14 --stream rgb --weights rgb_imagenet.pt",
]


def test_docs_command_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/video.md "Features like the releases": the command verbatim, with a random file in pytorch-i3d's
    layout as rgb_imagenet.pt; features.json and the sidecar carry the preset's time mapping."""
    from doc_blocks import section_commands, tadkit_argv
    from test_pytorch_i3d_weights import official_layout

    commands = section_commands("video.md", "Features like the releases (`--preset`)")
    assert commands == DOC_COMMANDS
    monkeypatch.chdir(tmp_path)
    write_indexed_video(tmp_path / "video.mp4", 40, 30.0)  # 1.33 s -> 33 frames at 25 fps -> 2 chunks
    torch.save(official_layout(3, 400, seed=4), tmp_path / "rgb_imagenet.pt")
    for command in commands:
        assert main(tadkit_argv(command)) == 0, command
    capsys.readouterr()
    spec = json.loads((tmp_path / "features_acrnet/features.json").read_text())
    assert spec["preset"] == "acrnet_thumos14" and spec["stride_frames"] == 16 and spec["streams"] == ["rgb"]
    side = json.loads((tmp_path / "features_acrnet/video.json").read_text())
    assert side["fps"] == 25.0 and side["step"] == 16 and side["timestamps"] == [0.0, 0.64]
    assert np.load(tmp_path / "features_acrnet/video.npy").shape == (2, 1024)

    # a second run into the same directory with another preset's time mapping is refused (not silently mixed)
    again = DOC_COMMANDS[0].replace("acrnet_thumos14", "cmcs_thumos14")
    assert main(tadkit_argv(again)) == 2
    assert "already holds another time mapping (preset 'acrnet_thumos14'" in capsys.readouterr().err
    assert json.loads((tmp_path / "features_acrnet/features.json").read_text())["preset"] == "acrnet_thumos14"


def test_release_presets_resize_frames_to_340x256_then_squeeze_to_224():
    """A2Net's / ECM's / the CMCS recipe: every frame to 340 x 256, then the whole frame to 224 x 224 (CMCS
    `--sample_mode resize`, PIL ANTIALIAS = LANCZOS), against a literal re-statement with PIL; ACRNet's and
    ActionFormer's keep the short-side-256 centre crop."""
    from PIL import Image

    from tadkit.video.decode import Preprocess, preprocess_rgb

    for name in ("a2net_thumos14", "ecm_thumos14", "cmcs_thumos14"):
        assert (PRESETS[name].frame_size, PRESETS[name].squeeze) == ((340, 256), True), name
    for name in ("acrnet_thumos14", "actionformer_thumos14"):
        assert (PRESETS[name].frame_size, PRESETS[name].squeeze) == (None, False), name
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    spec = Preprocess(frame_size=(340, 256), squeeze=True)
    expected = np.asarray(Image.fromarray(frame).resize((340, 256), Image.BILINEAR).resize((224, 224), Image.LANCZOS))
    np.testing.assert_array_equal(preprocess_rgb(frame, spec), expected.astype(np.float32) * (2 / 255) - 1)
    # the short-side default differs (it crops; the release sees the whole frame): this check can fail
    assert not np.allclose(preprocess_rgb(frame), preprocess_rgb(frame, spec), atol=0.05)


def test_release_flow_is_computed_at_340x256_clipped_then_squeezed():
    """The flow program sees 340 x 256 frames; fields are clipped to the bound, scaled, then resized as the
    release's flow images are (values kept, not rescaled with the image)."""
    from tadkit.video.decode import Preprocess
    from tadkit.video.flow import FlowCache, to_gray

    seen = []

    def constant_flow(gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
        seen.append(gray0.shape)
        field = np.zeros(gray0.shape + (2,), dtype=np.float32)
        field[..., 0], field[..., 1] = 30.0, -5.0  # 30 px is past the 20 px bound
        return field

    spec = Preprocess(frame_size=(340, 256), squeeze=True)
    frames = np.random.default_rng(1).integers(0, 256, (3, 120, 160, 3), dtype=np.uint8)
    grays = [to_gray(f, spec) for f in frames]
    flows = FlowCache(constant_flow, 224, preprocess=spec).stack(0, grays)
    assert seen == [(256, 340), (256, 340)] and flows.shape == (2, 224, 224, 2)
    np.testing.assert_allclose(flows[..., 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(flows[..., 1], -0.25, atol=1e-6)


def test_release_spatial_steps_reach_the_extractor_and_the_sidecar(tmp_path):
    """`extract_video` with the preset's spatial steps feeds I3D 224 x 224 squeezed frames (the index the
    probe reads survives a flat frame's resize) and the sidecar says which steps ran."""
    preset = get_preset("a2net_thumos14")
    video = write_indexed_video(tmp_path / "v.mp4", 40, 30.0)
    features, meta = extract_video(video, IndexProbe(), fps=preset.fps, stack=preset.stack, step=preset.step,
                                   streams="rgb", frame_size=preset.frame_size, squeeze=preset.squeeze)
    assert np.array_equal(features[:, :16].astype(np.int64), script_chunks(40, preset.step)[: len(features)])
    assert meta["preprocess"] == {"frame_size": [340, 256], "resize": "PIL bilinear", "crop": 224,
                                  "squeeze": "PIL LANCZOS"}
    _, plain = extract_video(video, IndexProbe(), stack=16, step=4, streams="rgb")
    assert plain["preprocess"] == {"short_side": 256, "crop": 224, "resize": "PIL bilinear"}


def test_cli_preset_applies_the_release_frames(tmp_path, capsys):
    """`tadkit extract --preset a2net_thumos14` runs the release's spatial steps (sidecar says so)."""
    from test_pytorch_i3d_weights import official_layout

    video = write_indexed_video(tmp_path / "video.mp4", 24, 30.0)
    torch.save(official_layout(3, 400, seed=4), tmp_path / "rgb_imagenet.pt")
    out = tmp_path / "features_a2net"
    assert main(["extract", str(video), "--out", str(out), "--preset", "a2net_thumos14", "--stream", "rgb",
                 "--weights", str(tmp_path / "rgb_imagenet.pt"), "--no-progress"]) == 0, capsys.readouterr().err
    side = json.loads((out / "video.json").read_text())
    assert side["preprocess"]["frame_size"] == [340, 256] and side["preprocess"]["squeeze"] == "PIL LANCZOS"
    assert np.load(out / "video.npy").shape == (3, 1024)  # 24 RGB frames: chunks at 0, 4 and 8
