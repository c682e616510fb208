"""data.val_fraction (a held-out validation split by video, never a test video), val/test metrics in
history.json, and `tadkit test` reporting last / best-on-validation / best-on-test epochs."""

from __future__ import annotations

import json
import os

import pytest

from tadkit.cli import main
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.engine.config import Config
from tadkit.engine.data import VAL_SUBSET, validation_split
from tadkit.errors import TadkitError
from tadkit.evaluation.epoch_selection import epoch_selection, format_epoch_selection

A2NET_TINY = {"in_dim": 16, "base_dim": 8, "pyramid_dims": [8, 8, 8, 8, 8, 8], "reduce_dim": 8, "head_dim": 8,
              "num_classes": 20, "window": 64}


def annotations(counts: dict[str, int]) -> AnnotationSet:
    videos = {}
    for subset, count in counts.items():
        for i in range(count):
            vid = f"{subset}_{i:03d}"
            videos[vid] = VideoAnnotation(video_id=vid, subset=subset, duration=10.0, segments=[Segment(1, 2, "a")])
    return AnnotationSet(videos=videos, classes=["a"], source="t")


@pytest.mark.parametrize("subset_train", ["validation", ["validation", "test"], ["validation", "extra", "test"]])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_validation_split_never_holds_a_test_video(subset_train, fraction):
    ann = annotations({"validation": 40, "test": 30, "extra": 7})
    config = Config.from_dict({"data": {"subset_train": subset_train, "subset_test": "test",
                                        "val_fraction": fraction, "val_seed": 3}})
    split = validation_split(ann, config)
    held_out = set(split.subset(VAL_SUBSET).videos)
    test_ids = set(ann.subset("test").videos)
    candidates = set(ann.subset(subset_train).videos) - test_ids
    assert held_out and not held_out & test_ids and held_out <= candidates
    assert len(held_out) == min(max(1, round(fraction * len(candidates))), len(candidates) - 1)
    assert set(split.subset("test").videos) == test_ids  # the test subset is untouched
    assert not held_out & set(split.subset(subset_train).videos)  # held-out videos are not trained on
    # seeded by val_seed only: the same split for every training seed, another for another val_seed
    again = validation_split(ann, Config.from_dict({**config.to_dict(), "train": {"seed": 99}}))
    assert set(again.subset(VAL_SUBSET).videos) == held_out
    other = validation_split(ann, Config.from_dict({**config.to_dict(), "data": {**config.to_dict()["data"],
                                                                                  "val_seed": 4}}))
    assert set(other.subset(VAL_SUBSET).videos) != held_out


def test_validation_split_needs_training_videos_outside_the_test_subset():
    config = Config.from_dict({"data": {"subset_train": "test", "subset_test": "test", "val_fraction": 0.2}})
    with pytest.raises(TadkitError, match="outside the test subset") as info:
        validation_split(annotations({"test": 10}), config)
    assert info.value.field == "data.val_fraction"
    with pytest.raises(TadkitError, match=r"\(0, 1\)"):
        Config.from_dict({"data": {"val_fraction": 1.0}})


def test_epoch_selection_picks_last_best_on_val_and_best_on_test():
    history = {"unit": "epoch", "epochs": [
        {"epoch": 1, "metrics": {}},
        {"epoch": 2, "metrics": {"average_mAP": 0.30, "val_average_mAP": 0.50}},
        {"epoch": 3, "metrics": {"average_mAP": 0.40, "val_average_mAP": 0.45}},
        {"epoch": 4, "metrics": {"average_mAP": 0.40, "val_average_mAP": 0.50}},  # ties: the earliest wins
        {"epoch": 5, "metrics": {"average_mAP": 0.35, "val_average_mAP": 0.40}},
    ]}
    sel = epoch_selection(history)
    assert (sel["last"]["epoch"], sel["best_on_val"]["epoch"], sel["best_on_test"]["epoch"]) == (5, 2, 3)
    assert sel["optimism"] == pytest.approx(0.10) and sel["best_on_test_minus_last"] == pytest.approx(0.05)
    assert sel["evaluations"] == 4 and sel["best_on_val"]["val"]["average_mAP"] == 0.50
    assert "TEST set" in format_epoch_selection(sel) and "+10.00 points" in format_epoch_selection(sel)
    no_val = epoch_selection({"epochs": [{"epoch": 1, "metrics": {"average_mAP": 0.2}}]})
    assert "best_on_val" not in no_val and "optimism" not in no_val
    assert epoch_selection({"epochs": [{"epoch": 1, "metrics": {}}]}) is None


