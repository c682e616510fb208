"""The method contract (issue 7): one spec per method, an engine that names none of them.

A toy method defined OUTSIDE tadkit (tests/toy_method.py) goes through the whole CLI: train ->
resume -> test -> detect -> eval; the engine's optimizer, schedule and iteration-based runs are
checked on their own; the CLI imports no heavy library for --help; a wheel ships every config.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from test_engine_support import ToyDetector, toy_config_dict, toy_datasets_fn
from tadkit.cli import main
from tadkit.engine.checkpoint import load_checkpoint
from tadkit.engine.config import Config, load_config, packaged_configs
from tadkit.engine.trainer import build_optimizer, build_scheduler, lr_at, train
from tadkit.errors import TadkitError
from tadkit.methods import get_method

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# Registry and specs
# --------------------------------------------------------------------------------------------------


def test_every_builtin_method_has_a_spec_and_an_importer():
    for name in ("a2net", "ecm", "acrnet", "afsd"):
        spec = get_method(name)
        assert spec.name == name and spec.official_importer is not None
        assert spec.data_kind in ("windows", "videos", "frames") and spec.output_kind in ("detections", "cas")
        assert (spec.output_kind == "cas") == (spec.localize is not None)
    assert get_method("ecm").data_kind == "videos" and get_method("a2net").data_kind == "windows"
    with pytest.raises(TadkitError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(TadkitError, match="cannot load method"):
        get_method("no_such_module_xyz:SPEC")


def test_a2net_keeps_its_issue3_import_paths():
    from tadkit.methods.a2net.official import from_official_state_dict
    from tadkit.models import MODELS, build_model
    from tadkit.models.a2net import A2Net
    from tadkit.models.a2net import from_official_state_dict as legacy

    assert legacy is from_official_state_dict and "a2net" in MODELS
    model = build_model("a2net", in_dim=32, base_dim=16, pyramid_dims=[16] * 6, reduce_dim=16, head_dim=16, num_classes=3)
    assert isinstance(model, A2Net)
    clone = from_official_state_dict(model.state_dict())
    assert clone.config_dict() == model.config_dict()


def test_engine_pipeline_and_commands_name_no_method():
    # issue 7 "done when": engine, pipeline and commands import no method module and branch on no
    # method name (names in help texts and docstrings are fine)
    import re

    pattern = re.compile(r"tadkit\.(methods|models)\.(a2net|ecm|acrnet|afsd)|[=!]=\s*['\"](a2net|ecm|acrnet|afsd)['\"]"
                         r"|\bA2Net\w*\(|\bECM\w*\(|\bACRNet\w*\(|\bAFSD\w*\(")
    offenders = []
    for path in [*(ROOT / "tadkit/engine").glob("*.py"), ROOT / "tadkit/pipeline.py", *(ROOT / "tadkit/commands").glob("*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if pattern.search(code) and not code.strip().startswith(('"', "'", "``", "*")):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


# --------------------------------------------------------------------------------------------------
# Engine pieces: optimizer, parameter groups, schedules
# --------------------------------------------------------------------------------------------------


def test_adamw_and_parameter_groups_first_regex_wins():
    config = Config.from_dict(toy_config_dict(optimizer="adamw", weight_decay=0.01, param_groups=[
        {"params": r"^body\.", "lr": 1e-5}, {"params": r"^(body|cls)\.", "lr_scale": 0.5, "weight_decay": 0.0}]))
    model = ToyDetector()
    optimizer = build_optimizer(model, config)
    assert isinstance(optimizer, torch.optim.AdamW)
    by_rule = {g["rule"]: g for g in optimizer.param_groups}
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    assert ids(by_rule[0]) == {id(p) for p in model.body.parameters()} and by_rule[0]["lr"] == 1e-5
    assert ids(by_rule[1]) == {id(p) for p in model.cls.parameters()}
    assert by_rule[1]["lr"] == pytest.approx(0.5e-2) and by_rule[1]["weight_decay"] == 0.0
    assert ids(by_rule[-1]) == {id(p) for p in model.reg.parameters()} and by_rule[-1]["weight_decay"] == 0.01
    with pytest.raises(TadkitError, match="param_groups"):
        Config.from_dict(toy_config_dict(param_groups=[{"params": "(", "lr": 1.0}]))
    for bad in ({"lr": -1}, {"lr": True}, {"weight_decay": "abc"}, {"lr": 1.0, "lr_scale": 2.0}, {"momentum": 0.9}):
        with pytest.raises(TadkitError, match=r"param_groups\[0\]"):
            Config.from_dict(toy_config_dict(param_groups=[{"params": "x", **bad}]))
    assert Config.from_dict(toy_config_dict(param_groups=[{"params": "x", "lr": "1e-5"}]))  # YAML's string form


def test_cosine_per_iteration_with_warmup_matches_the_closed_form():
    config = Config.from_dict(toy_config_dict(lr=1.0, scheduler="cosine", scheduler_unit="iteration", iterations=20,
                                              warmup=4, min_lr_factor=0.1))
    optimizer = build_optimizer(ToyDetector(), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=6)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[:4] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5])
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 16)) / 2 for t in range(16)]
    assert seen[4:] == pytest.approx(expected)
    assert lr_at(1.0, config, 20, 20) == pytest.approx(0.1)


def _iteration_run(tmp_path: Path, name: str, iterations: int, resume: bool = False):
    config = Config.from_dict(toy_config_dict(iterations=iterations, checkpoint_every=5, eval_every=0,
                                              scheduler="cosine", scheduler_unit="iteration", keep_checkpoints=None, snapshot_state="full"))
    # cosine over a fixed 14 steps in both runs: the schedule must not depend on where a run stopped
    config.train.iterations = iterations
    return train(config, tmp_path / name, resume, toy_datasets_fn(24), progress=False)


def test_iteration_based_run_checkpoints_by_step_and_resumes_inside_an_epoch(tmp_path):
    full = train(Config.from_dict(toy_config_dict(iterations=14, checkpoint_every=5, scheduler="cosine",
                                                  scheduler_unit="iteration", keep_checkpoints=None, snapshot_state="full")),
                 tmp_path / "full", False, toy_datasets_fn(24), progress=False)  # 6 steps per epoch
    assert full.global_step == 14 and full.epoch == 2  # 2 complete epochs + 2 steps of the third
    names = sorted(p.name for p in (tmp_path / "full").glob("step_*.pt"))
    assert names == ["step_000005.pt", "step_000010.pt", "step_000014.pt"]
    assert [h["step"] for h in full.history] == [5, 10, 14]
    # stop at step 5 (inside epoch 1), then resume: the same 14-step run, weights and all
    stopped = Config.from_dict(toy_config_dict(iterations=14, checkpoint_every=5, scheduler="cosine",
                                               scheduler_unit="iteration", keep_checkpoints=None, snapshot_state="full"))
    part = tmp_path / "part"
    train(stopped, part, False, toy_datasets_fn(24), progress=False)
    for extra in part.glob("step_0000[1-9]*.pt"):
        extra.unlink()
    step5 = part / "step_000005.pt"
    (part / "last.pt").unlink()
    (part / "last.pt").write_bytes(step5.read_bytes())
    data = load_checkpoint(part / "last.pt")
    assert data["global_step"] == 5 and data["step_in_epoch"] == 5 and data["epoch"] == 0
    resumed = train(stopped, part, True, toy_datasets_fn(24), progress=False)
    assert resumed.resumed_from == 5 and resumed.global_step == 14
    a, b = load_checkpoint(full.last_checkpoint)["model"], load_checkpoint(resumed.last_checkpoint)["model"]
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), key


# --------------------------------------------------------------------------------------------------
# A method of one's own, through the CLI
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from tadkit.data.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("toy_data")
    generate_dataset(root, SynthConfig(seed=3, dim=8, videos=4, min_video_seconds=30.0, max_video_seconds=60.0),
                     progress=False)
    return root


def _toy_yaml(path: Path, data: Path, epochs: int) -> Path:
    path.write_text(
        "model:\n  name: toy_method:SPEC\n  kwargs: {in_dim: 8, num_classes: 20, hidden: 16}\n"
        f"data:\n  annotations: {data / 'annotations.json'}\n  features: {data / 'features'}\n"
        "  subset_train: validation\n  subset_test: test\n  window: 32\n"
        f"train: {{epochs: {epochs}, batch_size: 8, lr: 0.01, lr_decay_epochs: [], seed: 0, tensorboard: false,"
        " log_every: 0, device: cpu}\n"
        "test: {protocol: thumos14, batch_size: 4}\n"
    )
    return path


def test_a_plugin_method_trains_resumes_tests_detects_and_evaluates_through_the_cli(toy_data, tmp_path, capsys):
    config = _toy_yaml(tmp_path / "toy.yaml", toy_data, epochs=1)
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 0
    assert main(["train", str(config), "--out", str(run), "--resume", "--no-progress", "--set", "train.epochs=2"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2] and history["model"] == "toy_method:SPEC"
    stored = load_checkpoint(run / "last.pt")
    assert stored["model_name"] == "toy_method:SPEC" and len(stored["classes"]) == 20

    out = tmp_path / "test"
    assert main(["test", str(config), "--checkpoint", str(run / "last.pt"), "--out", str(out), "--no-plots",
                 "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    primary = report["protocols"]["thumos14"]
    assert all(np.isfinite(primary["mAP"])) and report["num_detections"] > 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) <= {v for v in json.loads((toy_data / "annotations.json").read_text())["database"]}

    video = sorted(results)[0]
    feature_file = toy_data / "features" / f"{video}.npy"
    fps = json.loads((toy_data / "annotations.json").read_text())["database"][video]["fps"]
    assert main(["detect", str(feature_file), "--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "d.json"),
                 "--feature-fps", str(fps), "--feature-stride", "4", "--no-progress"]) == 0
    detected = json.loads((tmp_path / "d.json").read_text())["results"][video]
    assert detected and {d["label"] for d in detected} <= set(stored["classes"])

    # the config's model section does not rebuild a checkpoint's model: tadkit test says so
    capsys.readouterr()
    assert main(["test", str(config), "--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "test2"),
                 "--no-plots", "--no-progress", "--set", "model.kwargs.hidden=99"]) == 0
    assert "model.kwargs hidden" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["eval", "--gt", str(toy_data / "annotations.json"), "--pred", str(out / "results.json"),
                 "--protocol", "thumos14", "--subset", "test", "--format", "json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["mAP"] == pytest.approx(primary["mAP"], abs=1e-12)


def test_a_method_without_a_dataset_builder_fails_clearly(toy_data, tmp_path):
    from tadkit.methods import MethodSpec, register_method, unregister_method

    register_method(MethodSpec(name="frames_toy", model="test_engine_support:ToyDetector", data_kind="frames"))
    try:
        config = _toy_yaml(tmp_path / "f.yaml", toy_data, 1)
        config.write_text(config.read_text().replace("toy_method:SPEC", "frames_toy"))
        assert main(["train", str(config), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    finally:
        unregister_method("frames_toy")


# --------------------------------------------------------------------------------------------------
# Start-up cost and packaging
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["", "eval", "train", "test", "detect", "data", "convert", "demo"])
def test_cli_parsing_imports_no_torch(command):
    code = (
        "import sys, tadkit.cli\n"
        f"tadkit.cli.build_parser(only={command!r})\n"
        "print(','.join(m for m in ('torch', 'scipy', 'matplotlib', 'av', 'cv2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"`tadkit {command} --help` imports {out}"


def test_every_shipped_config_loads():
    names = packaged_configs()
    assert {"a2net/thumos14", "ecm/thumos14", "acrnet/thumos14", "afsd/synthetic"} <= set(names)
    for name in names:
        config = load_config(name)
        assert get_method(config.model.name).name == config.model.name, name


@pytest.mark.slow
def test_a_non_editable_wheel_ships_the_configs_and_methods(tmp_path):
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)]
    # the installed setuptools first (no download); an isolated build from the registry if it is too old
    done = subprocess.run([*command, "--no-build-isolation"], capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(command, check=True, capture_output=True, text=True)
    (wheel,) = tmp_path.glob("tadkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in packaged_configs():
        assert f"tadkit/configs/{config}.yaml" in names, config
    for method in ("a2net", "ecm", "acrnet", "afsd"):
        assert f"tadkit/methods/{method}/__init__.py" in names


def test_evaluating_between_epochs_does_not_change_the_training_run(tmp_path):
    from tadkit.engine.inference import predict_windows
    from test_engine_support import ToyWindows, toy_collate

    def evaluate_fn(model, epoch):
        predictions = predict_windows(model, ToyWindows(5), toy_collate, batch_size=2, progress=False)
        return {"n": float(len(predictions))}

    def config(**train_keys):
        data = toy_config_dict(epochs=3, **train_keys)
        data["model"]["kwargs"]["random_negatives"] = 0.5  # training draws from the global torch RNG
        return Config.from_dict(data)

    plain = train(config(), tmp_path / "a", False, toy_datasets_fn(24), progress=False)
    evaluated = train(config(eval_every=1), tmp_path / "b", False, toy_datasets_fn(24), evaluate_fn, progress=False)
    assert [h["metrics"] for h in evaluated.history] == [{"n": 5.0}] * 3
    a, b = load_checkpoint(plain.last_checkpoint)["model"], load_checkpoint(evaluated.last_checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
