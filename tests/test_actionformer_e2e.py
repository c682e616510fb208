"""ActionFormer end to end through the CLI: synth -> train -> test, `tadkit demo --method actionformer`, and
`tadkit convert actionformer-official` of a whole official checkpoint file.

The train/test run uses the shipped ``actionformer/synthetic`` config at tiny widths on three easy synthetic
videos and tests on them: the loss must fall, every video gets detections in seconds inside the video,
and mAP@0.5 must be clearly above zero -- which fails if the whole-video sampling, the padding, the
targets, the decoding on the feature grid or the grid -> seconds mapping is wrong.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tadkit.cli import main
from tadkit.engine.checkpoint import EMA_KEY, load_checkpoint, load_checkpoint_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["model.kwargs.input_dim=64", "model.kwargs.embd_dim=32", "model.kwargs.fpn_dim=32",
        "model.kwargs.head_dim=32", "model.kwargs.max_seq_len=512", "data.window=512"]


@pytest.fixture(scope="module")
def actionformer_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("actionformer_e2e")
    data = root / "synth"
    assert main(["data", "synth", "--out", str(data), "--seed", "0", "--dim", "64", "--videos", "3",
                 "--subset", "validation", "--difficulty", "easy"]) == 0
    overrides = [
        f"data.annotations={data / 'annotations.json'}", f"data.features={data / 'features'}",
        "data.subset_test=validation",  # test on the training videos
        *TINY,
        "train.epochs=30", "train.warmup_epochs=3", "train.batch_size=1", "train.lr=2e-3",
        "train.model_ema_decay=0.9", "train.eval_every=0", "train.tensorboard=false",
    ]
    sets = [item for text in overrides for item in ("--set", text)]
    run = root / "run"
    assert main(["train", "actionformer/synthetic", *sets, "--out", str(run), "--no-progress"]) == 0
    test = root / "test"
    assert main(["test", "actionformer/synthetic", *sets, "--checkpoint", str(run / "last.pt"),
                 "--out", str(test), "--no-progress"]) == 0
    return {
        "run": run,
        "history": json.loads((run / "history.json").read_text()),
        "report": json.loads((test / "report.json").read_text()),
        "results": json.loads((test / "results.json").read_text()),
        "annotations": json.loads((data / "annotations.json").read_text()),
    }


def test_actionformer_training_loss_falls_and_checkpoints_hold_the_average(actionformer_run: dict) -> None:
    totals = [epoch["loss"]["total"] for epoch in actionformer_run["history"]["epochs"]]
    assert len(totals) == 30 and all(np.isfinite(totals))
    # the first epochs divide by the loss normaliser's initial 100 (it then falls towards the few positives
    # per video): compare the end with the peak after it settled (measured 0.61 -> 0.32)
    assert np.mean(totals[-5:]) < 0.8 * max(totals[3:]), totals
    checkpoint = load_checkpoint(actionformer_run["run"] / "last.pt")
    assert EMA_KEY in checkpoint and "loss_normaliser.value" in checkpoint["model"]
    assert float(checkpoint["model"]["loss_normaliser.value"]) != 100.0  # the normaliser moved and is saved
    model, _ = load_checkpoint_model(actionformer_run["run"] / "last.pt")
    assert torch.equal(model.cls_head.cls_head.conv.weight, checkpoint[EMA_KEY]["cls_head.cls_head.conv.weight"])


def test_actionformer_detects_its_training_videos(actionformer_run: dict) -> None:
    report, results = actionformer_run["report"], actionformer_run["results"]["results"]
    database = actionformer_run["annotations"]["database"]
    assert set(results) == set(database)
    for video_id, detections in results.items():
        assert 0 < len(detections) <= 200  # test_cfg.max_seg_num
        segments = np.array([d["segment"] for d in detections])
        assert (segments >= 0).all() and (segments <= database[video_id]["duration"] + 1e-6).all()
    thumos = report["protocols"]["thumos14"]
    at_05 = thumos["mAP"][thumos["tiou"].index(0.5)]
    print(f"ActionFormer e2e: mAP@0.5 {at_05:.3f} on the 3 training videos")
    assert at_05 > 0.2


def test_demo_runs_actionformer(tmp_path) -> None:
    """The demo's wiring (data, the shipped config, --epochs with the warm-up, test, plots) at toy size."""
    out = tmp_path / "demo"
    assert main(["demo", "--method", "actionformer", "--out", str(out), "--videos", "4", "--epochs", "2",
                 "--max-video-seconds", "90", "--difficulty", "easy", "--no-progress"]) == 0
    history = json.loads((out / "run_actionformer" / "history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == [1, 2]
    report = json.loads((out / "report.json").read_text())
    assert report["primary_protocol"] == "activitynet"  # as the official eval.py (ANETdetection)
    assert (out / "results.json").exists()


def write_official_checkpoint(path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A file laid out as the authors' train.py saves it (DataParallel prefix, EMA weights beside the
    trained ones, optimizer and scheduler state); returns the EMA weights (made to differ)."""
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"epoch": 35, "state_dict": {f"module.{k}": v for k, v in state.items()},
                "state_dict_ema": {f"module.{k}": v for k, v in ema.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-8, "params": [0]}]},
                "scheduler": {"last_epoch": 100}}, path)
    return ema


def test_convert_actionformer_official_takes_the_ema_weights(tmp_path) -> None:
    from tadkit.methods.actionformer.method import build_actionformer_method

    settings = {"input_dim": 24, "num_classes": 3, "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "max_seq_len": 576}
    reference = build_actionformer_method(**settings)
    state = reference.official_state_dict()
    ema = write_official_checkpoint(tmp_path / "official.pth.tar", state)
    for weights, expected in (("ema", ema), ("model", state)):
        out = tmp_path / f"{weights}.pt"
        assert main(["convert", "actionformer-official", str(tmp_path / "official.pth.tar"), str(out),
                     "--set", "max_seq_len=576", "--set", f"weights={weights}"]) == 0
        model, _ = load_checkpoint_model(out)
        loaded = model.state_dict()
        assert all(torch.equal(loaded[k], v.float()) for k, v in expected.items())
        assert model.config.num_classes == 3 and model.config.max_seq_len == 576
    # a file whose EMA entry is missing says so (weights=ema is the default, as the official eval.py)
    torch.save({"state_dict": state}, tmp_path / "no_ema.pth")
    assert main(["convert", "actionformer-official", str(tmp_path / "no_ema.pth"), str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()
