"""External video-level labels for class-agnostic proposals (AFSD/A2Net ActivityNet rule), a weak model's
video_scores.json, class-agnostic training data, and RGB + flow output fusion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError
from tadkit.postprocess.video_classifier import (
    FusedModel,
    fuse_video_labels,
    load_video_scores,
    write_video_scores,
)

CLASSES = ["Archery", "Bowling", "Cricket", "Diving", "Fencing"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cuhk_file(tmp_path: Path) -> Path:
    """CUHK layout: keys without ActivityNet's ``v_`` prefix, one score per class, extra keys ignored."""
    data = {
        "version": "cuhk-2017",
        "class": CLASSES,
        "results": {
            "aaa": [0.1, 0.6, 0.05, 0.2, 0.05],
            "bbb": [0.3, 0.3, 0.3, 0.05, 0.05],  # a three-way tie: lower index first (np.argmax's pick)
            "v_ccc": [0.0, 0.0, 0.0, 0.0, 1.0],  # stored with the prefix
        },
    }
    path = tmp_path / "cuhk_val_simp_share.json"
    path.write_text(json.dumps(data))
    return path


def proposals() -> DetectionSet:
    rng = np.random.default_rng(0)
    videos = np.array(["v_aaa"] * 4 + ["v_bbb"] * 3 + ["v_ccc"] * 2, dtype=object)
    start = rng.uniform(0, 50, len(videos))
    return DetectionSet(videos, start, start + rng.uniform(1, 10, len(videos)), np.array(["action"] * len(videos), object),
                        rng.uniform(0.01, 1.0, len(videos)))


def loop_rule(dets: DetectionSet, path: Path, k: int) -> list[tuple[str, float, float, str, float]]:
    """The official rule restated with plain loops (AFSD anet/test.py for k = 1: label = class[argmax],
    score = proposal x max; top-k the same per rank)."""
    data = json.loads(path.read_text())
    rows = []
    for i in range(len(dets)):
        video = str(dets.video[i])
        key = video[2:] if video[2:] in data["results"] else video
        s = list(data["results"][key])
        ranked = sorted(range(len(s)), key=lambda c: (-s[c], c))[:k]
        for c in ranked:
            rows.append((video, dets.start[i], dets.end[i], data["class"][c], dets.score[i] * s[c]))
    return rows


@pytest.mark.parametrize("k", [1, 2, 3])
def test_fused_labels_and_scores_equal_the_official_rule(tmp_path, k):
    path = cuhk_file(tmp_path)
    dets = proposals()
    fused = fuse_video_labels(dets, load_video_scores(path), topk=k)
    got = list(zip(fused.video, fused.start, fused.end, fused.label, fused.score))
    expected = loop_rule(dets, path, k)
    assert len(got) == len(expected) == k * len(dets)
    for g, e in zip(got, expected):
        assert g[0] == e[0] and g[3] == e[3], (g, e)
        np.testing.assert_allclose(g[1:3], e[1:3], rtol=0, atol=0)
        assert g[4] == pytest.approx(e[4], rel=1e-12)
    if k == 1:  # the tie in "bbb" goes to the first class, as np.argmax in the official test
        assert set(fused.label[fused.video == "v_bbb"]) == {"Archery"}
        assert set(fused.label[fused.video == "v_ccc"]) == {"Fencing"}


def test_missing_video_and_malformed_rows_are_errors_naming_them(tmp_path):
    path = cuhk_file(tmp_path)
    dets = DetectionSet(np.array(["v_zzz"], object), np.zeros(1), np.ones(1), np.array(["action"], object), np.ones(1))
    with pytest.raises(TadkitError) as error:
        fuse_video_labels(dets, load_video_scores(path))
    assert error.value.video == "v_zzz"
    assert len(fuse_video_labels(dets, load_video_scores(path), missing="drop")) == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"class": CLASSES, "results": {"aaa": [0.5, 0.5]}}))
    with pytest.raises(TadkitError) as error:
        load_video_scores(bad)
    assert error.value.field == "results.aaa" and "5 finite scores" in error.value.message
    bad.write_text(json.dumps({"results": {}}))
    with pytest.raises(TadkitError) as error:
        load_video_scores(bad)
    assert error.value.field == "class"


