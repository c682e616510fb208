"""`tadkit convert afsd-official IN OUT` -> tadkit checkpoint -> load_checkpoint_model: same outputs.

The official-fixture test saves the golden fixture's state_dict (the authors' BDNet head, keys
unchanged) as an official .pth, converts it through the CLI and checks the reloaded model against the
OFFICIAL outputs stored in the fixture (``1e-5 * max(1, |official|)``, as test_afsd_official.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path
from tadkit.cli import main
from tadkit.engine.checkpoint import load_checkpoint_model
from tadkit.methods.afsd.model import AFSD, AFSDFeatures, build_afsd

FORWARD = ("loc", "conf", "prop_loc", "prop_conf", "center", "priors", "start", "end",
           "start_loc_prop", "end_loc_prop", "start_conf_prop", "end_conf_prop")


def _close(ours: torch.Tensor, official: np.ndarray, tol: float, name: str) -> None:
    ours_np = ours.detach().numpy().astype(np.float64)
    assert ours_np.shape == official.shape, name
    err = np.abs(ours_np - official.astype(np.float64))
    assert (err <= tol * np.maximum(1.0, np.abs(official.astype(np.float64)))).all(), f"{name}: max |diff| {err.max():.3g}"


def test_convert_afsd_official_fixture_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_path("fixtures", "afsd_official_small.npz")
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        pytest.skip(f"needs {meta_path} (the fixture's .json with the same stem)")
    data = np.load(path)
    meta = json.loads(meta_path.read_text())
    state = {k[len("state_dict/"):]: torch.from_numpy(data[k]) for k in data.files if k.startswith("state_dict/")}
    # an official checkpoint also carries the I3D backbone: one stand-in tensor, kept verbatim
    backbone_key = "backbone.Conv3d_1a_7x7.conv3d.weight"
    state[backbone_key] = torch.arange(24, dtype=torch.float32).reshape(2, 3, 1, 2, 2)
    official = tmp_path / "checkpoint-15.ckpt"
    torch.save(state, official)
    converted = tmp_path / "afsd.pt"
    assert main(["convert", "afsd-official", str(official), str(converted),
                 "--set", f"clip_length={int(meta['clip_length'])}"]) == 0
    assert "afsd" in capsys.readouterr().out

    model, config = load_checkpoint_model(converted)
    assert isinstance(model, AFSD) and config.model.name == "afsd"
    assert model.config.width == meta["width"] and model.config.clip_length == meta["clip_length"]
    assert model.config.backbone_channels == (meta["mixed_4f_channels"], meta["mixed_5c_channels"])
    assert torch.equal(model.state_dict()[backbone_key], state[backbone_key])  # survives the conversion
    batch = {"mixed_4f": torch.from_numpy(data["input_mixed_4f"]), "mixed_5c": torch.from_numpy(data["input_mixed_5c"])}
    with torch.no_grad():
        out = model(batch)
    for key in FORWARD:
        _close(out[key], data[f"out_{key}"], 1e-5, key)


def test_convert_feature_variant_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_afsd(num_classes=3, width=32, in_dim=16, clip_length=128).eval()
    official = tmp_path / "official.pth"
    torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()}}, official)
    converted = tmp_path / "afsd.pt"
    assert main(["convert", "afsd-official", str(official), str(converted), "--set", "clip_length=128"]) == 0
    loaded, _ = load_checkpoint_model(converted)
    assert isinstance(loaded, AFSDFeatures) and loaded.config.in_dim == 16 and loaded.config.num_classes == 3
    batch = {"features": torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(1)),
             "meta": [{"valid_length": 32}, {"valid_length": 20}]}
    with torch.no_grad():
        ours, ref = loaded(batch), model(batch)
    for key in ("loc", "conf", "prop_loc", "prop_conf", "center", "start"):
        assert torch.allclose(ours[key], ref[key], rtol=1e-6, atol=1e-6), key
    # a wrong clip length changes the frame grid: the outputs must differ (the option is not ignored)
    assert main(["convert", "afsd-official", str(official), str(converted), "--set", "clip_length=64"]) == 0
    other, _ = load_checkpoint_model(converted)
    assert other(batch)["start"].shape[1] == 64
