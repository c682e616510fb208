"""`tadkit convert afsd-official` of an END-TO-END AFSD checkpoint (BDNet: I3D backbone + head) -> an
``afsd_e2e`` checkpoint -> `tadkit detect video.mp4 --checkpoint` on a synthetic video.

The official key list and shapes are re-stated literally from ActionDetection-AFSD (``AFSD/thumos14/BDNet.py``:
``BDNet.coarse_pyramid_detection = CoarsePyramid``, ``BDNet.backbone = I3D_BackBone`` whose ``_model`` is
pytorch-i3d's ``InceptionI3d(final_endpoint='Mixed_5c')``, ``AFSD/common/i3d_backbone.py``) at a reduced width:
head width W for every 512 (GroupNorm(32) kept), the I3D at a quarter of every channel count.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_pytorch_i3d_weights import official_layout

from tadkit.cli import main
from tadkit.engine.checkpoint import load_checkpoint_model
from tadkit.errors import TadkitError
from tadkit.methods.afsd.e2e import AFSDEndToEnd
from tadkit.methods.afsd.official import from_official_state_dict
from tadkit.video.pytorch_i3d import map_key

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEAD_WIDTH = 64  # official conv_channels = 512 (and ProposalBranch(out_channels, 512))
BACKBONE_WIDTH = 0.25
NUM_CLASSES = 21  # configs/thumos14.yaml dataset.num_classes: 20 actions + background
LAYER_NUM = 6


def official_head(c4f: int, c5c: int, width: int = HEAD_WIDTH, num_classes: int = NUM_CLASSES,
                  kernels: tuple[int, int] = (6, 3), seed: int = 0) -> dict[str, torch.Tensor]:
    """``CoarsePyramid([c4f, c5c]).state_dict()`` keys and shapes (BDNet.py), random values."""
    g = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, ...]] = {}

    def unit1d(name: str, cin: int, cout: int, k: int) -> None:  # Unit1D: conv1d with bias
        shapes[f"{name}.conv1d.weight"], shapes[f"{name}.conv1d.bias"] = (cout, cin, k), (cout,)

    def group_norm(name: str, channels: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (channels,), (channels,)

    # pyramids.0 / .1: Unit3D([1, k, k], 'spatial_valid', bias) + GroupNorm + ReLU on Mixed_4f / Mixed_5c
    for i, (cin, k) in enumerate(zip((c4f, c5c), kernels)):
        shapes[f"pyramids.{i}.0.conv3d.weight"], shapes[f"pyramids.{i}.0.conv3d.bias"] = (width, cin, 1, k, k), (width,)
        group_norm(f"pyramids.{i}.1", width)
    for i in range(2, LAYER_NUM):  # Unit1D(k 3, stride 2) + GroupNorm + ReLU
        unit1d(f"pyramids.{i}.0", width, width, 3)
        group_norm(f"pyramids.{i}.1", width)
    for tower in ("loc_tower", "conf_tower"):
        for i in range(2):
            unit1d(f"{tower}.{i}.0", width, width, 3)
            group_norm(f"{tower}.{i}.1", width)
    unit1d("loc_head", width, 2, 3)
    unit1d("conf_head", width, num_classes, 3)
    for branch in ("loc_proposal_branch", "conf_proposal_branch"):  # ProposalBranch(W, W)
        unit1d(f"{branch}.cur_point_conv.0", width, width, 1)
        group_norm(f"{branch}.cur_point_conv.1", width)
        unit1d(f"{branch}.lr_conv.0", width, 2 * width, 1)
        group_norm(f"{branch}.lr_conv.1", 2 * width)
        unit1d(f"{branch}.roi_conv.0", width, width, 1)
        group_norm(f"{branch}.roi_conv.1", width)
        unit1d(f"{branch}.proposal_conv.0", 4 * width, width, 1)
        group_norm(f"{branch}.proposal_conv.1", width)
    unit1d("prop_loc_head", width, 2, 1)
    unit1d("prop_conf_head", width, num_classes, 1)
    unit1d("center_head", width, 1, 3)
    for i, k in zip((0, 3, 6), (3, 3, 1)):  # deconv: (Unit1D, GroupNorm, ReLU) x 3
        unit1d(f"deconv.{i}", width, width, k)
        group_norm(f"deconv.{i + 1}", width)
    for i in range(LAYER_NUM):
        shapes[f"loc_heads.{i}.scale"] = (1,)
    state = {f"coarse_pyramid_detection.{k}": torch.randn(shape, generator=g) * 0.05 for k, shape in shapes.items()}
    for i in range(LAYER_NUM):
        state[f"coarse_pyramid_detection.loc_heads.{i}.scale"] = torch.ones(1)
    state["coarse_pyramid_detection.loc_head.conv1d.bias"] = torch.tensor([2.8, 3.1])  # clip-sized segments
    return state


def official_bdnet(in_channels: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """``BDNet(in_channels).state_dict()`` at the reduced widths: head + ``backbone._model.*``."""
    backbone = official_layout(in_channels, None, seed=seed, width=BACKBONE_WIDTH)
    # the taps' channels: Mixed_4f / Mixed_5c outputs = b0 + b1b + b2b + b3b of those blocks
    def out(block: str) -> int:
        return sum(backbone[f"{block}.{b}.conv3d.weight"].shape[0] for b in ("b0", "b1b", "b2b", "b3b"))

    state = official_head(out("Mixed_4f"), out("Mixed_5c"), seed=seed)
    state.update({f"backbone._model.{k}": v for k, v in backbone.items()})
    return state


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("afsd_e2e")
    official = official_bdnet()
    source = root / "checkpoint-15.ckpt"
    torch.save({"epoch": 15, "model": {f"module.{k}": v for k, v in official.items()}}, source)  # DataParallel
    out = root / "afsd_thumos14_rgb.pt"
    assert main(["convert", "afsd-official", str(source), str(out)]) == 0
    return {"root": root, "official": official, "out": out}


def test_every_official_key_lands_and_none_is_left(converted, capsys):
    model, config = load_checkpoint_model(converted["out"])
    assert isinstance(model, AFSDEndToEnd) and config.model.name == "afsd_e2e"
    ours = model.state_dict()
    official = converted["official"]
    landed: set[str] = set()
    for key, value in official.items():
        if key.startswith("backbone._model."):
            target = map_key(key[len("backbone._model."):])
            if target is None:  # bn.num_batches_tracked: checked and dropped
                continue
            target = "backbone." + target
        else:
            target = key
        assert torch.equal(ours[target], value), key
        landed.add(target)
    assert landed == set(ours)  # nothing of the model left without an official tensor
    backbone = model.backbone_config
    assert (backbone.in_channels, backbone.crop_size, backbone.backbone_width, backbone.backbone_layout) == (
        3, 96, BACKBONE_WIDTH, "pytorch_i3d")
    assert model.config.width == HEAD_WIDTH and model.config.num_classes == NUM_CLASSES - 1
    assert config.data.frame_fps == 10.0 and config.data.frame_size == 112 and config.data.crop_size == 96
    assert config.data.window == 256 and config.data.stride_test == 128 and config.data.stream == "rgb"
    saved = torch.load(converted["out"], weights_only=True)
    assert saved["classes"][0] == "BaseballPitch" and len(saved["classes"]) == 20


def test_converted_model_runs_the_official_backbone(converted):
    """The backbone is the mapped pytorch-i3d I3D: its affine batch norm (scale) is the checkpoint's."""
    model, _ = load_checkpoint_model(converted["out"])
    scale = converted["official"]["backbone._model.Mixed_4f.b1b.bn.weight"]
    assert torch.equal(model.backbone.Mixed_4f.Branch_1.Conv3d_0b_3x3.bn.weight, scale)
    clip = torch.rand(1, 3, 256, 96, 96) * 2 - 1
    with torch.no_grad():
        out = model({"clip": clip})
    assert out["conf"].shape == (1, 64 + 32 + 16 + 8 + 4 + 2, NUM_CLASSES) and torch.isfinite(out["conf"]).all()


