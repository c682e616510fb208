"""End-to-end AFSD on frames: clip planning and the contrastive augmentation against literal
re-statements of the official dataset code (``AFSD/common/thumos_dataset.py``), the frame store and
clip dataset, and the ``afsd_e2e`` model (frozen batch norm, losses, decoding)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tadkit.data.frames import (
    FrameClipDataset,
    FrameStore,
    clip_gts,
    clip_offsets,
    collate_clips,
    contrastive_augment,
    contrastive_th,
)
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError


# ---- literal re-statements of the official code --------------------------------------------------


def official_split(sample_count: int, annos: list[list[float]], clip_length: int, stride: int):
    """``split_videos`` for one video: kept (offset, annos) and the video's th."""
    training, min_anno = [], clip_length
    if sample_count <= clip_length:
        offsets = [0]
        min_anno = min(min_anno, min(a[1] - a[0] for a in annos))
    else:
        offsets = list(range(0, sample_count - clip_length + 1, stride))
        if (sample_count - clip_length) % stride:
            offsets += [sample_count - clip_length]
    for offset in offsets:
        left, right = offset + 1, offset + clip_length
        cur, save = [], False
        for a in annos:
            ioa = (min(right, a[1]) - max(left, a[0])) * 1.0 / (a[1] - a[0])
            if ioa >= 1.0:
                save = True
            if ioa >= 0.5:
                cur.append([max(a[0] - offset, 1), min(a[1] - offset, clip_length), a[2]])
        if cur:
            min_anno = min(min_anno, min(x[1] - x[0] for x in cur))
        if save:
            training.append((offset, cur))
    return training, math.ceil(min_anno)


def official_augment(clip: torch.Tensor, annos: list[list[float]], th: int, rng: random.Random):
    """``augment_`` (with ``get_bg``) on a (C, L, H, W) tensor; None where the official returns flag False."""
    try:
        gt = rng.choice(list(filter(lambda x: x[1] - x[0] > 2 * th, annos)))
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
    if gt[1] < start:
        out[:, t:t + th] = clip[:, start:end]
        out[:, t + th:end] = clip[:, t:start]
        segs = [[gt[0], t], [t + th, th + gt[1]], [t + 1, t + th - 1]]
    else:
        out[:, start:t - th] = clip[:, end:t]
        out[:, t - th:t] = clip[:, start:end]
        segs = [[gt[0] - th, t - th], [t, gt[1]], [t - th + 1, t - 1]]
    return out, np.asarray(segs, dtype=np.float64)


def random_annos(rng: np.random.Generator, count: int, num_frames: int) -> list[list[float]]:
    starts = np.sort(rng.uniform(0, num_frames - 5, count))
    lengths = rng.uniform(1.5, 120, count)
    return [[float(s), float(min(s + w, num_frames)), int(rng.integers(1, 6))] for s, w in zip(starts, lengths)]


# ---- clip planning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_clip_plan_equals_official_split_videos(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clip_length, stride = [(256, 30), (128, 30), (64, 16)][seed % 3]
    num_frames = int(rng.integers(40, 900))
    annos = random_annos(rng, int(rng.integers(1, 9)), num_frames)
    expected, expected_th = official_split(num_frames, annos, clip_length, stride)
    offsets = clip_offsets(num_frames, clip_length, stride)
    per_clip, inside = clip_gts(np.asarray(annos), offsets, clip_length)
    kept = [(o, rows) for o, rows, keep in zip(offsets, per_clip, inside) if keep]
    assert [o for o, _ in kept] == [o for o, _ in expected]
    for (_, rows), (_, cur) in zip(kept, expected):
        np.testing.assert_array_equal(rows, np.asarray(cur, dtype=np.float64).reshape(-1, 3))
    assert contrastive_th(np.asarray(annos), per_clip, num_frames, clip_length) == expected_th


def test_contrastive_augment_equals_official_augment() -> None:
    length, augmented = 64, 0
    clip = torch.arange(length, dtype=torch.float32).view(1, length, 1, 1).expand(2, length, 3, 3).clone()
    for seed in range(200):
        rng = np.random.default_rng(100 + seed)
        annos = sorted(random_annos(rng, int(rng.integers(1, 4)), length - 2))
        annos = [[max(a[0], 1.0), min(a[1], length - 1.0), a[2]] for a in annos]
        th = int(rng.integers(1, 8))
        ours = contrastive_augment(clip, np.asarray(annos), th, choice=random.Random(seed)._randbelow)
        theirs = official_augment(clip, annos, th, random.Random(seed))
        assert (ours is None) == (theirs is None), seed
        if ours is not None:
            augmented += 1
            torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=0)
            np.testing.assert_array_equal(ours[1], theirs[1])
    assert 40 < augmented < 200  # both outcomes exercised


