"""`tadkit data frames`: the official AFSD 10-fps accumulator, 112x112 frame arrays, flow, resume.

Test videos are lossless x264 flat greys: native frame i has level 12 + 4 i (<= 60 frames), so the
native index of every written frame is read back from its mean intensity.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from tadkit.cli import main  # noqa: E402
from tadkit.video.frames import (  # noqa: E402
    INDEX_FILE,
    FrameSettings,
    convert_videos,
    keep_mask,
    quantize_flow,
    sampled_count,
)

STEP, BASE = 4, 12


def level(i: int) -> int:
    return BASE + STEP * i


def index_of(mean: np.ndarray | float) -> np.ndarray:
    return np.rint((np.asarray(mean, dtype=np.float64) - BASE) / STEP).astype(np.int64)


def write_video(path: Path, num_frames: int, fps: float | Fraction, width: int = 64, height: int = 48) -> Path:
    assert level(num_frames - 1) <= 255
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(num_frames):
            image = np.full((height, width, 3), level(i), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def official_loop(count: int, fps: float, sample_fps: float = 10.0) -> list[int]:
    """The loop of AFSD/common/video2npy.py, restated: which 0-based native frames it saves."""
    step = fps / sample_fps
    cur_step = 0.0
    saved = []
    for i in range(count):
        cur_step += 1
        if cur_step >= step:
            cur_step -= step
            saved.append(i)
    return saved


def run(*argv: str) -> int:
    return main(["data", "frames", *map(str, argv)])


def kept_native(rgb: np.ndarray) -> np.ndarray:
    return index_of(rgb.reshape(len(rgb), -1).mean(axis=1))


# ----------------------------------------------------------------------------- the sampling rule


@pytest.mark.parametrize("fps", [30.0, 25.0, 30000 / 1001, 29.97, 24000 / 1001, 50.0, 10.0, 6.0, 9.99])
def test_keep_mask_is_the_official_loop(fps):
    count = 20000  # long enough for the float remainder to reach near-ties at 29.97 fps
    mask = keep_mask(count, fps)
    assert np.flatnonzero(mask).tolist() == official_loop(count, fps)
    assert sampled_count(count, fps) == len(official_loop(count, fps))


def test_keep_mask_known_values():
    assert np.flatnonzero(keep_mask(12, 30.0)).tolist() == [2, 5, 8, 11]  # every 3rd, starting at the 3rd
    assert np.flatnonzero(keep_mask(13, 25.0)).tolist() == [2, 4, 7, 9, 12]  # step 2.5: 3, 2, 3, 2 ...
    # 29.97 fps: 2997 frames (100 s) -> 999 kept frames, 1000 would be the nearest-timestamp count
    assert sampled_count(2997, 29.97) == len(official_loop(2997, 29.97))
    # below 10 fps the loop keeps every frame (no duplication); the writer refuses such videos
    assert keep_mask(7, 6.0).all()


def test_quantize_flow_is_denseflow_encoding():
    flow = np.array([[[-25.0, -20.0], [0.0, 20.0], [25.0, 1.0], [-1.0, 0.1]]], dtype=np.float32)
    q = quantize_flow(flow)
    assert q.dtype == np.uint8
    # 0 -> 127.5 rounds to even (cvRound); +-1 px -> 127.5 -+ 6.375
    assert q.tolist() == [[[0, 0], [128, 255], [255, 134], [121, 128]]]


# ----------------------------------------------------------------------------- real videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "v30.mp4", 45, 30)
    write_video(root / "v25.mp4", 40, 25)
    write_video(root / "v2997.mp4", 60, Fraction(30000, 1001))
    return root


def test_frames_follow_the_official_sampler(videos, tmp_path):
    out = tmp_path / "out"
    assert run(videos, "--out", out, "--size", 32) == 0
    index = json.loads((out / INDEX_FILE).read_text())
    assert {k: index[k] for k in ("format", "version", "fps", "size", "streams")} == {
        "format": "tadkit-frames", "version": 1, "fps": 10.0, "size": [32, 32], "streams": ["rgb"]}
    assert sorted(index["videos"]) == ["v25", "v2997", "v30"]
    for video, native, fps in (("v30", 45, 30.0), ("v25", 40, 25.0), ("v2997", 60, 30000 / 1001)):
        entry = index["videos"][video]
        rgb = np.load(out / "rgb" / f"{video}.npy", mmap_mode="r")
        expected = official_loop(native, fps)
        assert rgb.dtype == np.uint8 and rgb.shape == (len(expected), 32, 32, 3)
        assert kept_native(np.asarray(rgb)).tolist() == expected
        assert entry["num_frames"] == len(expected) and entry["native_frames"] == native
        assert entry["native_fps"] == pytest.approx(fps, rel=1e-9)
        assert entry["duration"] == pytest.approx(native / fps)
        assert Path(entry["source"]) == (videos / f"{video}.mp4").resolve()
    assert not (out / "flow").exists()
    assert not list(out.rglob("*.tmp"))


def test_default_size_is_112_bicubic_stretch(videos, tmp_path):
    out = tmp_path / "out"
    assert run(videos / "v25.mp4", "--out", out) == 0
    rgb = np.load(out / "rgb" / "v25.npy")
    assert rgb.shape == (len(official_loop(40, 25.0)), 112, 112, 3)  # 64x48 stretched, no crop / padding
    assert kept_native(rgb).tolist() == official_loop(40, 25.0)
    assert np.ptp(rgb[0].astype(int)) <= 2  # a flat frame stays flat across the whole 112x112 image


def test_resize_is_the_official_pil_bicubic(tmp_path):
    """Textured frames: each written frame equals PIL bicubic (the official ``imresize``) of the decoded
    native frame, stretched to SIZE x SIZE."""
    from PIL import Image

    rng = np.random.default_rng(0)
    path = tmp_path / "texture.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for _ in range(4):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert run(path, "--out", tmp_path / "out", "--size", 20) == 0
    written = np.load(tmp_path / "out" / "rgb" / "texture.npy")
    expected = np.stack([np.asarray(Image.fromarray(f).resize((20, 20), Image.BICUBIC)) for f in decoded])
    assert np.array_equal(written, expected)  # 10 fps source: every frame kept
    nearest = np.stack([np.asarray(Image.fromarray(f).resize((20, 20), Image.NEAREST)) for f in decoded])
    assert not np.array_equal(written, nearest)


def test_resume_skips_finished_and_overwrite_redoes(videos, tmp_path):
    out = tmp_path / "out"
    settings = FrameSettings(size=16)
    first = convert_videos([videos], out, settings, show_progress=False)
    assert sorted(first.written) == ["v25", "v2997", "v30"] and not first.failed
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "rgb").glob("*.npy")}
    (out / "rgb" / "v25.npy").unlink()  # a lost file is redone even though it is listed
    second = convert_videos([videos], out, settings, show_progress=False)
    assert second.written == ["v25"] and sorted(second.skipped) == ["v2997", "v30"]
    assert (out / "rgb" / "v30.npy").stat().st_mtime_ns == stamps["v30.npy"]
    third = convert_videos([videos], out, settings, overwrite=True, show_progress=False)
    assert sorted(third.written) == ["v25", "v2997", "v30"] and not third.skipped
    assert (out / "rgb" / "v30.npy").stat().st_mtime_ns != stamps["v30.npy"]
    assert len(json.loads((out / INDEX_FILE).read_text())["videos"]) == 3


def test_bad_video_exit_2_keeps_the_others(videos, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_good.mp4").write_bytes((videos / "v30.mp4").read_bytes())
    (src / "b_bad.mp4").write_bytes(b"this is not a video" * 100)
    (src / "c_good.mp4").write_bytes((videos / "v25.mp4").read_bytes())
    out = tmp_path / "out"
    assert run(src, "--out", out, "--size", 16) == 2
    err = capsys.readouterr().err
    assert "b_bad.mp4" in err and err.count("\n") == 1
    index = json.loads((out / INDEX_FILE).read_text())
    assert sorted(index["videos"]) == ["a_good", "c_good"]
    assert sorted(p.name for p in (out / "rgb").iterdir()) == ["a_good.npy", "c_good.npy"]  # no temp, no b_bad
    assert np.load(out / "rgb" / "c_good.npy").shape[0] == len(official_loop(40, 25.0))


def test_settings_mismatch_names_the_field(videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(videos / "v30.mp4", "--out", out, "--size", 16) == 0
    capsys.readouterr()
    assert run(videos / "v25.mp4", "--out", out, "--size", 24) == 2
    assert "field size" in capsys.readouterr().err
    assert run(videos / "v25.mp4", "--out", out, "--size", 16, "--fps", 5) == 2
    assert "field fps" in capsys.readouterr().err
    assert not (out / "rgb" / "v25.npy").exists()


def test_below_10_fps_is_refused(tmp_path, capsys):
    path = write_video(tmp_path / "slow.mp4", 12, 6)
    assert run(path, "--out", tmp_path / "out", "--size", 16) == 2
    err = capsys.readouterr().err
    assert "slow.mp4" in err and "field native_fps" in err


def test_jobs_2_gives_the_same_arrays(videos, tmp_path):
    assert run(videos, "--out", tmp_path / "one", "--size", 16) == 0
    assert run(videos, "--out", tmp_path / "two", "--size", 16, "--jobs", 2) == 0
    for video in ("v25", "v2997", "v30"):
        assert np.array_equal(np.load(tmp_path / "one" / "rgb" / f"{video}.npy"),
                              np.load(tmp_path / "two" / "rgb" / f"{video}.npy"))
    one = json.loads((tmp_path / "one" / INDEX_FILE).read_text())["videos"]
    two = json.loads((tmp_path / "two" / INDEX_FILE).read_text())["videos"]
    assert one == two


# ----------------------------------------------------------------------------- flow


class IndexFlow:
    """Fake TV-L1: x encodes the native index of the first frame, y that of the second."""

    def __init__(self) -> None:
        self.shapes: set[tuple[int, ...]] = set()

    def __call__(self, gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
        self.shapes.add(gray0.shape)
        x = 0.5 * index_of(gray0.mean()) - 20.0  # -> uint8 round(255 * i / 80)
        y = 0.5 * index_of(gray1.mean()) - 20.0
        return np.stack([np.full(gray0.shape, x), np.full(gray0.shape, y)], axis=-1).astype(np.float32)


def decode_index_flow(flow: np.ndarray) -> np.ndarray:
    """(N, H, W, 2) -> (N, 2) native indices (first, second frame)."""
    return np.rint(flow.reshape(len(flow), -1, 2).mean(axis=1) * 80.0 / 255.0).astype(np.int64)


def test_flow_from_sampled_frames(videos, tmp_path):
    out, fake = tmp_path / "out", IndexFlow()
    settings = FrameSettings(size=24, flow=True, flow_source="frames")
    summary = convert_videos([videos / "v30.mp4"], out, settings, flow_fn=fake, show_progress=False)
    assert summary.written == ["v30"]
    kept = official_loop(45, 30.0)
    flow = np.load(out / "flow" / "v30.npy", mmap_mode="r")
    assert flow.dtype == np.uint8 and flow.shape == (len(kept), 24, 24, 2)
    pairs = decode_index_flow(np.asarray(flow))
    assert pairs[:-1].tolist() == [[a, b] for a, b in zip(kept[:-1], kept[1:])]  # flow k: sampled k -> k + 1
    assert pairs[-1].tolist() == pairs[-2].tolist()  # last flow repeated
    assert fake.shapes == {(24, 24)}
    index = json.loads((out / INDEX_FILE).read_text())
    assert index["streams"] == ["rgb", "flow"] and index["flow"]["source"] == "frames"


def test_flow_from_native_frames(videos, tmp_path):
    out, fake = tmp_path / "out", IndexFlow()
    settings = FrameSettings(size=24, flow=True, flow_source="video")
    convert_videos([videos / "v30.mp4", videos / "v25.mp4"], out, settings, flow_fn=fake, show_progress=False)
    assert fake.shapes == {(48, 64)}  # computed at the native resolution
    for video, native, fps in (("v30", 45, 30.0), ("v25", 40, 25.0)):
        kept = official_loop(native, fps)
        pairs = decode_index_flow(np.load(out / "flow" / f"{video}.npy"))
        assert len(pairs) == len(kept)
        # flow j = native j -> j + 1, kept iff native frame j is; the last native frame has no flow
        expected = [[j, j + 1] for j in kept if j + 1 < native]
        assert pairs[: len(expected)].tolist() == expected
        assert all(p == expected[-1] for p in pairs[len(expected):].tolist())
    assert official_loop(45, 30.0)[-1] == 44  # v30 does exercise the repeat (its last native frame is kept)


def test_flow_needs_a_second_frame(tmp_path, capsys):
    path = write_video(tmp_path / "short.mp4", 3, 30)  # one sampled frame
    summary = convert_videos([path], tmp_path / "out", FrameSettings(size=8, flow=True), flow_fn=IndexFlow(),
                             show_progress=False)
    assert "short.mp4" in summary.failed["short"] and "2 frames" in summary.failed["short"]
    assert not list((tmp_path / "out").rglob("*.npy"))


def test_flow_without_tvl1_says_which_extra(videos, tmp_path, capsys, monkeypatch):
    import tadkit.video.flow as flow_module

    monkeypatch.setattr(flow_module, "tvl1_available", lambda: False)
    assert run(videos / "v30.mp4", "--out", tmp_path / "out", "--flow") == 2
    err = capsys.readouterr().err
    assert "tadkit[flow]" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_real_tvl1_flow(tmp_path):
    from tadkit.video.flow import tvl1_available

    if not tvl1_available():
        pytest.skip("TV-L1 needs opencv-contrib (pip install 'tadkit[flow]'); this cv2 has no DualTVL1OpticalFlow")
    path = tmp_path / "moving.mp4"
    with av.open(str(path), "w") as container:  # a bright blob moving 1 px right per native frame
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 112, 112, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        yy, xx = np.mgrid[0:112, 0:112]
        for i in range(30):
            image = (40 + 180 * np.exp(-((xx - 40 - i) ** 2 + (yy - 56) ** 2) / 60.0)).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(image[..., None], 3, axis=2), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = tmp_path / "out"
    assert run(path, "--out", out, "--flow") == 0
    flow = np.load(out / "flow" / "moving.npy").astype(np.float64) * 40.0 / 255.0 - 20.0
    blob = flow[0, 50:62, 45:60]  # around the blob at sampled frame 0 (native 2): moves 3 px per sampled frame
    assert 2.0 < blob[..., 0].mean() < 4.0 and abs(blob[..., 1].mean()) < 0.7