def test_write_then_load_round_trips(tmp_path):
    scores = {"v1": np.array([0.25, 0.5, 0.125]), "v2": np.array([1.0, 0.0, 0.0])}
    path = write_video_scores(tmp_path / "s.json", scores, ["a", "b", "c"])
    loaded = load_video_scores(path)
    assert loaded.classes == ["a", "b", "c"]
    assert set(loaded.scores) == {"v1", "v2"}
    np.testing.assert_array_equal(loaded.scores["v1"], scores["v1"])


# ------------------------------------------------------------------------------------------------
# A weak model's video scores: `tadkit test` of an ECM model writes video_scores.json
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from tadkit.cli import main

    out = tmp_path_factory.mktemp("vc_synth")
    assert main(["data", "synth", "--out", str(out), "--seed", "0", "--dim", "32", "--videos", "4"]) == 0
    return out


def config_for(name: str, synth: Path, **extra):
    from tadkit.engine.config import load_config

    sets = [f"data.annotations={synth / 'annotations.json'}", f"data.features={synth / 'features'}",
            "model.kwargs.in_dim=32", *[f"{k}={v}" for k, v in extra.items()]]
    return load_config(name, sets)


def test_weak_model_video_scores_round_trip_into_the_fusion(synth, tmp_path):
    from tadkit.data.dataset import collate_videos
    from tadkit.engine.data import build_dataset
    from tadkit.models import build_model
    from tadkit.pipeline import run_test

    config = config_for("ecm/synthetic", synth, **{"data.resample_length": 32, "model.kwargs.hidden_dim": 16,
                                                    "test.cas.class_threshold": 0.0})
    torch.manual_seed(0)
    model = build_model("ecm", **{**config.model.kwargs, "num_classes": 20})
    outputs = run_test(model, config, tmp_path / "test", progress=False)
    path = outputs.files["video_scores"]
    assert path.name == "video_scores.json"
    loaded = load_video_scores(path)
    dataset = build_dataset(config, training=False, progress=False)
    assert loaded.classes == list(dataset.annotations.classes)
    assert set(loaded.scores) == set(dataset.annotations.videos)
    model.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            batch = collate_videos([dataset[i]])
            direct = model(batch)["video_scores"][0].double().numpy()
            np.testing.assert_allclose(loaded.scores[batch["meta"][0]["video_id"]], direct, rtol=1e-6, atol=1e-7)
    # ...and it labels proposals with the rule of the external file
    video = sorted(loaded.scores)[0]
    dets = DetectionSet(np.array([video], object), np.zeros(1), np.ones(1), np.array(["action"], object), np.full(1, 0.5))
    fused = fuse_video_labels(dets, loaded)
    best = int(np.argmax(loaded.scores[video]))
    assert fused.label[0] == loaded.classes[best]
    assert fused.score[0] == pytest.approx(0.5 * loaded.scores[video][best])


def test_class_agnostic_training_collapses_labels_but_test_keeps_them(synth):
    from tadkit.engine.data import build_dataset

    config = config_for("a2net/synthetic", synth, **{"data.class_agnostic": "true", "model.kwargs.num_classes": 1})
    train = build_dataset(config, training=True, progress=False)
    test = build_dataset(config, training=False, progress=False)
    assert train.annotations.classes == ["action"]
    labels = {s.label for v in train.annotations.videos.values() for s in v.segments}
    assert labels == {"action"}
    assert len(test.annotations.classes) > 1
    assert sum(len(v.segments) for v in train.annotations.videos.values()) > 0


# ------------------------------------------------------------------------------------------------
# RGB + flow: averaged raw outputs
# ------------------------------------------------------------------------------------------------


