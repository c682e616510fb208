"""Weakly supervised methods end to end through the CLI: `tadkit train` + `tadkit test` for ECM (epoch-based)
and ACRNet (iteration-based) on a small synthetic dataset, exact resume from a mid-run checkpoint, and the
batches the engine hands a weak method (video labels, never segments)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tadkit.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"ecm": REPO / "tadkit" / "configs" / "ecm" / "synthetic.yaml",
           "acrnet": REPO / "tadkit" / "configs" / "acrnet" / "synthetic.yaml"}
DIM = 32  # feature width of the small dataset (16 RGB + 16 flow)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """8 + 8 THUMOS-like synthetic videos, 32-d features (a few seconds to write)."""
    out = tmp_path_factory.mktemp("weak_synth")
    assert main(["data", "synth", "--out", str(out), "--seed", "0", "--dim", str(DIM), "--videos", "8"]) == 0
    return out


def overrides(method: str, data: Path, **extra: Any) -> list[str]:
    """--set arguments: the shipped synthetic config on the small data, CPU-tiny widths, no TensorBoard."""
    values: dict[str, Any] = {
        "data.annotations": data / "annotations.json",
        "data.features": data / "features",
        "data.resample_length": 64,
        "model.kwargs.in_dim": DIM,
        "train.batch_size": 4,
        "train.eval_every": 0,
        "train.tensorboard": "false",
        "train.log_every": 0,
    }
    if method == "ecm":  # class threshold 0: after 4 steps no softmax score passes the official 0.25
        values.update({"model.kwargs.hidden_dim": 32, "train.epochs": 2, "test.cas.class_threshold": 0.0})
    else:
        values.update({"model.kwargs.aas_hidden": 16, "train.iterations": 4})
    values.update(extra)
    args: list[str] = []
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    return args


def train(method: str, data: Path, out: Path, *extra: str, resume: bool = False, **settings: Any) -> None:
    command = ["train", str(CONFIGS[method]), *overrides(method, data, **settings), "--out", str(out), "--no-progress"]
    assert main(command + (["--resume"] if resume else []) + list(extra)) == 0


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.parametrize("method", ["ecm", "acrnet"])
def test_train_then_test_writes_a_finite_report(method, synth, tmp_path, monkeypatch):
    """A few training steps through `tadkit train`, then `tadkit test` on the checkpoint; every batch the
    trainer handed the model was a weak batch (features, meta, video labels: no "targets")."""
    from tadkit.methods import get_method
    from tadkit.methods.base import resolve

    model_cls = type(resolve(get_method(method).model)(in_dim=DIM, num_classes=20))
    seen: list[tuple[bool, set[str]]] = []
    original = model_cls.forward

    def spy(self, batch):
        seen.append((self.training, set(batch)))
        return original(self, batch)

    monkeypatch.setattr(model_cls, "forward", spy)
    run = tmp_path / "run"
    train(method, synth, run)
    training_batches = [keys for is_training, keys in seen if is_training]
    expected_steps = 4  # ECM: 2 epochs x 2 batches of 4 videos; ACRNet: train.iterations=4
    assert len(training_batches) == expected_steps
    assert all(keys == {"features", "meta", "video_labels"} for keys in training_batches), training_batches
    history = json.loads((run / "history.json").read_text())
    assert history["unit"] == ("epoch" if method == "ecm" else "iteration")
    assert all(math.isfinite(h["loss"]["total"]) for h in history["epochs"])

    out = tmp_path / "test"
    code = main(["test", str(CONFIGS[method]), *overrides(method, synth), "--checkpoint", str(run / "last.pt"),
                 "--out", str(out), "--no-plots", "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_test_videos"] == 8
    for name in ("thumos14", "activitynet"):
        result = report["protocols"][name]
        assert result["mAP"] and all(math.isfinite(m) and 0.0 <= m <= 1.0 for m in result["mAP"])
    gt = json.loads((synth / "annotations.json").read_text())["database"]
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) <= {v for v, info in gt.items() if info["subset"] == "test"}
    rows = [(vid, r) for vid, rs in results.items() for r in rs]
    assert rows, "every class passes the threshold, so each test video gets segments"
    assert all(0.0 <= r["segment"][0] <= r["segment"][1] <= gt[vid]["duration"] + 1e-6 for vid, r in rows)

    # `tadkit detect` on one video's feature file: the same whole-video path and CAS -> segments
    video = sorted(results)[0]
    detected = tmp_path / "detect.json"
    code = main(["detect", str(synth / "features" / f"{video}.npy"), "--checkpoint", str(run / "last.pt"),
                 "--feature-fps", str(gt[video]["fps"]), "--feature-stride", "4", "--out", str(detected),
                 "--no-progress", "--set", "test.cas.class_threshold=0.0"] if method == "ecm" else
                ["detect", str(synth / "features" / f"{video}.npy"), "--checkpoint", str(run / "last.pt"),
                 "--feature-fps", str(gt[video]["fps"]), "--feature-stride", "4", "--out", str(detected),
                 "--no-progress"])
    assert code == 0
    found = json.loads(detected.read_text())["results"].get(video, [])
    assert all(0.0 <= r["segment"][0] <= r["segment"][1] for r in found)
    labels = set(json.loads((synth / "annotations.json").read_text()).get("classes") or []) or None
    assert labels is None or {r["label"] for r in found} <= labels


@pytest.mark.parametrize("method, total, at", [("acrnet", 6, 3), ("ecm", 3, 1)])
def test_resume_from_a_mid_run_checkpoint_reproduces_the_uninterrupted_run(method, total, at, synth, tmp_path):
    """Run A goes uninterrupted to the end. Run B starts from A's checkpoint at step / epoch ``at`` (what a
    process killed right after writing it leaves behind: its last.pt) and `--resume`s to the end. ACRNet is
    iteration-based, 2 steps per epoch, so step 3 is mid-epoch (the resumed loader skips the used samples);
    both methods draw random numbers every step (dropout; ACRNet's random per-bin sampling), so the
    restored RNG states matter."""
    length = {"train.iterations": total, "train.checkpoint_every": at} if method == "acrnet" else {"train.epochs": total}
    length["train.lr"] = 1e-3  # big enough steps that 1e-6 is a sharp tolerance
    keep = f"[{at}]"
    a = tmp_path / "a"
    train(method, synth, a, **length, **{"train.keep_epochs": keep, "train.snapshot_state": "full"})
    prefix = "step_" if method == "acrnet" else "epoch_"
    saved = sorted(a.glob(f"{prefix}*{at}.pt"))
    assert len(saved) == 1, sorted(p.name for p in a.iterdir())
    b = tmp_path / "b"
    b.mkdir()
    shutil.copy(saved[0], b / "last.pt")
    train(method, synth, b, resume=True, **length, **{"train.keep_epochs": keep, "train.snapshot_state": "full"})

    log = (b / "train.log").read_text()
    assert f"resumed from {b / 'last.pt'}" in log
    final_a, final_b, middle = weights(a / "last.pt"), weights(b / "last.pt"), weights(saved[0])
    assert max_difference(final_a, final_b) <= 1e-6
    assert max_difference(final_a, middle) > 1e-4  # the steps after the checkpoint changed the weights
    history_a = json.loads((a / "history.json").read_text())["epochs"]
    history_b = json.loads((b / "history.json").read_text())["epochs"]
    assert [h["global_step"] for h in history_b] == [h["global_step"] for h in history_a]
    np.testing.assert_allclose([h["loss"]["total"] for h in history_b], [h["loss"]["total"] for h in history_a],
                               rtol=0, atol=1e-6)


def test_weak_training_batches_from_the_engine_have_no_segments(synth):
    """The engine's data path for both weak methods: batches of features, meta and video labels only."""
    from torch.utils.data import DataLoader

    from tadkit.engine.config import load_config
    from tadkit.engine.data import build_train_data

    for method in ("ecm", "acrnet"):
        config = load_config(CONFIGS[method], [a for a in overrides(method, synth) if a != "--set"])
        data = build_train_data(config)
        batch = next(iter(DataLoader(data.train, batch_size=4, collate_fn=data.collate_fn)))
        assert set(batch) == {"features", "meta", "video_labels"}, method
        assert batch["features"].shape == (4, DIM, 64)
        assert batch["video_labels"].shape == (4, 20) and bool((batch["video_labels"].sum(1) >= 1).all())
        for meta in batch["meta"]:
            assert {"fps", "frame_num", "duration", "num_features"} <= set(meta)
            assert not any("segment" in key or "target" in key for key in meta)


def test_zero_detections_say_which_step_removed_them(synth, tmp_path, capsys):
    """ECM with a class threshold no softmax score reaches: the empty result names the CAS step, the
    best video score and the threshold, on stdout and in report.json (it used to be silent)."""
    run = tmp_path / "run"
    train("ecm", synth, run)
    out = tmp_path / "test"
    capsys.readouterr()
    code = main(["test", str(CONFIGS["ecm"]), *overrides("ecm", synth), "--set", "test.cas.class_threshold=1.5",
                 "--checkpoint", str(run / "last.pt"), "--out", str(out), "--no-plots", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["num_detections"] == 0
    (note,) = report["notes"]
    assert note.startswith("no detections: test.cas") and "class_threshold is 1.5" in note
    best = float(note.split("highest video-level class score is ")[1].split(" ")[0])
    assert 0.0 < best < 1.0  # a softmax score, below the threshold
    assert f"note: {note}" in printed
    assert report["postprocess_steps"][0]["detections"] == 0

    gt = json.loads((synth / "annotations.json").read_text())["database"]
    video_id = sorted(v for v, info in gt.items() if info["subset"] == "test")[0]
    code = main(["detect", str(synth / "features" / f"{video_id}.npy"), "--checkpoint", str(run / "last.pt"),
                 "--feature-fps", str(gt[video_id]["fps"]), "--feature-stride", "4",
                 "--no-progress", "--set", "test.cas.class_threshold=1.5"])  # `tadkit detect` says the same
    assert code == 0
    printed = capsys.readouterr().out
    assert f"{video_id}: no detections: test.cas" in printed and f"{video_id}: 0 detections" in printed
