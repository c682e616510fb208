"""Zero-shot Kinetics-400 localization: the CAS recipe on synthetic logits, the logits from features,
and `tadkit detect VIDEO` without a checkpoint (random I3D weights: plumbing; real weights: if installed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tadkit.cli import main
from tadkit.errors import TadkitError
from tadkit.video.i3d import I3D, I3DConfig
from tadkit.video.zeroshot import (
    ZeroShotConfig,
    class_activation,
    kinetics400_labels,
    kinetics_head,
    localize_zero_shot,
    smooth_cas,
    stack_logits,
    video_scores,
)

LABELS = kinetics400_labels()


def test_label_file_is_kinetics400_in_logit_order():
    assert len(LABELS) == 400 and len(set(LABELS)) == 400
    assert LABELS[0] == "abseiling" and LABELS[59] == "clean and jerk" and LABELS[-1] == "zumba"
    assert LABELS.index("walking the dog") == 378


def _synthetic_logits(length: int, span: tuple[int, int], active: int, seed: int = 0) -> np.ndarray:
    """Noise over 400 classes; class ``active`` dominates stacks span[0]..span[1]-1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, size=(length, 400))
    logits[span[0]:span[1], active] += 9.0
    return logits


def test_cas_recipe_finds_the_known_span():
    length, span, active = 40, (12, 27), 59
    starts = np.arange(length) * 0.5  # stack k starts at k/2 s and lasts 0.5 s
    result = localize_zero_shot(_synthetic_logits(length, span, active), starts, 0.5, 20.0, "vid")
    assert result.cas.shape == (400, length)
    assert np.allclose(result.cas.sum(axis=0), 1.0)
    assert result.selected.tolist() == [active]  # only the dominant class passes the video-level threshold
    dets = result.detections
    assert len(dets) >= 1 and set(dets.label.tolist()) == {"clean and jerk"}
    assert np.all(np.diff(dets.score) <= 0)
    truth = (6.0, 13.5)  # stacks 12..26
    tiou = (min(dets.end[0], truth[1]) - max(dets.start[0], truth[0])) / (max(dets.end[0], truth[1]) - min(dets.start[0], truth[0]))
    assert tiou >= 0.85  # the 3-stack smoothing may widen the best run by one stack per side
    assert np.all((dets.start >= 0) & (dets.end <= 20.0) & (dets.start < dets.end))
    assert set(dets.video.tolist()) == {"vid"}
    unsmoothed = localize_zero_shot(_synthetic_logits(length, span, active), starts, 0.5, 20.0, "vid",
                                    ZeroShotConfig(smooth=1)).detections
    assert (unsmoothed.start[0], unsmoothed.end[0]) == pytest.approx(truth)  # exactly the active stacks


def test_short_runs_get_a_margin_and_no_free_score():
    """One confident stack in a weak neighbourhood must not outrank a long confident run (upsampling gives
    the 0.25 x length margin; without it a 1-stack run would score its inner mean alone)."""
    logits = np.zeros((30, 400))
    logits[5, 7] = 8.0  # one spike of class 7
    logits[[4, 6], 7] = 4.0
    logits[15:27, 7] = 8.0  # a long run of the same class
    config = ZeroShotConfig(smooth=1)
    dets = localize_zero_shot(logits, np.arange(30.0), 1.0, 30.0, "v", config).detections
    assert (dets.start[0], dets.end[0]) == (15.0, 27.0)


def test_video_scores_and_smoothing():
    cas = np.array([[0.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5]])
    assert video_scores(cas, 8.0)[0] == pytest.approx(1.0)  # k = 1
    assert video_scores(cas, 2.0)[0] == pytest.approx(0.625)  # k = 4: 1, .5, .5, .5
    smoothed = smooth_cas(cas, 3)
    assert smoothed.shape == cas.shape
    assert smoothed[0, :3] == pytest.approx([1 / 3, 1 / 3, 1 / 3])  # edge replicated
    assert smoothed[0, -1] == pytest.approx(0.5)


def test_max_classes_and_fallback():
    logits = np.zeros((10, 400))
    for c in range(8):
        logits[:, c] = 6.0  # eight equally likely classes: each ~0.12 per stack
    result = localize_zero_shot(logits, np.arange(10.0), 1.0, 10.0, "v", ZeroShotConfig(class_threshold=0.5))
    assert result.selected.tolist() == [0]  # nothing passes 0.5: the best class still is localized
    result = localize_zero_shot(logits, np.arange(10.0), 1.0, 10.0, "v", ZeroShotConfig(class_threshold=0.1, max_classes=3))
    assert len(result.selected) == 3


def test_config_overrides_and_errors():
    config = ZeroShotConfig.from_overrides(["class_threshold=0.1", "cas.gamma=0", "nms.iou_threshold=0.4", "smooth=1"])
    assert (config.class_threshold, config.cas.gamma, config.nms.iou_threshold, config.smooth) == (0.1, 0.0, 0.4, 1)
    with pytest.raises(TadkitError, match="unknown zero-shot setting"):
        ZeroShotConfig.from_overrides(["train.lr=1"])
    with pytest.raises(TadkitError, match="odd"):
        ZeroShotConfig(smooth=2)
    with pytest.raises(TadkitError):
        localize_zero_shot(np.zeros((5, 400)), np.arange(4.0), 1.0, 5.0, "v")  # 4 times for 5 stacks


