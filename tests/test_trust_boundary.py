"""Files from elsewhere never run code, never escape their folder, never silently replace each other
(issue 17, causes 1-6). Each test goes through the CLI the way a user with someone else's file would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tadkit.cli import main
from tadkit.data.ids import RESERVED_VIDEO_IDS, check_video_id, video_id_problem
from tadkit.engine.checkpoint import CHECKPOINT_FORMAT
from tadkit.errors import TadkitError

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def cli(args: list[str], cwd: Path, pythonpath: list[Path] = ()) -> subprocess.CompletedProcess:
    """``python -m tadkit.cli ARGS`` in ``cwd`` (which ``-m`` puts first on sys.path, as for a user)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [ROOT, *pythonpath])}
    return subprocess.run([sys.executable, "-m", "tadkit.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


# --------------------------------------------------------------------------------------------------
# the one id check
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("video_id", ["", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd", "a\0b", "features",
                                      "Features", "import_report", ".tadkit_scan", "frames", ".lock", ".hidden",
                                      "x" * 201])
def test_unusable_ids_are_refused_naming_file_and_id(video_id):
    with pytest.raises(TadkitError) as error:
        check_video_id(video_id, file="ann.json")
    assert error.value.file == "ann.json" and repr(video_id)[:40] in str(error.value)


@pytest.mark.parametrize("video_id", ["video_test_0000004", "v_-abc_DEF12", "a b (1)", "ünïcode", "a.b", "x" * 200])
def test_real_ids_pass(video_id):
    assert video_id_problem(video_id) is None and check_video_id(video_id) == video_id


def test_reserved_ids_are_the_files_tadkit_writes_beside_videos():
    from tadkit.data.features import FEATURES_JSON, SCAN_CACHE_NAME
    from tadkit.data.import_features import REPORT_FILE
    from tadkit.utils.io import LOCK_NAME
    from tadkit.video.frames import INDEX_FILE

    for name in (FEATURES_JSON, SCAN_CACHE_NAME, REPORT_FILE, INDEX_FILE):
        assert Path(name).stem in RESERVED_VIDEO_IDS
    assert LOCK_NAME in RESERVED_VIDEO_IDS


# --------------------------------------------------------------------------------------------------
# cause 1: a checkpoint never makes tadkit import a module
# --------------------------------------------------------------------------------------------------

EVIL = "from pathlib import Path\nPath(__file__).with_name('PWNED').write_text('ran')\nSPEC = None\n"


@pytest.fixture
def evil_dir(tmp_path: Path) -> Path:
    (tmp_path / "evil.py").write_text(EVIL)
    np.save(tmp_path / "x.npy", np.zeros((64, 8), np.float32))
    return tmp_path


def _checkpoint(path: Path, model_name: str, config: dict | None = None, **extra) -> Path:
    payload = {"format": CHECKPOINT_FORMAT, "model_name": model_name, "model_config": {}, "model": {}, **extra}
    if config is not None:
        payload["config"] = config
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("where", ["model_name", "config"])
def test_detect_with_a_checkpoint_naming_a_module_runs_nothing(evil_dir, where):
    if where == "model_name":
        _checkpoint(evil_dir / "model.pt", "evil:SPEC")
    else:  # a built-in model_name, but the stored run config names the module
        _checkpoint(evil_dir / "model.pt", "a2net", config={"model": {"name": "evil:SPEC"}})
    result = cli(["detect", "x.npy", "--checkpoint", "model.pt", "--feature-fps", "25", "--feature-stride", "4"],
                 evil_dir)
    assert result.returncode == 2, result.stderr
    assert not (evil_dir / "PWNED").exists()
    assert "model.pt" in result.stderr and "--method-module evil:SPEC" in result.stderr
    assert "Traceback" not in result.stderr


def test_test_with_a_checkpoint_naming_a_module_runs_nothing(evil_dir):
    _checkpoint(evil_dir / "model.pt", "evil:SPEC")
    (evil_dir / "run.yaml").write_text("model:\n  name: a2net\ndata:\n  annotations: ann.json\n  features: feats\n")
    result = cli(["test", "run.yaml", "--checkpoint", "model.pt", "--out", "out"], evil_dir)
    assert result.returncode == 2, result.stderr
    assert not (evil_dir / "PWNED").exists() and "--method-module" in result.stderr


def test_train_resume_from_a_checkpoint_naming_a_module_runs_nothing(evil_dir):
    """(train --resume compares the stored name with the config's and resolves nothing: a guard.)"""
    run = evil_dir / "run"
    run.mkdir()
    _checkpoint(run / "last.pt", "evil:SPEC", epoch=1)
    (evil_dir / "run.yaml").write_text("model:\n  name: a2net\ndata:\n  annotations: ann.json\n  features: feats\n")
    result = cli(["train", "run.yaml", "--out", "run", "--resume", "--no-progress"], evil_dir)
    assert result.returncode == 2 and not (evil_dir / "PWNED").exists(), result.stderr


def test_a_plugin_checkpoint_loads_with_method_module(tmp_path):
    """The user's own plug-in: named on the command line it loads; the checkpoint alone cannot name it."""
    from test_engine_support import ToyDetector

    torch.manual_seed(0)
    model = ToyDetector(in_dim=8, num_classes=3, hidden=16)
    _checkpoint(tmp_path / "toy.pt", "toy_method:SPEC", model=model.state_dict(), classes=["a", "b", "c"],
                model_config={"in_dim": 8, "num_classes": 3, "hidden": 16})
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(96, 8)).astype(np.float32))
    args = ["detect", "v.npy", "--checkpoint", "toy.pt", "--feature-fps", "25", "--feature-stride", "4",
            "--out", "d.json", "--no-progress"]
    refused = cli(args, tmp_path, pythonpath=[TESTS])
    assert refused.returncode == 2 and "--method-module toy_method:SPEC" in refused.stderr
    loaded = cli([*args, "--method-module", "toy_method:SPEC"], tmp_path, pythonpath=[TESTS])
    assert loaded.returncode == 0, loaded.stderr
    assert "v" in json.loads((tmp_path / "d.json").read_text())["results"]


