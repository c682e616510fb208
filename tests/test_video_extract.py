"""extract_video plumbing with probe models (which frames feed which feature), flow, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_video_synthetic import index_of, write_video
from torch import nn

from tadkit.cli import main
from tadkit.errors import TadkitError
from tadkit.utils.io import torch_save
from tadkit.video.extract import extract_video
from tadkit.video.flow import FlowCache, flow_to_unit, make_tvl1, to_gray, tvl1_available
from tadkit.video.i3d import I3D, I3DConfig


class FrameProbe(nn.Module):
    """Stands in for I3D: feature[:, c * S + j] = mean of channel c of input frame j (rest zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor):
        self.shapes.append(tuple(x.shape))
        means = x.mean(dim=(3, 4)).flatten(1)  # (B, C * S)
        features = torch.zeros(x.shape[0], 1024)
        features[:, : means.shape[1]] = means
        return features, None


def rgb_indices(features: np.ndarray, stack: int) -> np.ndarray:
    """Frame indices seen by each feature, read back from the probe's channel-0 means."""
    levels = (features[:, :stack] + 1) * 255 / 2
    return index_of(levels)


@pytest.fixture(scope="module")
def clip30(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "clip30.mp4", 30, fps=10)


# ----------------------------------------------------------------------------- which frames feed which feature


def test_native_stacks_and_metadata(clip30):
    features, meta = extract_video(clip30, FrameProbe(), stack=10, step=7)
    assert features.shape == (3, 1024) and features.dtype == np.float32  # starts 0, 7, 14 (21 + 10 > 30)
    expected = np.arange(3)[:, None] * 7 + np.arange(10)[None, :]
    assert np.array_equal(rgb_indices(features, 10), expected)
    assert meta["timestamps"] == pytest.approx([0.0, 0.7, 1.4])
    assert meta["fps"] == meta["native_fps"] == 10
    assert meta["num_frames"] == 30 and meta["clip_seconds"] == pytest.approx(1.0)
    assert meta["streams"] == ["rgb"] and meta["stack"] == 10 and meta["step"] == 7
    assert meta["video_id"] == "clip30" and meta["resample"] == "native"
    assert meta["duration"] == pytest.approx(3.0) and meta["container_duration"] == pytest.approx(3.0, abs=0.11)


@pytest.mark.parametrize("fps, batch", [(5.0, 1), (20.0, 3)])
def test_resampled_stacks_follow_nearest_frame_rule(clip30, fps, batch):
    features, meta = extract_video(clip30, FrameProbe(), fps=fps, stack=10, step=5, batch=batch)
    used = np.rint(np.arange(meta["num_frames"]) * 10 / fps).astype(int)  # exact frame times here
    if fps > 10:  # targets half-way between two frames take the earlier one
        used = np.floor(np.arange(meta["num_frames"]) * 10 / fps).astype(int)
    assert meta["num_frames"] == int(3.0 * fps)  # 30 frames of 0.1 s = 3 s
    starts = np.arange(features.shape[0]) * 5
    assert features.shape[0] == (meta["num_frames"] - 10) // 5 + 1
    assert np.array_equal(rgb_indices(features, 10), used[starts[:, None] + np.arange(10)])
    assert meta["timestamps"] == pytest.approx(list(starts / fps))
    assert meta["fps"] == fps and meta["native_fps"] == 10 and meta["resample"] == "nearest"


def test_rgb_plus_flow_uses_one_more_frame_and_each_pair_once(clip30):
    calls = []

    def fake_flow(g0, g1):
        calls.append((int(g0.mean()), int(g1.mean())))
        flow = np.empty(g0.shape + (2,), np.float32)
        flow[..., 0] = 30.0  # clipped to 20 -> 1.0
        flow[..., 1] = -5.0  # -> -0.25
        return flow

    features, meta = extract_video(
        clip30, FrameProbe(), flow_model=FrameProbe(), streams="rgb+flow", stack=10, step=4, flow_fn=fake_flow
    )
    # windows of 11 frames every 4: starts 0, 4, ..., 16 (16 + 11 <= 30; 20 + 11 > 30)
    assert features.shape == (5, 2048) and meta["streams"] == ["rgb", "flow"]
    assert np.array_equal(rgb_indices(features[:, :1024], 10), np.arange(5)[:, None] * 4 + np.arange(10))
    flow_part = features[:, 1024:]
    np.testing.assert_allclose(flow_part[:, :10], 1.0)
    np.testing.assert_allclose(flow_part[:, 10:20], -0.25)
    assert len(calls) == len(set(calls)) == 16 + 10  # pairs (0,1) .. (25,26), none computed twice
    assert meta["flow"]["bound"] == 20.0


def test_flow_to_unit_clips_and_scales():
    flow = np.array([[[-40.0, 10.0], [20.0, 0.5]]], dtype=np.float32)
    np.testing.assert_allclose(flow_to_unit(flow), [[[-1.0, 0.5], [1.0, 0.025]]])


def test_flow_cache_crops_centre():
    def ramp(g0, g1):
        h, w = g0.shape
        flow = np.zeros((h, w, 2), np.float32)
        flow[..., 0] = np.arange(w)[None, :] / w * 20  # x flow = column position
        return flow

    gray = np.zeros((256, 341), np.uint8)
    out = FlowCache(ramp).stack(0, [gray, gray])
    assert out.shape == (1, 224, 224, 2)
    np.testing.assert_allclose(out[0, 0, 0, 0], 58 / 341, atol=1e-6)  # left offset floor(117 / 2) = 58