def test_flow_checkpoint_and_bad_backbones_are_named(tmp_path):
    flow = official_bdnet(in_channels=2, seed=1)
    model = from_official_state_dict(flow, source="flow.ckpt")
    assert isinstance(model, AFSDEndToEnd) and model.backbone_config.in_channels == 2
    assert model.checkpoint_extras["config"]["data"]["stream"] == "flow"

    missing = dict(flow)
    del missing["backbone._model.Mixed_5b.b2b.bn.running_var"]
    with pytest.raises(TadkitError, match=r"Mixed_5b\.Branch_2\.Conv3d_0b_3x3\.bn\.running_var"):
        from_official_state_dict(missing, source="x.ckpt")
    extra = {**flow, "backbone._model.Mixed_5c.b9.conv3d.weight": torch.zeros(1)}
    with pytest.raises(TadkitError, match=r"Mixed_5c\.b9\.conv3d\.weight"):
        from_official_state_dict(extra, source="x.ckpt")
    stray = {**flow, "backbone.extra": torch.zeros(1)}
    with pytest.raises(TadkitError, match="backbone.extra"):
        from_official_state_dict(stray, source="x.ckpt")
    with pytest.raises(TadkitError, match="in_channels"):
        from_official_state_dict(flow, source="x.ckpt", in_channels=3)
    narrower_head = {**official_head(8, 8, seed=2), **{k: v for k, v in flow.items() if k.startswith("backbone.")}}
    with pytest.raises(TadkitError, match="tap channels"):
        from_official_state_dict(narrower_head, source="x.ckpt")