# --------------------------------------------------------------------------------------------------
# cause 2: a frame index and annotations cannot lead tadkit out of its folders
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("named_in", ["frames.json", "frames.json and ann.json"])
def test_afsd_e2e_test_refuses_a_frame_index_id_that_leaves_the_folder(tmp_path, capsys, named_in):
    from test_afsd_frames import tiny_model, write_store

    from tadkit.utils.io import torch_save

    frames = tmp_path / "data" / "frames"
    write_store(frames, {"ok": 80}, size=32)
    np.save(tmp_path / "secret.npy", np.zeros((80, 32, 32, 3), np.uint8))  # what rgb/../../../secret reads
    index = json.loads((frames / "frames.json").read_text())
    escape = "../../../secret"
    index["videos"][escape] = dict(index["videos"]["ok"])
    (frames / "frames.json").write_text(json.dumps(index))
    annotations = {"version": "x", "taxonomy": [], "database": {
        vid: {"subset": "validation", "duration": 8.0, "annotations": [
            {"segment": [1.0, 2.0], "label": "a"}, {"segment": [3.0, 4.0], "label": "b"},
            {"segment": [5.0, 6.0], "label": "c"}]} for vid in ("ok", escape) if vid == "ok" or "ann" in named_in}}
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    torch.manual_seed(0)
    model = tiny_model()
    torch_save({"format": CHECKPOINT_FORMAT, "model_name": "afsd_e2e", "model_config": model.config_dict(),
                "model": model.state_dict(), "classes": ["a", "b", "c"]}, tmp_path / "e2e.pt")
    out = tmp_path / "run" / "out"
    code = main(["test", "afsd/synthetic_frames", "--checkpoint", str(tmp_path / "e2e.pt"), "--out", str(out),
                 "--set", f"data.frames={frames}", "--set", f"data.annotations={tmp_path / 'ann.json'}",
                 "--set", "data.subset_test=validation", "--set", "data.frame_size=32", "--set", "data.crop_size=32",
                 "--set", "data.window=64",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    source = tmp_path / "ann.json" if "ann" in named_in else frames / "frames.json"  # the first file read
    assert f"file {source}, video '../../../secret'" in err and "path separator" in err
    # out/timeline_../../../secret.png would be run/secret.png, outside --out
    assert not list(tmp_path.rglob("timeline_*")) and not list(tmp_path.rglob("secret.png"))


def test_the_feature_store_refuses_an_id_that_leaves_its_folder(tmp_path):
    from tadkit.data.features import FeatureSpec, FeatureStore, save_features

    spec = FeatureSpec(fps=25.0, stride_frames=4, clip_frames=16, dim=8)
    save_features(tmp_path / "feats", "ok", np.zeros((10, 8), np.float32), spec)
    spec.save(tmp_path / "feats")
    np.save(tmp_path / "escaped.npy", np.zeros((10, 8), np.float32))
    store = FeatureStore(tmp_path / "feats")
    with pytest.raises(TadkitError, match=r"'\.\./escaped'.*path separator") as error:
        store.read("../escaped")
    assert error.value.file == str(tmp_path / "feats")
    assert store.video_ids() == ["ok"]


# --------------------------------------------------------------------------------------------------
# cause 3: W-TALC annotation .npy files are never unpickled with code
# --------------------------------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_wtalc_pickle_payload_does_not_run(tmp_path, capsys):
    folder = tmp_path / "wtalc"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    classlist = np.empty(2, dtype=object)
    classlist[:] = [b"Run", _Payload(marker)]
    np.save(folder / "classlist.npy", classlist, allow_pickle=True)
    segments = np.empty(1, dtype=object)
    segments[0] = [[1.0, 2.0]]
    labels = np.empty(1, dtype=object)
    labels[0] = [b"Run"]
    np.save(folder / "segments.npy", segments, allow_pickle=True)
    np.save(folder / "labels.npy", labels, allow_pickle=True)
    np.save(folder / "subset.npy", np.array([b"validation"]))
    np.save(folder / "videoname.npy", np.array([b"v1"]))
    assert main(["data", "stats", str(folder)]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "classlist.npy" in err and "system; only NumPy arrays and plain data" in err


# --------------------------------------------------------------------------------------------------
# cause 4: import-features never lets one source silently replace another
# --------------------------------------------------------------------------------------------------


def test_import_two_actionformer_files_for_one_video(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    first, second = np.ones((20, 16), np.float32), np.full((30, 16), 2.0, np.float32)
    np.save(src / "a" / "v.npy", first)
    np.save(src / "b" / "v.npy", second)
    out = tmp_path / "out"
    args = ["data", "import-features", str(src), "--layout", "actionformer", "--out", str(out), "--fps", "30"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(src / "a" / "v.npy") in err and str(src / "b" / "v.npy") in err and "--on-duplicate" in err
    assert not (out / "v.npy").exists() and not (out / "features.json").exists()  # nothing half-written

    assert main([*args, "--on-duplicate", "last"]) == 0
    assert np.array_equal(np.load(out / "v.npy"), second)
    report = json.loads((out / "import_report.json").read_text())
    assert report["duplicates"] == {"v": [str(src / "b" / "v.npy"), str(src / "a" / "v.npy")]}
    assert "kept" in capsys.readouterr().out


def _ecm_file(path: Path, name: str, value: float) -> None:
    np.savez(path, feat_spa=np.full((4, 10), value, np.float32), feat_tem=np.full((4, 10), value, np.float32),
             frame_num=np.array(300.0), fps=np.array(30.0), vid_name=np.array(name))


def test_import_two_ecm_files_with_one_vid_name(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _ecm_file(src / "x1.npz", "video_a", 1.0)
    _ecm_file(src / "x2.npz", "video_a", 2.0)
    out = tmp_path / "out"
    args = ["data", "import-features", str(src), "--layout", "ecm", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "x1.npz" in err and "x2.npz" in err and "video_a" in err
    assert not out.exists() or not any(out.iterdir())
    assert main([*args, "--on-duplicate", "first"]) == 0
    assert np.all(np.load(out / "video_a.npy") == 1.0)


def test_import_two_acrnet_rgb_files_for_one_video(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "rgb").mkdir(parents=True)
    (src / "flow").mkdir()
    np.save(src / "v_rgb.npy", np.ones((5, 4), np.float32))
    np.save(src / "rgb" / "v.npy", np.zeros((5, 4), np.float32))
    np.save(src / "flow" / "v.npy", np.zeros((5, 4), np.float32))
    assert main(["data", "import-features", str(src), "--layout", "acrnet", "--out", str(tmp_path / "o")]) == 2
    assert "(rgb)" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["import_report", "features", ".tadkit_scan"])
def test_import_refuses_a_video_named_like_tadkits_own_files(tmp_path, capsys, name):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / f"{name}.npy", np.ones((5, 16), np.float32))
    np.save(src / "other.npy", np.ones((5, 16), np.float32))
    out = tmp_path / "out"
    assert main(["data", "import-features", str(src), "--layout", "actionformer", "--out", str(out),
                 "--fps", "30"]) == 2
    err = capsys.readouterr().err
    assert f"{name}.npy" in err and ("reserved" in err or "hidden" in err)
    assert not out.exists() or not any(out.iterdir())


# --------------------------------------------------------------------------------------------------
# cause 5: extract never replaces the user's features.json
# --------------------------------------------------------------------------------------------------


def test_extract_refuses_a_video_named_features(tmp_path, capsys):
    from test_video_synthetic import write_video

    from tadkit.utils.io import torch_save
    from tadkit.video.i3d import I3D

    videos = tmp_path / "videos"
    write_video(videos / "features.mp4", 10, fps=10)
    write_video(videos / "fine.mp4", 10, fps=10)
    out = tmp_path / "feats"
    out.mkdir()
    mine = '{"fps": 25, "stride_frames": 16}'
    (out / "features.json").write_text(mine)
    torch.manual_seed(0)
    torch_save({"state_dict": I3D().state_dict(), "source": "random"}, tmp_path / "rgb.pt")
    code = main(["extract", str(videos), "--out", str(out), "--stack", "9", "--step", "9",
                 "--weights", str(tmp_path / "rgb.pt")])
    assert code == 2
    assert (out / "features.json").read_text() == mine and sorted(p.name for p in out.iterdir()) == ["features.json"]
    assert "features.mp4" in capsys.readouterr().err


def test_detect_refuses_a_video_named_features_before_writing_features_out(tmp_path, capsys):
    from test_video_synthetic import write_video

    write_video(tmp_path / "features.mp4", 10, fps=10)
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "features.json").write_text("{}")
    assert main(["detect", str(tmp_path / "features.mp4"), "--features-out", str(keep), "--no-progress"]) == 2
    assert "video id 'features' cannot name a file" in capsys.readouterr().err
    assert sorted(p.name for p in keep.iterdir()) == ["features.json"] and (keep / "features.json").read_text() == "{}"


# --------------------------------------------------------------------------------------------------
# cause 6: a NUL byte in a video id
# --------------------------------------------------------------------------------------------------


def _timeline(path: Path, ids: list[str]) -> Path:
    database = {vid: {"subset": "test", "duration": 6.0, "annotations": [{"segment": [1.0, 3.0], "label": "Run"}]}
                for vid in ids}
    path.write_text(json.dumps({"version": "x", "taxonomy": [], "database": database}))
    return path


@pytest.mark.parametrize("video", [False, True])
def test_synth_refuses_a_nul_in_a_video_id_before_writing(tmp_path, capsys, video):
    timeline = _timeline(tmp_path / "tl.json", ["a", "a\0b"])  # PyAV would write a.mp4 twice
    out = tmp_path / "out"
    kind = ["--video"] if video else ["--dim", "8"]
    args = ["data", "synth", "--timeline", str(timeline), "--out", str(out), *kind]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "NUL" in err and "tl.json" in err and "Traceback" not in err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
