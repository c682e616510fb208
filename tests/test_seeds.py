"""`tadkit train --seeds` / `tadkit test DIR`: one run per seed, and a summary that is exactly the
statistics of the seeds' own reports (two tiny A2Net seeds on synthetic features)."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from tadkit.cli import main
from tadkit.engine.seeds import parse_seeds, plan_seeds, read_manifest, run_finished
from tadkit.errors import TadkitError
from tadkit.evaluation.seeds import combined_interval, describe, summarize_seeds

DOCS = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
A2NET_TINY = {"in_dim": 16, "base_dim": 8, "pyramid_dims": [8, 8, 8, 8, 8, 8], "reduce_dim": 8, "head_dim": 8,
              "num_classes": 20, "window": 64}


def doc_commands(section: str) -> list[str]:
    """The `tadkit ...` lines of the first ```bash block after ``section`` in docs/evaluation.md."""
    text = DOCS.read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(section):], re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip().startswith("tadkit ")]


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    """The docs' commands, as written, in a directory holding tiny.yaml and its synthetic data."""
    from tadkit.data.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("seeds")
    generate_dataset(root / "data", SynthConfig(seed=0, dim=16, videos=3, min_video_seconds=20,
                                                max_video_seconds=40, latent_dim=8), progress=False)
    (root / "tiny.yaml").write_text(
        "data:\n  annotations: data/annotations.json\n  features: data/features\n"
        "  window: 64\n  stride_train: 64\n  min_gt_coverage: 0.0\n"
        f"model:\n  name: a2net\n  kwargs: {json.dumps(A2NET_TINY)}\n"
        "train:\n  epochs: 2\n  batch_size: 4\n  lr_decay_epochs: [1]\n  tensorboard: false\n  log_every: 0\n"
        "test:\n  nms: {preset: a2net, max_per_video: 100}\n"
    )
    cwd = os.getcwd()
    os.chdir(root)
    try:
        commands = doc_commands("### Several training seeds")
        assert [c.split()[1] for c in commands] == ["train", "test"]
        for command in commands:
            assert main(shlex.split(command)[1:] + ["--no-progress"]) == 0, command
    finally:
        os.chdir(cwd)
    return root


def test_each_seed_is_its_own_run(seeds_run):
    import torch

    runs = seeds_run / "runs" / "tiny"
    assert read_manifest(runs)["seeds"] == [0, 1]
    weights = []
    for seed in (0, 1):
        assert f"seed: {seed}\n" in (runs / f"seed_{seed}" / "config.yaml").read_text()
        state = torch.load(runs / f"seed_{seed}" / "last.pt", weights_only=True)["model"]
        weights.append(torch.cat([v.flatten().float() for v in state.values()]))
    assert not torch.equal(weights[0], weights[1])  # different seeds, different models


def test_summary_is_the_statistics_of_the_seeds_own_reports(seeds_run):
    out = seeds_run / "results" / "tiny"
    summary = json.loads((out / "summary.json").read_text())
    reports = [json.loads((out / f"seed_{s}" / "report.json").read_text()) for s in (0, 1)]
    assert summary["seeds"] == [0, 1] and summary["n"] == 2
    assert (out / "summary.txt").read_text().startswith("2 seed(s) [0, 1]")

    def check(stats, values):
        values = np.asarray(values, dtype=float)
        assert stats["n"] == len(values)
        assert stats["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert stats["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert (stats["min"], stats["max"]) == (pytest.approx(values.min()), pytest.approx(values.max()))

    assert set(summary["protocols"]) == {"thumos14", "activitynet"}
    for protocol, entry in summary["protocols"].items():
        results = [r["protocols"][protocol] for r in reports]
        for i in range(len(entry["tiou"])):
            check(entry["mAP"][i], [r["mAP"][i] for r in results])
        check(entry["average_mAP"], [r["average_mAP"] for r in results])
        for name, per_class in entry["per_class"].items():
            check(per_class["average"], [np.mean(r["per_class"][name]) for r in results])
            check(per_class["AP"][0], [r["per_class"][name][0] for r in results])
        combined = entry["combined"]
        assert combined["n_seeds"] == 2 and combined["n_resamples"] == 200
        assert combined["average_mAP"]["seed_std"] == pytest.approx(entry["average_mAP"]["std"], abs=1e-12)
        low, high = combined["average_mAP"]["ci"]
        assert 0.0 <= low <= high <= 1.0
    for i, bin_ in enumerate(summary["per_duration"]["bins"]):
        rows = [r["per_duration"]["bins"][i] for r in reports if r["per_duration"]["bins"][i]["num_gt"]]
        assert bin_["mAP"][0]["n"] == len(rows)
        if rows:
            check(bin_["mAP"][0], [row["mAP"][0] for row in rows])
    # each seed was tested on its own model (different detections)
    assert (out / "seed_0" / "results.json").read_text() != (out / "seed_1" / "results.json").read_text()


def test_rerun_without_resume_is_refused_and_resume_skips_finished_seeds(seeds_run, capsys, monkeypatch):
    monkeypatch.chdir(seeds_run)
    before = (seeds_run / "runs" / "tiny" / "seed_0" / "last.pt").stat().st_mtime_ns
    assert main(["train", "tiny.yaml", "--seeds", "0,1", "--out", "runs/tiny", "--no-progress"]) == 2
    assert "seed 0 already holds a training run" in capsys.readouterr().err
    assert main(["train", "tiny.yaml", "--seeds", "0,1", "--out", "runs/tiny", "--resume", "--no-progress"]) == 0
    assert "seeds [0, 1] already finished" in capsys.readouterr().out
    assert (seeds_run / "runs" / "tiny" / "seed_0" / "last.pt").stat().st_mtime_ns == before
    # one directory, one configuration: other overrides are refused, not mixed into the seeds
    assert main(["train", "tiny.yaml", "--seeds", "2", "--out", "runs/tiny", "--resume", "--no-progress",
                 "--set", "train.lr=0.5"]) == 2
    assert "one directory, one configuration" in capsys.readouterr().err
    assert read_manifest(seeds_run / "runs" / "tiny")["seeds"] == [0, 1]


def test_plan_continues_only_unfinished_seeds(tmp_path):
    from tadkit.engine.config import Config

    config = Config.from_dict({"train": {"epochs": 3}})
    for seed, epochs in ((0, 3), (1, 1)):
        run = tmp_path / f"seed_{seed}"
        run.mkdir()
        (run / "last.pt").write_bytes(b"")
        (run / "history.json").write_text(json.dumps({"epochs": [{"epoch": e} for e in range(1, epochs + 1)]}))
    assert run_finished(tmp_path / "seed_0", config) and not run_finished(tmp_path / "seed_1", config)
    plans = plan_seeds([0, 1, 2], tmp_path, config, True, ["0", "cpu"])
    assert [(p.seed, p.resume, p.device) for p in plans] == [(1, True, "cpu"), (2, True, "0")]
    with pytest.raises(TadkitError, match="seed 0 already holds"):
        plan_seeds([0], tmp_path, config, False, [])


def test_parallel_children_get_their_seed_and_device():
    import argparse

    from tadkit.engine.seeds import SeedPlan, _child_command

    args = argparse.Namespace(config="c.yaml", overrides=["train.lr=0.1"])
    command, env = _child_command(args, SeedPlan(3, Path("out/seed_3"), True, "1"))
    assert command[2:5] == ["tadkit.cli", "train", "c.yaml"]
    assert command[command.index("--out") + 1] == "out/seed_3"
    assert ["--set", "train.seed=3"] == command[command.index("train.seed=3") - 1: command.index("train.seed=3") + 1]
    assert command[-1] == "--resume" and env["CUDA_VISIBLE_DEVICES"] == "1"
    command, env = _child_command(args, SeedPlan(0, Path("o"), False, "cpu"))
    assert "train.device=cpu" in command and "--resume" not in command


@pytest.mark.parametrize("text", ["", "a,b", "0,0", "-1"])
def test_bad_seed_lists_are_refused(text):
    with pytest.raises(TadkitError):
        parse_seeds(text)


def test_bad_seed_list_exits_2_naming_the_flag(capsys):
    assert main(["train", "x.yaml", "--seeds", "1,1"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_combined_interval_of_one_seed_is_the_single_run_bootstrap():
    from tadkit.data.records import AnnotationSet, DetectionSet, VideoAnnotation, Segment
    from tadkit.evaluation.bootstrap import bootstrap, bootstrap_replicates

    rng = np.random.default_rng(0)
    videos = {f"v{i}": VideoAnnotation(video_id=f"v{i}", subset="test", duration=100.0,
                                       segments=[Segment(float(s), float(s) + 5.0, "a")
                                                 for s in rng.uniform(0, 90, 3)]) for i in range(12)}
    gt = AnnotationSet(videos=videos, classes=["a"], source="t")
    n = 60
    start = rng.uniform(0, 95, n)
    dets = DetectionSet(np.array([f"v{i % 12}" for i in range(n)], dtype=object), start, start + 5.0,
                        np.array(["a"] * n, dtype=object), rng.random(n))
    result, replicates = bootstrap_replicates(gt, dets, "thumos14", 300, 7)
    _, single = bootstrap(gt, dets, "thumos14", 300, 7)
    combined = combined_interval([result.mAP], [replicates])
    assert combined["average_mAP"]["ci"] == pytest.approx(
        [min(max(v, 0.0), 1.0) for v in single.average_mAP_ci], abs=1e-12)
    assert combined["average_mAP"]["seed_std"] is None
    # Two seeds with the same replicates but shifted point estimates: the seed spread widens it.
    shifted = combined_interval([result.mAP, [m + 0.1 for m in result.mAP]], [replicates, replicates + 0.1])
    assert shifted["average_mAP"]["seed_std"] == pytest.approx(0.1 / np.sqrt(2), abs=1e-12)
    assert shifted["average_mAP"]["pooled_std"] > combined["average_mAP"]["pooled_std"]


def test_describe_and_mismatched_reports():
    assert describe([0.5]) == {"mean": 0.5, "std": None, "min": 0.5, "max": 0.5, "n": 1}
    base = {"primary_protocol": "thumos14", "protocols": {"thumos14": {"tiou": [0.5], "mAP": [0.1],
                                                                       "average_mAP": 0.1, "per_class": {}}},
            "per_duration": {"protocol": "thumos14", "tiou": [0.5], "bins": []}}
    other = json.loads(json.dumps(base))
    other["protocols"]["thumos14"]["tiou"] = [0.7]
    with pytest.raises(TadkitError, match="tiou"):
        summarize_seeds({0: base, 1: other})


def test_methods_table_seed_aggregation_is_mean_and_sample_std():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "methods_table.py"
    spec = importlib.util.spec_from_file_location("methods_table_under_test", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    rng = np.random.default_rng(1)
    rows = {}
    for seed in (0, 1, 2):
        m = rng.uniform(0, 50, 7).tolist()
        rows[seed] = {"supervision": "full", "length": "2 ep", "tiou": table.TIOU, "detections": 10, "mAP": m,
                      "average": float(np.mean(m)), "mAP_thumos14": [v / 2 for v in m],
                      "average_thumos14": float(np.mean(m)) / 2, "seconds_per_epoch": 1.0 + seed,
                      "seconds_per_100_steps": 2.0, "train_seconds": 3.0, "wall_seconds": 4.0,
                      "per_duration": {"ES": (m[4], 5), "L": (m[0], 7)}}
    agg = table.aggregate_seeds(rows)
    mAP = np.array([rows[s]["mAP"] for s in (0, 1, 2)])
    np.testing.assert_allclose(agg["mAP"], mAP.mean(0), atol=1e-12)
    np.testing.assert_allclose(agg["mAP_std"], mAP.std(0, ddof=1), atol=1e-12)
    assert agg["per_duration"]["ES"] == (pytest.approx(mAP[:, 4].mean()), 5)
    assert agg["per_duration_std"]["L"] == pytest.approx(mAP[:, 0].std(ddof=1))
    assert "seed 2:" in table.format_seed_table({"a2net": agg})


def test_parallel_seeds_run_as_separate_processes_and_resume_adds_a_seed(seeds_run, monkeypatch, capsys):
    # One epoch each, two at once (separate `tadkit train` processes, logs in DIR/logs), on the CPU.
    monkeypatch.chdir(seeds_run)
    args = ["train", "tiny.yaml", "--out", "runs/par", "--no-progress", "--set", "train.epochs=1",
            "--set", "train.lr_decay_epochs=[1]", "--parallel", "2", "--devices", "cpu"]
    assert main(args + ["--seeds", "5,6"]) == 0
    for seed in (5, 6):
        run = seeds_run / "runs" / "par" / f"seed_{seed}"
        assert json.loads((run / "history.json").read_text())["epochs"][-1]["epoch"] == 1
        assert f"seed: {seed}\n" in (run / "config.yaml").read_text()
        assert "device: cpu" in (run / "config.yaml").read_text()
        assert (seeds_run / "runs" / "par" / "logs" / f"seed_{seed}.log").exists()
    before = (seeds_run / "runs" / "par" / "seed_5" / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args + ["--seeds", "5,6,7", "--resume"]) == 0  # 5 and 6 are finished: only 7 trains
    out = capsys.readouterr().out
    assert "seeds [5, 6] already finished" in out and "seed 7: done" in out
    assert (seeds_run / "runs" / "par" / "seed_5" / "last.pt").stat().st_mtime_ns == before
    assert read_manifest(seeds_run / "runs" / "par")["seeds"] == [5, 6, 7]