DOC_COMMANDS = [
    "tadkit convert afsd-official checkpoint_rgb.ckpt afsd_rgb.pt",
    "tadkit detect my_video.mp4 --checkpoint afsd_rgb.pt --out detections.json",
]


def test_docs_commands_detect_thumos14_classes_on_a_synthetic_video(tmp_path, monkeypatch, capsys):
    """docs/afsd.md "The authors' end-to-end checkpoints on your video", run as written: the official layout
    (random tensors, reduced width) as checkpoint_rgb.ckpt, a `tadkit data synth --video` mp4 as my_video.mp4."""
    from doc_blocks import section_commands, tadkit_argv

    commands = section_commands("afsd.md", "The authors' end-to-end checkpoints on your video")
    assert commands == DOC_COMMANDS
    data = tmp_path / "synth"
    assert main(["data", "synth", "--video", "--out", str(data), "--seed", "3", "--videos", "1", "--subset", "test",
                 "--video-duration", "30", "--video-size", "112"]) == 0
    monkeypatch.chdir(tmp_path)
    sorted((data / "videos").glob("*.mp4"))[0].rename(tmp_path / "my_video.mp4")
    torch.save(official_bdnet(), tmp_path / "checkpoint_rgb.ckpt")
    capsys.readouterr()
    for command in commands:
        assert main(tadkit_argv(command)) == 0, command
    printed = capsys.readouterr().out
    assert "afsd_e2e" in printed and "at 10 fps, 112x112 (rgb)" in printed
    detections = json.loads((tmp_path / "detections.json").read_text())["results"]["my_video"]
    assert detections
    thumos = set(torch.load(tmp_path / "afsd_rgb.pt", weights_only=True)["classes"])
    assert {d["label"] for d in detections} <= thumos
    for d in detections:
        start, end = d["segment"]
        assert 0 <= start < end and np.isfinite(d["score"])


def test_training_starts_from_pytorch_i3d_weights(tmp_path):
    """The official recipe's start: rgb_imagenet.pt under an afsd_e2e model with backbone_layout pytorch_i3d;
    a DeepMind-layout backbone asked to load it gets a clear error naming the setting."""
    from tadkit.methods.afsd.e2e import build_afsd_e2e

    weights = tmp_path / "rgb_imagenet.pt"
    official = official_layout(3, 400, seed=6)
    torch.save(official, weights)
    model = build_afsd_e2e(num_classes=20, width=64, backbone_weights=str(weights), backbone_layout="pytorch_i3d")
    model.init_pretrained()
    assert torch.equal(model.backbone.Mixed_4f.Branch_1.Conv3d_0b_3x3.bn.weight, official["Mixed_4f.b1b.bn.weight"])
    assert not model.backbone.Mixed_4f.Branch_1.Conv3d_0b_3x3.bn.weight.requires_grad  # frozen, as the official
    wrong = build_afsd_e2e(num_classes=20, width=64, backbone_weights=str(weights))  # default layout: deepmind
    with pytest.raises(TadkitError, match="backbone_layout: pytorch_i3d"):
        wrong.init_pretrained()
