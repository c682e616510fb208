"""`tadkit convert a2net-official`: official checkpoint -> tadkit checkpoint, checked on the fixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import shared_path
from tadkit.cli import main
from tadkit.models import build_model

FIXTURE = "fixtures/a2net_official_forward_small.npz"


@pytest.fixture(scope="module")
def fixture_data():
    data = np.load(shared_path(FIXTURE))
    state = {k[len("state_dict/") :]: torch.from_numpy(data[k]) for k in data.files if k.startswith("state_dict/")}
    return data, state


def _wrap(state: dict, layout: str):
    if layout == "raw":
        return state
    if layout == "ddp-raw":
        return {f"module.{k}": v for k, v in state.items()}
    if layout == "state_dict":
        return {"state_dict": state}
    # what the official tools/main.py saves, trained with DataParallel
    return {
        "epoch": 30,
        "model": {f"module.{k}": v for k, v in state.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
    }


@pytest.mark.shared
@pytest.mark.parametrize("layout", ["raw", "ddp-raw", "state_dict", "official-train"])
def test_convert_official_checkpoint_reproduces_fixture(fixture_data, tmp_path, capsys, layout):
    data, state = fixture_data
    src, dst = tmp_path / "official.pth", tmp_path / "out" / "a2net.pt"
    torch.save(_wrap(state, layout), src)
    assert main(["convert", "a2net-official", str(src), str(dst)]) == 0
    assert "pyramid 64/128/128/256/256/512" in capsys.readouterr().out
    ckpt = torch.load(dst, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"format", "model", "model_name", "model_config"} and ckpt["model_name"] == "a2net"
    assert set(ckpt["model"]) == set(state)
    # the loader `tadkit test` and `tadkit detect` use takes the converted file as it is
    from tadkit.engine.checkpoint import load_checkpoint_model

    model, _ = load_checkpoint_model(dst)
    with torch.no_grad():
        out = model.raw_outputs(torch.from_numpy(data["input"]))
    assert np.abs(out["af_cls"].numpy() - data["out_af_cls"]).max() <= 1e-5
    assert np.abs(out["af_reg"].numpy() - data["out_af_reg"]).max() <= 1e-5
    ab_ref = np.concatenate([data[f"out_ab_level{i}"] for i in range(1, 7)], axis=1)
    assert np.abs(out["ab"].numpy() - ab_ref).max() <= 1e-5
    assert [p.name for p in dst.parent.iterdir()] == ["a2net.pt"]  # atomic write leaves no temp file


def _assert_one_line_error(capsys, *needles):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    for needle in needles:
        assert needle in lines[0]


def test_convert_bad_files_exit_2_without_traceback(tmp_path, capsys):
    dst = tmp_path / "out.pt"
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    assert main(["convert", "a2net-official", str(garbage), str(dst)]) == 2
    _assert_one_line_error(capsys, str(garbage), "weights_only=True")

    missing = tmp_path / "missing.pth"
    assert main(["convert", "a2net-official", str(missing), str(dst)]) == 2
    _assert_one_line_error(capsys, str(missing), "not found")

    other = tmp_path / "other.pth"
    torch.save({"backbone.weight": torch.zeros(3)}, other)
    assert main(["convert", "a2net-official", str(other), str(dst)]) == 2
    _assert_one_line_error(capsys, str(other), "features.base_feature_net.conv1.weight")

    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    assert main(["convert", "a2net-official", str(listed), str(dst)]) == 2
    _assert_one_line_error(capsys, str(listed), "state_dict")
    assert not dst.exists()


@pytest.mark.shared
def test_convert_rejects_truncated_and_mismatched_checkpoints(fixture_data, tmp_path, capsys):
    _, state = fixture_data
    good = tmp_path / "good.pth"
    torch.save(state, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:4096])
    dst = tmp_path / "out.pt"
    assert main(["convert", "a2net-official", str(truncated), str(dst)]) == 2
    _assert_one_line_error(capsys, str(truncated))
    assert main(["convert", "a2net-official", str(good), str(dst), "--set", "anchor_ratios=[1, 2]"]) == 2
    _assert_one_line_error(capsys, "field anchor_ratios")
    assert not dst.exists()