def test_contrastive_augment_moves_a_background_chunk_inside_the_action() -> None:
    length, th = 100, 6
    clip = torch.arange(length, dtype=torch.float32).view(1, length, 1, 1).clone()
    annos = np.asarray([[30.0, 70.0, 1]])
    for seed in range(20):
        out = contrastive_augment(clip, annos, th, choice=random.Random(seed)._randbelow)
        assert out is not None
        pixels, (a, b, g) = out
        assert a[1] - a[0] + b[1] - b[0] == pytest.approx(annos[0, 1] - annos[0, 0])  # the action keeps its length
        pasted = pixels[0, int(g[0]) - 1:int(g[1]) + 1, 0, 0]  # G = the th pasted frames minus one at each end
        assert len(pasted) == th and bool(((pasted < 30) | (pasted > 70)).all())  # all background frames
        assert sorted(pixels.flatten().tolist()) == list(range(length))  # a permutation of the clip


def test_contrastive_augment_fails_without_long_action_or_gap() -> None:
    clip = torch.zeros(1, 50, 2, 2)
    assert contrastive_augment(clip, np.asarray([[10.0, 15.0, 1]]), 4) is None  # no GT longer than 2 th
    assert contrastive_augment(clip, np.asarray([[1.0, 48.0, 1]]), 4) is None  # no background gap > th


# ---- store and dataset -----------------------------------------------------------------------------


def write_store(root: Path, videos: dict[str, int], size: int = 20, fps: float = 10.0, seed: int = 0,
                flow: bool = False) -> Path:
    """A frame store as `tadkit data frames` writes it: frame i of a video has mean value ~ i % 200."""
    rng = np.random.default_rng(seed)
    streams = {"rgb": 3, "flow": 2} if flow else {"rgb": 3}
    for stream, channels in streams.items():
        (root / stream).mkdir(parents=True, exist_ok=True)
        for video, count in videos.items():
            frames = rng.integers(0, 40, (count, size, size, channels)).astype(np.uint8)
            frames += (np.arange(count) % 200)[:, None, None, None].astype(np.uint8)
            np.save(root / stream / f"{video}.npy", frames)
    manifest = {"format": "tadkit-frames", "version": 1, "fps": fps, "size": [size, size], "streams": list(streams),
                "videos": {v: {"num_frames": n, "native_fps": 30.0, "native_frames": 3 * n, "duration": n / fps,
                               "source": f"{v}.mp4"} for v, n in videos.items()}}
    (root / "frames.json").write_text(json.dumps(manifest))
    return root


def annotation_set(spec: dict[str, tuple[str, float, list[tuple[float, float, str]]]]) -> AnnotationSet:
    videos = {
        vid: VideoAnnotation(video_id=vid, subset=subset, duration=duration,
                             segments=[Segment(s, e, label) for s, e, label in segs])
        for vid, (subset, duration, segs) in spec.items()
    }
    return AnnotationSet(videos=videos, classes=["a", "b", "c"])


def test_clip_dataset_training_and_test_samples(tmp_path: Path) -> None:
    store = FrameStore(write_store(tmp_path, {"v1": 90, "v2": 30}))
    ann = annotation_set({"v1": ("validation", 9.0, [(1.0, 3.0, "b"), (4.0, 8.5, "c")]),
                          "v2": ("test", 3.0, [(0.5, 1.5, "a")])})
    train = FrameClipDataset(ann, store, subset="validation", clip_length=40, stride=10, crop=16, training=True)
    expected, th = official_split(90, [[10.0, 30.0, 1], [40.0, 85.0, 2]], 40, 10)
    assert [c.offset for c in train.clips] == [o for o, _ in expected] and train.clips[0].th == th
    torch.manual_seed(0)
    sample = train[0]
    assert sample["clip"].shape == (3, 40, 16, 16) and sample["clip"].dtype == torch.float32
    assert float(sample["clip"].min()) >= -1.0 and float(sample["clip"].max()) <= 1.0
    np.testing.assert_array_equal(sample["segments"], np.asarray([r[:2] for r in expected[0][1]], dtype=np.float32))
    assert sample["meta"]["t0"] == pytest.approx(expected[0][0] / 10.0) and sample["meta"]["step"] == pytest.approx(0.1)
    assert "ssl_clip" in sample

    test = FrameClipDataset(ann, store, subset="test", clip_length=40, stride=20, crop=16, training=False)
    assert len(test) == 1 and "ssl_clip" not in test[0]
    clip = test[0]["clip"]
    assert test[0]["meta"]["valid_length"] == 30
    assert bool((clip[:, 30:] == 0).all())  # test pads after normalisation (official)
    raw = np.load(tmp_path / "rgb" / "v2.npy")[:, 2:18, 2:18]  # centre crop of 20 -> 16
    torch.testing.assert_close(clip[:, :30], torch.from_numpy(raw).permute(3, 0, 1, 2).float() / 255 * 2 - 1)

    batch = collate_clips([train[i] for i in range(min(3, len(train)))])
    assert batch["clip"].shape[0] == len(batch["targets"]) == len(batch["meta"])
    if "ssl_clip" in batch:
        assert batch["ssl_clip"].shape[0] == batch["ssl_segments"].shape[0] == len(batch["ssl_index"])