@pytest.mark.skipif(not tvl1_available(), reason="TV-L1 needs opencv-contrib-python-headless (optional extra)")
def test_tvl1_sees_the_square_move_right(tmp_path):
    from tadkit.video.decode import iter_native_frames

    path = write_video(tmp_path / "move.mp4", 3, fps=10, moving_square=True)
    frames = [f for _, f in iter_native_frames(path)]
    g0, g1 = to_gray(frames[0]), to_gray(frames[1])
    flow = make_tvl1()(g0, g1)
    # the blob moves 2 px per frame at 48 px height -> 2 * 256 / 48 = 10.7 px after resizing
    inside = flow[int(20 * 256 / 48) : int(28 * 256 / 48), int(14 * 256 / 48) : int(22 * 256 / 48)]
    assert 9.5 < np.median(inside[..., 0]) < 12
    assert abs(np.median(inside[..., 1])) < 0.5


def test_portrait_video_is_cropped_from_the_resized_frame(tmp_path):
    path = write_video(tmp_path / "tall.mp4", 10, fps=10, width=48, height=64)  # -> 256 x 341 (w x h)
    probe = FrameProbe()
    features, _ = extract_video(path, probe, stack=9, step=9)
    assert probe.shapes == [(1, 3, 9, 224, 224)]
    assert np.array_equal(rgb_indices(features, 9), [np.arange(9)])


def test_short_video_and_missing_models_are_tadkit_errors(tmp_path, clip30):
    short = write_video(tmp_path / "short.mp4", 8, fps=10)
    with pytest.raises(TadkitError, match="fewer than one stack") as error:
        extract_video(short, FrameProbe(), stack=10, step=10)
    assert error.value.video == "short" and error.value.field == "num_frames"
    with pytest.raises(TadkitError, match="flow"):
        extract_video(clip30, FrameProbe(), streams="rgb+flow", stack=10, step=10)
    with pytest.raises(TadkitError, match="stack"):
        extract_video(clip30, FrameProbe(), stack=4, step=4)


# ----------------------------------------------------------------------------- CLI with random-weight I3Ds


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch_save({"state_dict": I3D().state_dict(), "source": "random"}, root / "rgb.pt")
    torch_save({"state_dict": I3D(I3DConfig(in_channels=2)).state_dict(), "source": "random"}, root / "flow.pt")
    return root


@pytest.fixture
def video_dir(tmp_path):
    folder = tmp_path / "videos"
    write_video(folder / "a.mp4", 10, fps=10)  # one stack of 9 (two with --step 1 is not needed)
    (folder / "broken.mp4").write_bytes(b"\x00" * 4096)
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_cli_extracts_skips_finished_and_reports_broken(video_dir, random_weights, tmp_path, capsys):
    out = tmp_path / "features"
    args = ["extract", str(video_dir), "--out", str(out), "--stack", "9", "--step", "9", "--weights", str(random_weights / "rgb.pt")]
    assert main(args) == 1  # one broken video
    captured = capsys.readouterr()
    assert "broken" in captured.err and "extracted 1, already done 0, failed 1" in captured.out
    features = np.load(out / "a.npy")
    meta = json.loads((out / "a.json").read_text())
    assert features.shape == (1, 1024) and features.dtype == np.float32 and np.isfinite(features).all()
    assert meta["timestamps"] == [0.0] and meta["stack"] == 9 and meta["fps"] == 10 and meta["num_frames"] == 10
    assert "rgb.pt" in meta["weights"]
    assert not (out / "broken.npy").exists() and not (out / "notes.npy").exists()

    (out / "a.npy").write_bytes(b"corrupt")  # an unreadable output is redone
    assert main(args) == 1
    assert "extracted 1, already done 0, failed 1" in capsys.readouterr().out
    assert np.array_equal(np.load(out / "a.npy"), features)  # eval mode: deterministic
    stamp = (out / "a.npy").stat().st_mtime_ns
    assert main(args) == 1  # a finished video is skipped
    assert "extracted 0, already done 1, failed 1" in capsys.readouterr().out
    assert (out / "a.npy").stat().st_mtime_ns == stamp


def test_cli_rgb_plus_flow(video_dir, random_weights, tmp_path, capsys):
    args = [
        "extract", str(video_dir / "a.mp4"), "--out", str(tmp_path / "f"), "--stack", "9", "--step", "9",
        "--stream", "rgb+flow", "--weights", str(random_weights / "rgb.pt"),
        "--flow-weights", str(random_weights / "flow.pt"),
    ]  # fmt: skip
    code = main(args)
    if not tvl1_available():  # the flow stream must say what to install, on one line
        assert code == 2
        assert "opencv-contrib-python-headless" in capsys.readouterr().err
        return
    assert code == 0
    features = np.load(tmp_path / "f" / "a.npy")
    meta = json.loads((tmp_path / "f" / "a.json").read_text())
    assert features.shape == (1, 2048) and meta["streams"] == ["rgb", "flow"]
    assert not np.allclose(features[:, :1024], features[:, 1024:])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--stack", "4"], "stack"),
        (["--fps", "-3"], "fps"),
        (["--stream", "flow"], "--flow-weights"),
        (["--batch", "0"], "batch"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(video_dir, random_weights, tmp_path, capsys, extra, message):
    args = ["extract", str(video_dir / "a.mp4"), "--out", str(tmp_path / "o"), "--weights", str(random_weights / "rgb.pt")]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_missing_input_and_duplicate_ids(tmp_path, random_weights, capsys):
    weights = ["--weights", str(random_weights / "rgb.pt")]
    assert main(["extract", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"), *weights]) == 2
    assert "nope.mp4" in capsys.readouterr().err
    one = write_video(tmp_path / "x" / "same.mp4", 10)
    two = write_video(tmp_path / "y" / "same.mp4", 10)
    assert main(["extract", str(one), str(two), "--out", str(tmp_path / "o"), *weights]) == 2
    assert "same video id" in capsys.readouterr().err
