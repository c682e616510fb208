"""AFSD end to end on ActivityNet (`afsd/anet13_frames`): the ActivityNet clip plan and contrastive copy against
literal re-statements of the official ``AFSD/common/anet_dataset.py``, the per-video-rate frame store of
``tadkit data frames --max-frames``, the shipped config's model, and a tiny CLI run (synthetic video ->
frames at most N per video -> train -> test with a video-level classifier)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tadkit.cli import main
from tadkit.data.frames import FrameClipDataset, FrameStore, contrastive_augment
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError

# ---- literal re-statements of the official code ----------------------------------------------------


def official_anet_split(annos: list[list[float]], clip_length: int):
    """``split_videos`` of anet_dataset.py for one video: (annos, th = int(floor(min_anno) / 4)) or None."""
    kept = [[a[0], a[1], a[2]] for a in annos if not a[1] <= a[0]]
    if not kept:
        return None
    min_anno = min(clip_length, min(x[1] - x[0] for x in kept))
    return kept, int(math.floor(min_anno) / 4)


def official_anet_augment(clip: torch.Tensor, annos: list[list[float]], th: int, rng: random.Random):
    """``ANET_Dataset.augment(..., max_iter=1)``; None where the official returns flag False."""
    try:
        gt = rng.choice(list(filter(lambda x: x[1] - x[0] >= 2 * th, annos)))
    except IndexError:
        return None
    t = rng.choice(range(math.floor(th), math.ceil(gt[1] - gt[0] - th))) + math.ceil(gt[0])
    length = clip.shape[1]
    spans = [[a[0], a[1]] for a in annos]
    times = sorted([v for a in spans for v in a] + [0, length - 1])
    regions = [[times[i], times[i + 1]] for i in range(len(times) - 1)]
    regions = [x for x in regions if x not in spans and math.floor(x[1]) - math.ceil(x[0]) > th]
    if not regions:
        return None
    region = rng.choice(regions)
    bg = [math.ceil(region[0]), math.floor(region[1])]
    start = rng.choice(range(bg[1] - bg[0] - th)) + bg[0]
    end = start + th
    out = clip.clone()
    try:
        if gt[1] < start:
            out[:, t:t + th] = clip[:, start:end]
            out[:, t + th:end] = clip[:, t:start]
            segs = [[gt[0], t], [t + th, th + gt[1]], [t + 1, t + th - 1]]
        else:
            out[:, start:t - th] = clip[:, end:t]
            out[:, t - th:t] = clip[:, start:end]
            segs = [[gt[0] - th, t - th], [t, gt[1]], [t - th + 1, t - 1]]
    except RuntimeError:
        return None
    return out, np.asarray(segs, dtype=np.float64)


def write_store(root: Path, videos: dict[str, tuple[int, float]], size: int = 20) -> Path:
    """A `tadkit data frames --max-frames` store: per video (frames, its own fps)."""
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for video, (count, _) in videos.items():
        np.save(root / "rgb" / f"{video}.npy", rng.integers(0, 256, (count, size, size, 3)).astype(np.uint8))
    manifest = {"format": "tadkit-frames", "version": 1, "fps": None, "max_frames": 64, "size": [size, size],
                "streams": ["rgb"],
                "videos": {v: {"num_frames": n, "native_fps": 30.0, "native_frames": 300, "duration": 10.0, "fps": fps,
                               "source": f"{v}.mp4"} for v, (n, fps) in videos.items()}}
    (root / "frames.json").write_text(json.dumps(manifest))
    return root


def annotations(spec: dict[str, list[tuple[float, float, str]]], duration: float = 10.0) -> AnnotationSet:
    videos = {vid: VideoAnnotation(video_id=vid, subset="training", duration=duration,
                                   segments=[Segment(s, e, label) for s, e, label in segs]) for vid, segs in spec.items()}
    return AnnotationSet(videos=videos, classes=["a", "b"])


# ---- clip plan, augmentation, store -----------------------------------------------------------------


def test_activitynet_plan_equals_official_split_videos(tmp_path: Path) -> None:
    """One clip at offset 0 with every GT in the video's own frames, unclipped (a GT from 0 s and one running
    past the clip are kept: the THUMOS14 plan drops such a video), th = int(floor(shortest) / 4)."""
    store = FrameStore(write_store(tmp_path, {"v1": (50, 6.4), "v2": (64, 4.0)}))
    spec = {"v1": [(0.0, 2.5, "a"), (3.0, 7.81, "b")], "v2": [(1.0, 17.0, "a")]}
    data = FrameClipDataset(annotations(spec), store, subset="training", clip_length=64, stride=64, crop=16,
                            clip_plan="activitynet")
    assert [(c.video_id, c.offset) for c in data.clips] == [("v1", 0), ("v2", 0)]
    for clip in data.clips:
        fps = store.video_fps(clip.video_id)
        gts = [[s * fps, e * fps, ["a", "b"].index(label)] for s, e, label in spec[clip.video_id]]
        expected, th = official_anet_split(gts, 64)
        np.testing.assert_allclose(clip.gts, np.asarray(expected), rtol=0, atol=1e-9)
        assert clip.th == th
    sample = data[0]
    assert sample["meta"]["step"] == pytest.approx(1 / 6.4) and sample["meta"]["t0"] == 0.0
    with pytest.raises(TadkitError, match="no training clips"):  # the THUMOS14 rule: no GT wholly in [1, 64]
        FrameClipDataset(annotations({"v2": spec["v2"]}), store, subset="training", clip_length=64, stride=64, crop=16)


def test_activitynet_training_pads_to_zero(tmp_path: Path) -> None:
    """anet_dataset.py pads a short clip with 127.5 before normalising (-> 0); THUMOS14 with 0 (-> -1)."""
    store = FrameStore(write_store(tmp_path, {"short": (40, 5.0)}))
    ann = annotations({"short": [(1.0, 5.0, "a")]})
    kwargs = dict(subset="training", clip_length=64, crop=20, contrastive=False)
    torch.manual_seed(1)
    anet = FrameClipDataset(ann, store, clip_plan="activitynet", **kwargs)[0]["clip"]
    thumos = FrameClipDataset(ann, store, **kwargs)[0]["clip"]
    assert bool((anet[:, 40:] == 0).all()) and bool((thumos[:, 40:] == -1).all())
    assert not bool((anet[:, :40] == 0).all())


def test_activitynet_contrastive_augment_equals_official() -> None:
    length, augmented = 64, 0
    clip = torch.arange(length, dtype=torch.float32).view(1, length, 1, 1).expand(2, length, 3, 3).clone()
    for seed in range(300):
        rng = np.random.default_rng(500 + seed)
        starts = np.sort(rng.uniform(0, length - 6, int(rng.integers(1, 4))))
        annos = [[float(s), float(min(s + w, length + 4)), 1] for s, w in zip(starts, rng.uniform(2, 40, len(starts)))]
        th = int(rng.integers(1, 8))
        ours = contrastive_augment(clip, np.asarray(annos), th, choice=random.Random(seed)._randbelow, plan="activitynet")
        try:
            theirs = official_anet_augment(clip, annos, th, random.Random(seed))
        except IndexError:  # the official crashes where no split point exists; tadkit gives no copy
            theirs = None
        assert (ours is None) == (theirs is None), seed
        if ours is not None:
            augmented += 1
            torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=0)
            np.testing.assert_array_equal(ours[1], theirs[1])
    assert 40 < augmented < 300  # both outcomes exercised


def test_max_frames_store_rates_are_data_checked(tmp_path: Path) -> None:
    """frames.json is data: a bad per-video rate is one error naming the file, video and field; an existing
    directory made with other --max-frames is refused before anything is written."""
    from tadkit.video.frames import FrameSettings, check_index, read_index

    root = write_store(tmp_path / "ok", {"v1": (50, 6.4)})
    with pytest.raises(TadkitError, match="made with max_frames 64") as err:
        check_index(read_index(root), FrameSettings(), root / "frames.json")
    assert err.value.field == "max_frames"
    check_index(read_index(root), FrameSettings(size=20, max_frames=64), root / "frames.json")  # the same: fine
    for bad in (0.0, -3.0, None):
        broken = write_store(tmp_path / f"bad{bad}", {"v1": (50, 6.4)})
        index = json.loads((broken / "frames.json").read_text())
        index["videos"]["v1"]["fps"] = bad
        (broken / "frames.json").write_text(json.dumps(index))
        with pytest.raises(TadkitError) as err:
            FrameStore(broken)
        assert str(broken / "frames.json") in str(err.value)
        if bad is not None:
            assert err.value.video == "v1" and err.value.field == "videos.v1.fps"


def test_max_frames_store_needs_the_config_to_say_so(tmp_path: Path) -> None:
    from tadkit.engine.config import load_config
    from tadkit.engine.data import build_frame_dataset

    root = write_store(tmp_path / "frames", {"v1": (50, 6.4)})
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"database": {"v1": {"subset": "training", "duration": 10.0, "annotations": [
        {"segment": [1.0, 4.0], "label": "a"}]}}}))
    sets = [f"data.frames={root}", f"data.annotations={ann}", "data.frame_size=20", "data.window=64",
            "data.stride_train=64", "data.crop_size=16", "model.kwargs.backbone_weights=null"]
    config = load_config("afsd/anet13_frames", sets + ["data.frame_max_frames=null"])
    with pytest.raises(TadkitError, match="at most 64 frames per video") as err:
        build_frame_dataset(config, training=True)
    assert err.value.field == "data.frame_max_frames"
    config = load_config("afsd/anet13_frames", sets + ["data.frame_max_frames=64"])
    assert len(build_frame_dataset(config, training=True)) == 1


def test_anet13_frames_config_builds_the_official_activitynet_model() -> None:
    """The shipped config: Mixed_5c-only pyramid (1024 channels, 3 x 3 at 96 crops), 2 outputs, levels
    96 .. 3 on a 768-frame clip with the official strides / ranges, SSL scales (1, 4, 4), backbone group 1e-5."""
    from tadkit.engine.config import load_config
    from tadkit.engine.trainer import build_optimizer
    from tadkit.methods import get_method

    config = load_config("afsd/anet13_frames", ["model.kwargs.backbone_weights=null"])
    model = get_method(config.model.name).build(**config.model.kwargs)
    cfg = model.config
    assert cfg.pyramid_taps == "mixed_5c" and cfg.num_outputs == 2 and cfg.clip_length == 768
    level0 = model.coarse_pyramid_detection.pyramids[0][0].conv3d
    assert level0.in_channels == 1024 and level0.kernel_size == (1, 3, 3)
    assert "pyramids.1.0.conv3d.weight" not in model.coarse_pyramid_detection.state_dict()
    assert model.triplet_scales(96) == (1.0, 4.0, 4.0)
    with torch.no_grad():
        out = model.coarse_pyramid_detection.head(*model.coarse_pyramid_detection.pyramid(
            (None, torch.randn(1, 1024, 96, 3, 3))))
    assert out["loc"].shape == (1, 96 + 48 + 24 + 12 + 6 + 3, 2) and out["start"].shape[1] == 768
    backbone, head = build_optimizer(model, config).param_groups
    assert backbone["lr"] == 1e-5 and head["lr"] == 1e-4 and backbone["weight_decay"] == head["weight_decay"] == 1e-4


# ---- the CLI, end to end -----------------------------------------------------------------------------

MAX_FRAMES = 48
TINY = [
    "--set", f"data.frame_max_frames={MAX_FRAMES}", "--set", "data.frame_size=64",
    "--set", f"data.window={MAX_FRAMES}", "--set", f"data.stride_train={MAX_FRAMES}",
    "--set", f"data.stride_test={MAX_FRAMES}", "--set", "data.crop_size=48",
    "--set", "data.subset_train=validation", "--set", "data.subset_test=validation",  # test on the training videos
    "--set", f"model.kwargs.clip_length={MAX_FRAMES}", "--set", "model.kwargs.crop_size=48",
    "--set", "model.kwargs.width=32", "--set", "model.kwargs.gn_groups=8",
    "--set", "model.kwargs.backbone_width=0.125", "--set", "model.kwargs.backbone_weights=null",
    "--set", "model.kwargs.freeze_bn=false",
    "--set", "train.epochs=4", "--set", "train.lr=1e-3", "--set", "train.tensorboard=false",
]


@pytest.fixture(scope="module")
def anet_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("afsd_anet_frames")
    data = root / "synth"
    assert main(["data", "synth", "--video", "--out", str(data), "--seed", "1", "--videos", "3",
                 "--subset", "validation", "--video-classes", "2", "--video-duration", "12"]) == 0
    frames = root / "frames"
    assert main(["data", "frames", str(data / "videos"), "--out", str(frames), "--size", "64",
                 "--max-frames", str(MAX_FRAMES)]) == 0
    gt = json.loads((data / "annotations.json").read_text())
    classes = sorted({a["label"] for v in gt["database"].values() for a in v["annotations"]})
    # a video classifier that puts each video's own class first with 0.9 (CUHK layout, ids without "v_")
    scores = {vid: [0.9 if c == info["annotations"][0]["label"] else 0.1 for c in classes]
              for vid, info in gt["database"].items()}
    classifier = root / "classifier.json"
    classifier.write_text(json.dumps({"results": scores, "class": classes}))
    overrides = ["--set", f"data.annotations={data / 'annotations.json'}", "--set", f"data.frames={frames}",
                 "--set", f"test.video_classifier={classifier}", *TINY]
    run = root / "run"
    assert main(["train", "afsd/anet13_frames", *overrides, "--out", str(run), "--no-progress"]) == 0
    test = root / "test"
    assert main(["test", "afsd/anet13_frames", *overrides, "--checkpoint", str(run / "last.pt"),
                 "--out", str(test), "--no-progress"]) == 0
    return {
        "history": json.loads((run / "history.json").read_text()),
        "state": torch.load(run / "last.pt", map_location="cpu", weights_only=True),
        "results": json.loads((test / "results.json").read_text())["results"],
        "annotations": gt,
        "frames": json.loads((frames / "frames.json").read_text()),
        "scores": scores,
        "classes": classes,
    }


def test_max_frames_store_has_each_video_at_its_own_rate(anet_run: dict) -> None:
    index = anet_run["frames"]
    assert index["max_frames"] == MAX_FRAMES and index["fps"] is None
    rates = []
    for video, entry in index["videos"].items():
        expected = entry["native_fps"] * min(1.0, MAX_FRAMES / entry["native_frames"])
        assert entry["fps"] == pytest.approx(expected) and MAX_FRAMES - 2 <= entry["num_frames"] <= MAX_FRAMES, video
        rates.append(entry["fps"])
    assert len({round(r, 6) for r in rates}) == len(rates)  # the synthetic videos differ in length


def test_anet_frames_training_runs_the_activitynet_head(anet_run: dict) -> None:
    epochs = anet_run["history"]["epochs"]
    totals = [e["loss"]["total"] for e in epochs]
    assert all(np.isfinite(totals)) and totals[-1] < totals[0], totals
    assert any(e["loss"].get("triplet", 0) > 0 for e in epochs)  # the contrastive copies were made and used
    keys = [k for k in anet_run["state"]["model"] if ".conv3d." in k and "pyramids" in k]
    assert keys and all(k.startswith("coarse_pyramid_detection.pyramids.0.") for k in keys)  # Mixed_5c only
    conf_head = anet_run["state"]["model"]["coarse_pyramid_detection.conf_head.conv1d.weight"]
    assert conf_head.shape[0] == 2  # class-agnostic: background / action


def test_anet_frames_test_labels_proposals_with_the_video_classifier(anet_run: dict) -> None:
    database = anet_run["annotations"]["database"]
    assert set(anet_run["results"]) == set(database)
    for video, detections in anet_run["results"].items():
        assert detections, video
        top = anet_run["classes"][int(np.argmax(anet_run["scores"][video]))]
        duration = database[video]["duration"]
        fps = anet_run["frames"]["videos"][video]["fps"]
        for det in detections:
            start, end = det["segment"]
            assert det["label"] == top and 0.0 < det["score"] <= 0.9  # proposal score x class score 0.9
            assert 0.0 <= start < end <= duration + 1e-6
        # times use the video's own rate: with the 48 frames read at 10 fps nothing would end past 4.8 s
        assert max(d["segment"][1] for d in detections) > 0.5 * MAX_FRAMES / fps


def official_anet_bdnet(seed: int = 4) -> dict[str, torch.Tensor]:
    """An ActivityNet ``BDNet`` state_dict: the head of the golden fixture's layout (one conv3d, on Mixed_5c;
    tadkit's keys are the official ones), width 64, 2 outputs, and ``backbone._model.*`` pytorch-i3d keys at a
    quarter width (re-stated literally in tests/test_pytorch_i3d_weights.py)."""
    from test_pytorch_i3d_weights import official_layout

    from tadkit.methods.afsd.e2e import BackboneConfig, build_backbone
    from tadkit.methods.afsd.model import AFSD, AFSDConfig

    torch.manual_seed(seed)
    backbone = official_layout(3, None, seed=seed, width=0.25)
    c5c = build_backbone(BackboneConfig(backbone_width=0.25, backbone_weights=None)).out_channels["Mixed_5c"]
    head = AFSD(AFSDConfig(pyramid_taps="mixed_5c", backbone_channels=(8, c5c), spatial_kernels=(6, 3), width=64,
                           num_classes=1, clip_length=768)).state_dict()
    return {**head, **{f"backbone._model.{k}": v for k, v in backbone.items()}}


def test_official_activitynet_end_to_end_checkpoint_converts_with_its_test_recipe(tmp_path: Path) -> None:
    """`tadkit convert afsd-official` of an ActivityNet BDNet: an afsd_e2e model with the ActivityNet head
    settings and the ActivityNet test recipe (at most 768 frames, one window, class "action")."""
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.methods.afsd.e2e import AFSDEndToEnd

    official = official_anet_bdnet()
    source, out = tmp_path / "checkpoint-10.ckpt", tmp_path / "afsd_anet_rgb.pt"
    torch.save({"model": {f"module.{k}": v for k, v in official.items()}}, source)  # DataParallel-saved
    assert main(["convert", "afsd-official", str(source), str(out)]) == 0
    model, config = load_checkpoint_model(out)
    assert isinstance(model, AFSDEndToEnd) and model.config.pyramid_taps == "mixed_5c"
    assert list(model.config.loc_strides) == [4, 8, 16, 32, 64, 128]
    assert model.config.triplet_scales == (1.0, 4.0, 4.0) and model.config.conf_thresh == 1e-9
    assert config.data.frame_max_frames == 768 and config.data.window == config.data.stride_test == 768
    assert config.test.nms["sigma"] == 0.85
    assert torch.load(out, weights_only=True)["classes"] == ["action"]
    for key, value in official.items():
        if key.startswith("coarse_pyramid_detection."):
            assert torch.equal(model.state_dict()[key], value), key


DOC_COMMANDS = [
    "tadkit data frames videos/ --out frames_anet --max-frames 768",
    "tadkit convert afsd-official checkpoint_anet_rgb.ckpt afsd_anet_rgb.pt",
]


def test_docs_commands_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/afsd.md "ActivityNet end to end", run as written: `videos/` = two synthetic mp4s, the official
    checkpoint = :func:`official_anet_bdnet` saved as checkpoint_anet_rgb.ckpt."""
    from doc_blocks import section_commands, tadkit_argv

    commands = section_commands("afsd.md", "ActivityNet end to end")
    assert commands == DOC_COMMANDS
    assert main(["data", "synth", "--video", "--out", str(tmp_path / "synth"), "--seed", "2", "--videos", "2",
                 "--subset", "validation", "--video-duration", "8"]) == 0
    (tmp_path / "synth" / "videos").rename(tmp_path / "videos")
    torch.save(official_anet_bdnet(), tmp_path / "checkpoint_anet_rgb.ckpt")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main(tadkit_argv(command)) == 0, command
    index = json.loads((tmp_path / "frames_anet" / "frames.json").read_text())
    assert index["max_frames"] == 768 and len(index["videos"]) == 2
    for entry in index["videos"].values():  # shorter than 768 frames: every native frame at the native rate
        assert entry["fps"] == entry["native_fps"] and entry["num_frames"] == entry["native_frames"]
    saved = torch.load(tmp_path / "afsd_anet_rgb.pt", weights_only=True)
    assert saved["classes"] == ["action"]
    # the converted checkpoint detects on an mp4: decoded with --max-frames 768 as its recipe says
    video = sorted((tmp_path / "videos").glob("*.mp4"))[0]
    assert main(["detect", str(video), "--checkpoint", "afsd_anet_rgb.pt", "--out", "det.json", "--no-progress"]) == 0
    entry = index["videos"][video.stem]
    detections = json.loads((tmp_path / "det.json").read_text())["results"][video.stem]
    assert detections and {d["label"] for d in detections} == {"action"}
    assert all(0.0 <= d["segment"][0] <= d["segment"][1] <= entry["duration"] + 1e-6 for d in detections)