def test_training_pads_raw_zeros_to_minus_one(tmp_path: Path) -> None:
    store = FrameStore(write_store(tmp_path, {"short": 25}))
    ann = annotation_set({"short": ("validation", 2.5, [(0.5, 2.0, "a")])})
    data = FrameClipDataset(ann, store, subset="validation", clip_length=40, crop=20, training=True, contrastive=False)
    torch.manual_seed(1)
    clip = data[0]["clip"]
    assert bool((clip[:, 25:] == -1).all()) and not bool((clip[:, :25] == -1).all())


def test_store_and_dataset_errors_name_file_video_field(tmp_path: Path) -> None:
    with pytest.raises(TadkitError, match="tadkit data frames") as err:
        FrameStore(tmp_path / "nothing")
    assert err.value.field == "data.frames"
    root = write_store(tmp_path / "s", {"v1": 30})
    with pytest.raises(TadkitError, match="flow"):
        FrameStore(root, stream="flow")
    store = FrameStore(root)
    np.save(root / "rgb" / "v1.npy", np.zeros((29, 20, 20, 3), np.uint8))  # shorter than the manifest says
    with pytest.raises(TadkitError, match="manifest says") as err:
        store.frames("v1")
    assert err.value.video == "v1" and err.value.field == "shape"
    ann = annotation_set({"v9": ("validation", 3.0, [(0.5, 1.5, "a")])})
    with pytest.raises(TadkitError, match="no frames") as err:
        FrameClipDataset(ann, store, subset="validation", clip_length=20, crop=16)
    assert err.value.video == "v9"


# ---- the model ------------------------------------------------------------------------------------


def tiny_model(**overrides):
    from tadkit.methods.afsd.e2e import build_afsd_e2e

    kwargs = dict(num_classes=3, width=32, gn_groups=8, clip_length=64, crop_size=32, backbone_width=0.125,
                  backbone_weights=None)
    kwargs.update(overrides)
    return build_afsd_e2e(**kwargs)


def test_e2e_model_freezes_batch_norm_and_trains_the_rest() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    model.train()
    bn = [m for m in model.backbone.modules() if type(m).__name__ == "BatchNormOffset"]
    assert bn and not any(m.training for m in bn) and not any(p.requires_grad for m in bn for p in m.parameters())
    before = [m.running_mean.clone() for m in bn[:3]]
    clip = torch.randn(2, 3, 64, 32, 32)
    batch = {"clip": clip,
             "targets": [{"segments": torch.tensor([[5.0, 30.0]]), "labels": torch.tensor([1])},
                         {"segments": torch.tensor([[10.0, 50.0]]), "labels": torch.tensor([0])}],
             "ssl_clip": clip[:1], "ssl_segments": torch.tensor([[[5.0, 12.0], [17.0, 30.0], [13.0, 16.0]]])}
    outputs = model(batch)
    assert outputs["loc"].shape == (2, 16 + 8 + 4 + 2 + 1 + 1, 2) and outputs["start"].shape[1] == 64
    terms = model.loss(outputs, batch)
    assert set(terms) >= {"loc", "conf", "prop_loc", "prop_conf", "center", "start", "end", "triplet", "total"}
    assert all(bool(torch.isfinite(v)) for v in terms.values())
    expected = (10 * (terms["loc"] + terms["prop_loc"]) + terms["conf"] + terms["prop_conf"] + terms["center"]
                + terms["start"] + terms["end"] + 0.1 * terms["triplet"])
    torch.testing.assert_close(terms["total"], expected)
    terms["total"].backward()
    assert model.backbone.Conv3d_1a_7x7.conv.weight.grad.abs().sum() > 0  # the backbone learns
    for m, b in zip(bn[:3], before):
        torch.testing.assert_close(m.running_mean, b)  # frozen statistics


def test_e2e_model_rejects_wrong_clips_and_derived_keys() -> None:
    model = tiny_model()
    with pytest.raises(TadkitError, match="expected clips"):
        model({"clip": torch.zeros(1, 3, 32, 32, 32)})
    with pytest.raises(TadkitError) as err:
        tiny_model(spatial_kernels=[2, 1])
    assert err.value.field == "model.kwargs.spatial_kernels"
    with pytest.raises(TadkitError) as err:
        tiny_model(backbone_weights="kinetics400")  # pretrained weights need the real width
    assert err.value.field == "model.kwargs.backbone_weights"