def test_logits_from_features_equal_i3d_logits():
    torch.manual_seed(0)
    model = I3D(I3DConfig()).eval()
    with torch.no_grad():
        for module in model.modules():  # non-trivial batch-norm statistics
            if hasattr(module, "running_var"):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        x = torch.rand(2, 3, 17, 200, 200) * 2 - 1  # two time steps and 1x1 space after the pool
        features, logits = model(x)
    mine = stack_logits(features.numpy(), kinetics_head(model))
    assert mine.shape == (2, 400)
    np.testing.assert_allclose(mine, logits.double().numpy(), rtol=1e-4, atol=1e-4)
    assert np.abs(logits.numpy()).max() > 1e-3  # the comparison is not between zeros
    assert class_activation(mine).shape == (400, 2)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def random_i3d(monkeypatch):
    import tadkit.video.weights as weights

    torch.manual_seed(0)
    model = I3D(I3DConfig()).eval()
    with torch.no_grad():  # random features are ~1e-6: a bias makes "clean and jerk" the sure class
        model.Logits.Conv3d_0c_1x1.conv.bias[59] = 10.0
    monkeypatch.setattr(weights, "load_i3d", lambda *a, **k: model)
    return model


def test_zero_shot_cli_on_a_real_video(random_i3d, shared, tmp_path: Path, capsys):
    """Random weights: checks the plumbing (labels, seconds, JSON, plot), not the detections."""
    video = shared("data", "activitynet", "samples", "v_GGSY1Qvo990.mp4")
    out, plot, feats = tmp_path / "v.json", tmp_path / "v.png", tmp_path / "feats"
    code = main(["detect", str(video), "--fps", "5", "--out", str(out), "--plot", str(plot),
                 "--features-out", str(feats), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "ZERO-SHOT" in printed and "Kinetics-400" in printed
    meta = json.loads((feats / "v_GGSY1Qvo990.json").read_text())
    features = np.load(feats / "v_GGSY1Qvo990.npy")
    assert features.shape == (len(meta["timestamps"]), 1024) and features.shape[0] == int(meta["duration"] * 5) // 16
    rows = json.loads(out.read_text())["results"]["v_GGSY1Qvo990"]
    assert rows and {r["label"] for r in rows} == {"clean and jerk"}
    assert all(0.0 <= r["segment"][0] < r["segment"][1] <= meta["duration"] + 1e-6 for r in rows)
    assert plot.stat().st_size > 1000
    result = localize_zero_shot(stack_logits(features, kinetics_head(random_i3d)), np.asarray(meta["timestamps"]),
                                meta["clip_seconds"], meta["duration"], "v_GGSY1Qvo990")
    assert result.cas.shape == (400, features.shape[0])
    assert {r["label"] for r in rows} == set(result.detections.label.tolist())


def test_zero_shot_on_a_feature_file_and_bad_arguments(random_i3d, tmp_path: Path, capsys):
    feats = tmp_path / "clip.npy"
    logits_target = _synthetic_logits(20, (5, 15), 378)
    # features whose Kinetics logits are the synthetic ones: solve W f + b = logits (least squares)
    weight, bias = kinetics_head(random_i3d)
    features = np.linalg.lstsq(weight, (logits_target - bias).T, rcond=None)[0].T.astype(np.float32)
    np.save(feats, features)
    (tmp_path / "clip.json").write_text(json.dumps({"fps": 10.0, "step": 10, "stack": 10, "streams": ["rgb"],
                                                    "timestamps": [k * 1.0 for k in range(20)],
                                                    "clip_seconds": 1.0, "duration": 20.0}))
    out = tmp_path / "clip_dets.json"
    assert main(["detect", str(feats), "--out", str(out), "--no-progress"]) == 0
    rows = json.loads(out.read_text())["results"]["clip"]
    best = max(rows, key=lambda r: r["score"])
    assert best["label"] == "walking the dog"
    assert 4.0 <= best["segment"][0] <= 5.0 and 15.0 <= best["segment"][1] <= 16.0  # stacks 5..14, +-1 stack
    capsys.readouterr()
    assert main(["detect", str(feats), "--stream", "rgb+flow"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["detect", str(feats), "--set", "nope=1"]) == 2
    assert "unknown zero-shot setting" in capsys.readouterr().err
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((20, 2048), np.float32))
    assert main(["detect", str(wide), "--feature-fps", "10", "--feature-stride", "10"]) == 2
    assert "RGB I3D features" in capsys.readouterr().err


def test_zero_shot_without_weights_says_how_to_install(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("TADKIT_CACHE", str(tmp_path / "empty_cache"))
    video = tmp_path / "a.mp4"
    video.write_bytes(b"\0" * 100)
    assert main(["detect", str(video), "--no-progress"]) == 2
    assert "tadkit weights i3d" in capsys.readouterr().err


@pytest.mark.slow
def test_zero_shot_real_weights_find_clean_and_jerk(shared, capsys):
    """Only with the real Kinetics weights installed (`tadkit weights i3d`, a download)."""
    from tadkit.video.weights import rgb_weights_path

    video = shared("data", "activitynet", "samples", "v_GGSY1Qvo990.mp4")
    if not rgb_weights_path().is_file():
        pytest.skip(f"needs {rgb_weights_path()} (run `tadkit weights i3d`)")
    assert main(["detect", str(video), "--no-progress", "--top", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "start"])
    row = lines[header + 1].split()  # "1  start  end  label words  score" (the first row is never nested)
    assert row[0] == "1"
    start, end, label = float(row[1]), float(row[2]), " ".join(row[3:-1])
    gt = (5.82, 16.20)  # ActivityNet v1.3 validation ground truth, "Clean and jerk"
    tiou = (min(end, gt[1]) - max(start, gt[0])) / (max(end, gt[1]) - min(start, gt[0]))
    print(f"top-1: {label} [{start}, {end}] tIoU {tiou:.2f}")
    assert label == "clean and jerk" and tiou >= 0.5
