"""tadkit's I3D with pytorch-i3d weights against a golden fixture of the official ``InceptionI3d``.

The fixture (``../shared/fixtures/pytorch_i3d_small.npz`` + .json, README section "pytorch_i3d_small"; or the
file named by ``$TADKIT_PYTORCH_I3D_FIXTURE``) holds the official class's own state dict (float16-exact random
weights and batch-norm statistics), an input, and the class's outputs at Mixed_4f, Mixed_5c,
``extract_features`` and ``forward``. Every size (input channels, classes, T/H/W) is read from the file, so the
same tests check fixtures of other shapes (e.g. 2-channel flow, 7 classes, a non-square input).

Tolerance: 1e-4 relative (of the largest magnitude of each output) on the float32 outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path

from tadkit.cli import main
from tadkit.video.i3d import I3D
from tadkit.video.pytorch_i3d import convert_pytorch_i3d_state
from tadkit.video.weights import check_state_dict, config_from_state_dict, load_i3d

pytestmark = [pytest.mark.shared, pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

RELATIVE = 1e-4
STREAMS = {3: "rgb", 2: "flow"}


def fixture_path() -> Path:
    env = os.environ.get("TADKIT_PYTORCH_I3D_FIXTURE")
    if env:
        path = Path(env)
        if not path.is_file():
            pytest.skip(f"TADKIT_PYTORCH_I3D_FIXTURE={env} does not exist")
        return path
    return shared_path("fixtures", "pytorch_i3d_small.npz")


@pytest.fixture(scope="module")
def fixture() -> dict:
    path = fixture_path()
    arrays = np.load(path)
    data = {key: arrays[key] for key in arrays.files}
    state = {k.removeprefix("state_dict/"): torch.from_numpy(v.astype(np.float32) if v.dtype.kind == "f" else v)
             for k, v in data.items() if k.startswith("state_dict/")}
    sizes_file = path.with_suffix(".json")
    sizes = json.loads(sizes_file.read_text()) if sizes_file.is_file() else {}
    x = torch.from_numpy(data["input"].astype(np.float32))
    head = state.get("logits.conv3d.weight")
    fixture = {
        "path": path,
        "state": state,
        "input": x,
        "in_channels": int(x.shape[1]),
        "num_classes": 0 if head is None else int(head.shape[0]),
        **{k: torch.from_numpy(v) for k, v in data.items() if k.startswith("out_")},
    }
    # the .json's declared sizes must be the ones the arrays have (a mislabelled fixture is a broken fixture)
    if sizes:
        assert list(x.shape) == sizes["input_shape"]
        assert fixture["in_channels"] == sizes["in_channels"] and fixture["num_classes"] == sizes["num_classes"]
    return fixture


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, what
    scale = float(expected.abs().max())
    error = float((actual - expected).abs().max())
    assert error <= RELATIVE * scale, f"{what}: max error {error:.3g} > {RELATIVE:g} x {scale:.3g}"


def logits_like(model: I3D, pooled: torch.Tensor) -> torch.Tensor:
    """``forward``'s logits: the 1x1x1 head per (time, space) position, spatial dims squeezed as the
    official ``squeeze(3).squeeze(3)`` does (a non-square input keeps its width axis)."""
    assert model.Logits is not None
    out = model.Logits(pooled)
    for _ in range(2):
        if out.dim() > 3 and out.shape[3] == 1:
            out = out.squeeze(3)
    return out


@pytest.fixture(scope="module")
def mapped_model(fixture) -> I3D:
    state = convert_pytorch_i3d_state(fixture["state"], str(fixture["path"]))
    config = config_from_state_dict(state, str(fixture["path"]))
    assert (config.in_channels, config.num_classes, config.layout) == (
        fixture["in_channels"], fixture["num_classes"], "pytorch_i3d")
    model = I3D(config)
    check_state_dict(model, state, str(fixture["path"]))  # every tensor used, none left over, shapes equal
    model.load_state_dict(state)
    return model.eval()


def test_pytorch_i3d_end_points_match_official(fixture, mapped_model):
    with torch.no_grad():
        taps = mapped_model.taps(fixture["input"], ("Mixed_4f", "Mixed_5c"))
        pooled = mapped_model.pooled(fixture["input"])
        logits = logits_like(mapped_model, pooled)
    assert_relative(taps["Mixed_4f"], fixture["out_mixed_4f"], "Mixed_4f")
    assert_relative(taps["Mixed_5c"], fixture["out_mixed_5c"], "Mixed_5c")
    assert_relative(pooled, fixture["out_extract_features"], "extract_features")
    assert_relative(logits, fixture["out_logits"], "forward logits")


def test_pytorch_i3d_scale_is_not_optional(fixture, mapped_model):
    """The affine batch norm's scale matters: dropping it (DeepMind's offset-only norm) breaks Mixed_4f."""
    scaled = [m for m in mapped_model.modules() if getattr(m, "weight", None) is not None and hasattr(m, "running_var")]
    assert scaled and not all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in scaled)
    first = mapped_model.Conv3d_1a_7x7
    with torch.no_grad():
        out = first(fixture["input"])
        saved = first.bn.weight.clone()
        first.bn.weight.fill_(1.0)
        try:
            unscaled = first(fixture["input"])
        finally:
            first.bn.weight.copy_(saved)
    assert (out - unscaled).abs().max() > 1e-2


def test_pytorch_i3d_file_through_extract_weights_and_convert(fixture, tmp_path, capsys):
    """The official layout saved by torch.save (under DataParallel's ``module.``) loads through
    ``load_i3d`` (what ``tadkit extract --weights / --flow-weights`` calls, batch norm folded) and through
    ``tadkit convert pytorch-i3d``; both give the official outputs."""
    stream = STREAMS[fixture["in_channels"]]
    official = tmp_path / f"{stream}_imagenet.pt"
    torch.save({f"module.{k}": v for k, v in fixture["state"].items()}, official)
    converted = tmp_path / "converted.pt"
    assert main(["convert", "pytorch-i3d", str(official), str(converted)]) == 0
    assert f"{stream}" in capsys.readouterr().out
    saved = torch.load(converted, weights_only=True)
    assert saved["layout"] == "pytorch_i3d" and saved["stream"] == stream
    direct = load_i3d(official, stream=stream)  # fused batch norm, channels-last
    via_convert = load_i3d(converted, stream=stream, fuse=False)
    for key, value in via_convert.state_dict().items():
        torch.testing.assert_close(value, saved["state_dict"][key], rtol=0, atol=0)
    with torch.no_grad():
        pooled = direct.pooled(fixture["input"].contiguous(memory_format=torch.channels_last_3d))
        logits = logits_like(direct, pooled)
    assert_relative(pooled, fixture["out_extract_features"], "extract_features (fused batch norm)")
    assert_relative(logits, fixture["out_logits"], "forward logits (fused batch norm)")
