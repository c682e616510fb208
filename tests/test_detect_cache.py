"""`tadkit detect` on a video: the checkpoint is checked before extraction, and extracted features are
cached (keyed by video content, stack, step, fps, streams and weights) so a second call does not extract.
The extractor is replaced by a counting fake: no video is decoded here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import tadkit.video.extract as extract_module
import tadkit.video.weights as weights
from tadkit.cli import main
from tadkit.models.a2net import A2Net, A2NetConfig
from tadkit.utils.io import torch_save
from tadkit.video.cache import cache_key, feature_cache_dir, video_fingerprint
from tadkit.video.extract import ExtractSettings
from tadkit.video.i3d import I3D, I3DConfig


class CountingExtractor:
    """Stands in for extract_video: deterministic features, the metadata extract_video writes, a call count."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, path, model, *, flow_model=None, fps=None, stack=16, step=16, streams="rgb", progress=False, **_):
        self.calls.append({"path": str(path), "stack": stack, "step": step, "fps": fps, "streams": streams})
        used_fps = fps or 25.0
        count = 40
        rng = np.random.default_rng(len(self.calls))  # a different array per call: a reuse is visible
        features = rng.normal(size=(count, 1024 * len(streams.split("+")))).astype(np.float32)
        starts = [k * step / used_fps for k in range(count)]
        meta = {"video": str(path), "video_id": Path(path).stem, "fps": used_fps, "stack": stack, "step": step,
                "streams": streams.split("+"), "timestamps": starts, "clip_seconds": stack / used_fps,
                "duration": (count * step + stack) / used_fps, "num_features": count, "requested_fps": fps}
        return features, meta


@pytest.fixture
def fake(monkeypatch, tmp_path):
    extractor = CountingExtractor()
    monkeypatch.setattr(extract_module, "extract_video", extractor)
    torch.manual_seed(0)
    rgb = I3D(I3DConfig()).eval()
    with torch.no_grad():
        rgb.Logits.Conv3d_0c_1x1.conv.bias[59] = 10.0
    monkeypatch.setattr(weights, "load_i3d", lambda *a, **k: rgb)
    monkeypatch.setenv("TADKIT_FEATURE_CACHE", str(tmp_path / "cache"))
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(3 << 20))  # 3 MiB: first and last MiB differ from the middle
    return extractor, video, rgb


def _checkpoint(path: Path, in_dim: int) -> Path:
    config = A2NetConfig(in_dim=in_dim, base_dim=16, pyramid_dims=(16, 16, 16, 16, 16, 16), reduce_dim=16,
                         head_dim=16, num_classes=2)
    torch.manual_seed(0)
    torch_save({"format": "tadkit-checkpoint/1", "model_name": "a2net", "model_config": config.to_dict(),
                "model": A2Net(config).state_dict(), "classes": ["jump", "throw"]}, path)
    return path


def test_wrong_checkpoint_is_refused_before_any_extraction(fake, tmp_path, capsys):
    extractor, video, _ = fake
    ckpt = _checkpoint(tmp_path / "a2net256.pt", in_dim=256)
    assert main(["detect", str(video), "--checkpoint", str(ckpt), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "256-d" in err and "1024-d" in err
    assert extractor.calls == []  # refused before extracting anything
    assert not feature_cache_dir().exists()


def test_second_detect_reuses_the_cached_features(fake, tmp_path, capsys):
    extractor, video, _ = fake
    ckpt = _checkpoint(tmp_path / "a2net.pt", in_dim=1024)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    base = ["detect", str(video), "--checkpoint", str(ckpt), "--no-progress"]
    assert main(base + ["--out", str(first)]) == 0
    assert len(extractor.calls) == 1
    assert main(base + ["--out", str(second)]) == 0
    assert len(extractor.calls) == 1  # not extracted again
    assert "reused from the cache" in capsys.readouterr().out
    assert json.loads(first.read_text()) == json.loads(second.read_text())  # the same features were used
    assert len(list(feature_cache_dir().glob("clip-*.npy"))) == 1

    assert main(base + ["--no-cache"]) == 0
    assert len(extractor.calls) == 2  # --no-cache extracts
    for extra in (["--stack", "12"], ["--step", "8"], ["--fps", "10"]):
        before = len(extractor.calls)
        assert main(base + extra) == 0
        assert len(extractor.calls) == before + 1, extra  # another setting, another entry
        assert main(base + extra) == 0
        assert len(extractor.calls) == before + 1, extra  # ... which is reused in turn


def test_zero_shot_uses_the_same_cache_and_a_changed_video_is_extracted_again(fake, tmp_path):
    extractor, video, _ = fake
    assert main(["detect", str(video), "--no-progress"]) == 0
    assert main(["detect", str(video), "--no-progress"]) == 0
    assert len(extractor.calls) == 1
    ckpt = _checkpoint(tmp_path / "a2net.pt", in_dim=1024)
    assert main(["detect", str(video), "--checkpoint", str(ckpt), "--no-progress"]) == 0
    assert len(extractor.calls) == 1  # same video, same settings, same weights: shared entry
    data = bytearray(video.read_bytes())
    data[-1] ^= 0xFF  # the last MiB changes
    video.write_bytes(bytes(data))
    assert main(["detect", str(video), "--no-progress"]) == 0
    assert len(extractor.calls) == 2


def test_cache_key_covers_video_settings_and_weights(fake, tmp_path):
    _, video, rgb = fake
    settings = ExtractSettings(stack=16, step=16)
    key = cache_key(video, settings, rgb, None)
    assert cache_key(video, settings, rgb, None) == key
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(video.read_bytes())
    os.utime(copy, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns))
    assert video_fingerprint(copy) == video_fingerprint(video)  # same size, mtime and ends
    assert cache_key(video, ExtractSettings(stack=16, step=16, fps=25.0), rgb, None) != key
    assert cache_key(video, ExtractSettings(stack=16, step=16, streams="rgb+flow"), rgb, rgb) != key
    other = I3D(I3DConfig()).eval()
    assert cache_key(video, settings, other, None) != key  # other weights, other features
    middle = bytearray(video.read_bytes())
    middle[len(middle) // 2] ^= 0xFF  # outside the hashed ends, and the mtime is kept: the documented blind spot
    video.write_bytes(bytes(middle))
    os.utime(video, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns))
    assert cache_key(video, settings, rgb, None) == key
    os.utime(video, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1))
    assert cache_key(video, settings, rgb, None) != key  # a rewrite moves the mtime


def test_corrupt_cache_entry_is_extracted_again(fake):
    extractor, video, _ = fake
    assert main(["detect", str(video), "--no-progress"]) == 0
    (entry,) = feature_cache_dir().glob("clip-*.npy")
    entry.write_bytes(b"not an array")
    assert main(["detect", str(video), "--no-progress"]) == 0
    assert len(extractor.calls) == 2
    assert np.load(entry).shape == (40, 1024)  # rewritten