def test_fused_outputs_are_the_mean_of_each_stream_model_on_its_slice():
    from tadkit.models import build_model

    tiny = dict(in_dim=16, base_dim=32, pyramid_dims=[32] * 6, reduce_dim=32, head_dim=32, num_classes=3)
    torch.manual_seed(0)
    rgb, flow = build_model("a2net", **tiny).eval(), build_model("a2net", **tiny).eval()
    fused = FusedModel([rgb, flow], streams=[[0, 16], [16, 32]]).eval()
    x = torch.randn(2, 32, 128)
    with torch.no_grad():
        out = fused({"features": x})
        a, b = rgb({"features": x[:, :16]}), flow({"features": x[:, 16:]})
    floats = [k for k, v in a.items() if torch.is_tensor(v) and v.is_floating_point()]
    assert floats and set(out) == set(a)
    for key in floats:
        torch.testing.assert_close(out[key], (a[key] + b[key]) / 2, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(a[key], b[key])  # the two models differ, so the mean is not trivial
    assert fused.config_dict()["in_dim"] == 32
    meta = [{"video_id": f"v{i}", "t0": 0.0, "step": 4.0, "valid_length": 128} for i in range(2)]
    assert len(fused.decode(out, {"features": x, "meta": meta})) == 2
    with pytest.raises(TadkitError):
        FusedModel([rgb, flow], streams=[[0, 16]])
    with pytest.raises(TadkitError):
        fused({"features": torch.randn(1, 24, 128)})


def test_cli_test_fuses_two_stream_checkpoints_and_labels_with_the_video_classifier(synth, tmp_path):
    """`tadkit test --checkpoint rgb.pt --fuse flow.pt` with test.fuse_streams and test.video_classifier:
    every written detection carries its video's top-1 class of the scores file."""
    from tadkit.cli import main
    from tadkit.engine.checkpoint import CHECKPOINT_FORMAT
    from tadkit.models import build_model

    tiny = dict(in_dim=16, base_dim=32, pyramid_dims=[32] * 6, reduce_dim=32, head_dim=32, num_classes=1)
    paths = []
    for seed, name in ((0, "rgb.pt"), (1, "flow.pt")):
        torch.manual_seed(seed)
        model = build_model("a2net", **tiny)
        paths.append(tmp_path / name)
        torch.save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_name": "a2net",
                    "model_config": model.config_dict()}, paths[-1])
    gt = json.loads((synth / "annotations.json").read_text())["database"]
    test_videos = sorted(v for v, info in gt.items() if info["subset"] == "test")
    rng = np.random.default_rng(0)
    names = [f"class{i}" for i in range(7)]
    scores = {v: rng.dirichlet(np.ones(len(names))) for v in test_videos}
    classifier = write_video_scores(tmp_path / "scores.json", scores, names)
    out = tmp_path / "out"
    code = main(["test", "a2net/synthetic", "--checkpoint", str(paths[0]), "--fuse", str(paths[1]),
                 "--set", f"data.annotations={synth / 'annotations.json'}", "--set", f"data.features={synth / 'features'}",
                 "--set", "test.fuse_streams=[[0, 16], [16, 32]]", "--set", f"test.video_classifier={classifier}",
                 "--out", str(out), "--no-plots", "--no-progress"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert results
    for video, rows in results.items():
        best = int(np.argmax(scores[video]))
        assert {r["label"] for r in rows} == {names[best]}
        assert all(r["score"] <= scores[video][best] + 1e-9 for r in rows)  # proposal score <= 1 times the class score
    report = json.loads((out / "report.json").read_text())
    assert report["video_classifier"] == str(classifier)
    assert str(classifier) in (out / "report.txt").read_text()


def test_a_missing_video_classifier_stops_training_before_the_first_epoch(synth, tmp_path, capsys):
    """test.video_classifier is read when `tadkit train` starts (with in-training evaluation) and when
    `tadkit test` starts, not at the first evaluation epochs into the run."""
    from tadkit.cli import main

    missing = tmp_path / "nowhere" / "scores.json"
    run = tmp_path / "run"
    data = ["--set", f"data.annotations={synth / 'annotations.json'}", "--set", f"data.features={synth / 'features'}"]
    code = main(["train", "a2net/synthetic", *data, "--set", f"test.video_classifier={missing}",
                 "--set", "train.eval_every=4", "--set", "train.epochs=8", "--out", str(run), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "test.video_classifier" in err and str(missing) in err and "does not exist" in err
    assert not list(run.glob("*.pt"))  # stopped before training
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code = main(["test", "a2net/synthetic", *data, "--set", f"test.video_classifier={bad}",
                 "--checkpoint", str(tmp_path / "unused.pt"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "results" in err  # the classifier file is read before the checkpoint