def test_e2e_decode_gives_clip_frames_and_classes() -> None:
    torch.manual_seed(0)
    model = tiny_model(conf_thresh=0.0).eval()
    with torch.no_grad():
        outputs = model({"clip": torch.randn(1, 3, 64, 32, 32)})
    (det,) = model.decode(outputs, {})
    assert det.segments.shape[1] == 2 and float(det.segments.min()) >= 0 and float(det.segments.max()) <= 64
    assert set(det.labels.tolist()) <= {0, 1, 2} and len(det.scores) == len(det.labels) == 32 * 3


def test_rgb_plus_flow_clips_feed_a_fused_rgb_and_flow_model(tmp_path: Path) -> None:
    """`data.stream: rgb+flow` concatenates the streams' channels; `tadkit test --fuse` slices them back
    (test.fuse_streams [[0, 3], [3, 5]]) and averages the two models' raw outputs (official fusion)."""
    from tadkit.postprocess.video_classifier import FusedModel

    root = write_store(tmp_path, {"v1": 50}, size=36, flow=True)
    ann = annotation_set({"v1": ("test", 5.0, [(1.0, 3.0, "a")])})
    kwargs = dict(subset="test", clip_length=64, stride=32, crop=32, training=False)
    both = FrameClipDataset(ann, FrameStore(root, stream="rgb+flow"), **kwargs)[0]["clip"]
    rgb = FrameClipDataset(ann, FrameStore(root, stream="rgb"), **kwargs)[0]["clip"]
    flow = FrameClipDataset(ann, FrameStore(root, stream="flow"), **kwargs)[0]["clip"]
    assert both.shape[0] == 5
    torch.testing.assert_close(both, torch.cat([rgb, flow]), rtol=0, atol=0)

    torch.manual_seed(0)
    models = [tiny_model().eval(), tiny_model(in_channels=2).eval()]
    fused = FusedModel(models, [[0, 3], [3, 5]], key="clip")
    batch = {"clip": both[None]}
    with torch.no_grad():
        out = fused(batch)
        single = [models[0]({"clip": rgb[None]}), models[1]({"clip": flow[None]})]
    for key in ("loc", "conf", "prop_loc", "prop_conf", "center"):
        torch.testing.assert_close(out[key], (single[0][key] + single[1][key]) / 2)


def test_kinetics_backbone_loads_when_training_starts_not_from_checkpoints() -> None:
    """`backbone_weights: kinetics400` = the `tadkit weights i3d` file, loaded by init_pretrained (the
    engine calls it when training starts); building the model (as a checkpoint load does) reads nothing."""
    from tadkit.methods.afsd.e2e import build_afsd_e2e
    from tadkit.video.weights import load_i3d, rgb_weights_path

    if not rgb_weights_path().is_file():
        pytest.skip(f"I3D Kinetics weights not installed ({rgb_weights_path()}); `tadkit weights i3d` fetches them")
    torch.manual_seed(0)
    model = build_afsd_e2e(num_classes=2, width=32, gn_groups=8, clip_length=64, crop_size=32)
    assert model.config.backbone_channels == (832, 1024) and model.config.spatial_kernels == (2, 1)
    reference = load_i3d(fuse=False).state_dict()
    key = "Mixed_4f.Branch_1.Conv3d_0b_3x3.conv.weight"
    assert not torch.equal(model.backbone.state_dict()[key], reference[key])  # random until training starts
    model.init_pretrained()
    for name, tensor in model.backbone.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0)
    model.train()
    assert not any(m.training for m in model.backbone.modules() if type(m).__name__ == "BatchNormOffset")


def test_official_frames_config_builds_the_official_model_and_backbone_group() -> None:
    """`afsd/thumos14_frames`: the official sizes (taps 832 / 1024 at 6x6 / 3x3 for 96 crops, 512 wide,
    21 outputs) and the backbone in its own parameter group without the frozen batch-norm offsets."""
    from tadkit.engine.config import load_config
    from tadkit.engine.trainer import build_optimizer
    from tadkit.methods import get_method

    config = load_config("afsd/thumos14_frames", ["model.kwargs.backbone_weights=null"])
    model = get_method(config.model.name).build(**config.model.kwargs)
    assert (model.config.backbone_channels, model.config.spatial_kernels) == ((832, 1024), (6, 3))
    assert model.config.width == 512 and model.config.num_outputs == 21 and model.config.clip_length == 256
    optimizer = build_optimizer(model, config)
    backbone, head = optimizer.param_groups
    trainable_backbone = [p for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert backbone["rule"] == 0 and backbone["lr"] == 1e-5 and len(backbone["params"]) == len(trainable_backbone)
    assert head["rule"] == -1 and len(head["params"]) == len(list(model.coarse_pyramid_detection.parameters()))
    assert not any(".bn." in n for n, p in model.backbone.named_parameters() if p.requires_grad)