@pytest.fixture(scope="module")
def val_run(tmp_path_factory):
    from tadkit.data.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("valrun")
    generate_dataset(root / "data", SynthConfig(seed=0, dim=16, videos=4, min_video_seconds=20,
                                                max_video_seconds=40, latent_dim=8), progress=False)
    (root / "tiny.yaml").write_text(
        "data:\n  annotations: data/annotations.json\n  features: data/features\n"
        "  window: 64\n  stride_train: 64\n  min_gt_coverage: 0.0\n  val_fraction: 0.5\n"
        f"model:\n  name: a2net\n  kwargs: {json.dumps(A2NET_TINY)}\n"
        "train:\n  epochs: 3\n  batch_size: 4\n  lr_decay_epochs: [2]\n  tensorboard: false\n  log_every: 0\n"
        "  eval_every: 1\n  best_metric: val_average_mAP\n"
    )
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", "tiny.yaml", "--out", "run", "--no-progress"]) == 0
        assert main(["test", "run/config.yaml", "--checkpoint", "run/last.pt", "--out", "out", "--no-plots",
                     "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
    return root


def test_training_with_a_validation_split_records_val_and_test_per_evaluation(val_run):
    from tadkit.data.annotations import load_annotations
    from tadkit.engine.config import load_config
    from tadkit.engine.data import build_train_data

    history = json.loads((val_run / "run" / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    for record in history["epochs"]:
        assert {"average_mAP", "val_average_mAP", "mAP@0.5", "val_mAP@0.5"} <= set(record["metrics"])
    assert history["best"]["metric"] == "val_average_mAP"
    config = load_config(val_run / "run" / "config.yaml")
    ann = load_annotations(config.data.annotations)
    held_out = set(validation_split(ann, config).subset(VAL_SUBSET).videos)
    trained_on = set(build_train_data(config).train.annotations.videos)
    train_videos, test_videos = set(ann.subset("validation").videos), set(ann.subset("test").videos)
    assert len(held_out) == 2 and trained_on and trained_on | held_out <= train_videos
    assert not trained_on & held_out and not held_out & test_videos


def test_tadkit_test_reports_the_epoch_choices_side_by_side(val_run):
    selection = json.loads((val_run / "out" / "epoch_selection.json").read_text())
    report = json.loads((val_run / "out" / "report.json").read_text())
    history = json.loads((val_run / "run" / "history.json").read_text())
    tests = [e["metrics"]["average_mAP"] for e in history["epochs"]]
    vals = [e["metrics"]["val_average_mAP"] for e in history["epochs"]]
    assert selection["last"]["epoch"] == 3
    assert selection["best_on_test"]["test"]["average_mAP"] == max(tests)
    assert selection["best_on_val"]["epoch"] == 1 + vals.index(max(vals))
    assert selection["optimism"] == pytest.approx(max(tests) - tests[vals.index(max(vals))], abs=1e-15)
    assert selection["optimism"] >= 0
    # the history's last test score is what `tadkit test` measures on last.pt (same pipeline)
    assert selection["last"]["test"]["average_mAP"] == pytest.approx(
        report["protocols"][report["primary_protocol"]]["average_mAP"], abs=1e-12)


def test_seed_summary_averages_the_epoch_choices():
    from tadkit.evaluation.seeds import format_summary, summarize_epoch_selection

    def history(tests, vals):
        return {"epochs": [{"epoch": i + 1, "metrics": {"average_mAP": t, "val_average_mAP": v}}
                           for i, (t, v) in enumerate(zip(tests, vals))]}

    selections = {0: epoch_selection(history([0.3, 0.5, 0.4], [0.6, 0.2, 0.1])),
                  1: epoch_selection(history([0.2, 0.1, 0.3], [0.1, 0.1, 0.9])), 2: None}
    summary = summarize_epoch_selection(selections)
    assert summary["optimism"]["n"] == 2 and summary["optimism"]["mean"] == pytest.approx((0.2 + 0.0) / 2)
    assert summary["last"]["mean"] == pytest.approx(0.35) and summary["best_on_test"]["max"] == pytest.approx(0.5)
    assert set(summary["per_seed"]) == {"0", "1"}
    text = format_summary({"n": 2, "seeds": [0, 1], "primary_protocol": "p", "epoch_selection": summary,
                           "protocols": {"p": {"tiou": [], "mAP": [], "average_mAP": {"mean": None, "n": 0},
                                               "per_class": {}}},
                           "per_duration": {"protocol": "p", "tiou": [0.5], "bins": []}})
    assert "optimism: best on test - best on validation" in text


def test_a_malformed_history_is_one_clear_error(tmp_path):
    from tadkit.evaluation.epoch_selection import read_epoch_selection

    assert read_epoch_selection(tmp_path / "missing.json") is None
    path = tmp_path / "history.json"
    for text in ("{", "[1, 2]", '{"epochs": [{"epoch": "x", "metrics": {"average_mAP": 0.1}}]}',
                 '{"epochs": [{"epoch": 1, "metrics": {"average_mAP": "high"}}, {"epoch": 2, "metrics": {"average_mAP": 0.1}}]}'):
        path.write_text(text)
        with pytest.raises(TadkitError) as info:
            read_epoch_selection(path)
        assert info.value.file == str(path)
