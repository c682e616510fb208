"""Issue 17, causes 7-13 and the smaller faults of the same run: each reproduced through the CLI.

Files a user did not make (checkpoints, feature files, window releases, prediction files) and a disk
that fills up must end in one clear error (exit 2, file named, nothing half-written) or, where nothing
is wrong but something was left out, in a note saying so.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import tadkit.video.extract as extract_module
import tadkit.video.weights as weights_module
from test_detect_cache import CountingExtractor, _checkpoint
from tadkit.cli import main
from tadkit.utils import io as io_module
from tadkit.utils.io import torch_save
from tadkit.video.i3d import I3D, I3DConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DIM = 16


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from tadkit.data.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("untrusted") / "data"
    generate_dataset(root, SynthConfig(seed=5, dim=DIM, videos=3, min_video_seconds=40.0, max_video_seconds=160.0),
                     progress=False)
    return root


def a2net_config(data: Path, path: Path) -> Path:
    config = {
        "data": {"annotations": str(data / "annotations.json"), "features": str(data / "features"),
                 "subset_train": "validation", "subset_test": "test", "mode": "sliding", "window": 128},
        "model": {"name": "a2net", "kwargs": {"in_dim": DIM, "base_dim": 16, "pyramid_dims": [16] * 6,
                                              "reduce_dim": 16, "head_dim": 16, "num_classes": 20}},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "lr_decay_epochs": [], "seed": 0, "tensorboard": False},
        "test": {"batch_size": 8, "protocol": "thumos14", "nms": {"preset": "a2net"}},
    }
    path.write_text(json.dumps(config))
    return path


def acrnet_config(data: Path, path: Path) -> Path:
    config = {
        "data": {"annotations": str(data / "annotations.json"), "features": str(data / "features"),
                 "subset_train": "validation", "subset_test": "test", "mode": "resample", "resample_length": 32,
                 "resample_mode": "acrnet", "time_base": "features", "min_features": 11},
        "model": {"name": "acrnet", "kwargs": {"in_dim": DIM, "num_classes": 20, "num_heads": 2, "aas_hidden": 8,
                                               "mca_merge": "official"}},
        "train": {"optimizer": "adam", "lr": 5e-4, "batch_size": 2, "iterations": 1, "scheduler": "cosine",
                  "scheduler_unit": "iteration", "lr_decay_epochs": [], "seed": 0, "tensorboard": False},
        "test": {"protocol": "activitynet", "batch_size": 1, "drop_ambiguous": False,
                 "cas": {"preset": "thumos14", "fps": None, "rate": 4}},
    }
    path.write_text(json.dumps(config))
    return path


def feature_counts(data: Path, subset: str) -> dict[str, int]:
    gt = json.loads((data / "annotations.json").read_text())["database"]
    return {v: int(np.load(data / "features" / f"{v}.npy", mmap_mode="r").shape[0])
            for v, item in gt.items() if item["subset"] == subset}


def model_checkpoint(path: Path, in_dim: int = DIM) -> Path:
    return _checkpoint(path, in_dim)  # an untrained A2Net (2 classes) as a tadkit checkpoint


# --------------------------------------------------------------------------------------------------
# 7. Skipped videos are reported: stdout, report.txt / report.json, train.log
# --------------------------------------------------------------------------------------------------


def test_acrnet_videos_too_short_for_the_method_are_reported_by_train_and_test(synth, tmp_path, capsys):
    train_counts, test_counts = feature_counts(synth, "validation"), feature_counts(synth, "test")
    shortest_test = min(test_counts, key=test_counts.get)
    # a sampling length between the shortest test video and the others: exactly that one is skipped
    min_features = min(n for v, n in test_counts.items() if v != shortest_test)
    assert test_counts[shortest_test] < min_features
    skipped_train = sorted(v for v, n in train_counts.items() if n < min_features)
    assert len(skipped_train) < len(train_counts)
    config = acrnet_config(synth, tmp_path / "acrnet.yaml")
    setting = f"data.min_features={min_features}"

    code, out, _ = run(capsys, "train", config, "--out", tmp_path / "run", "--set", setting, "--set",
                       "train.eval_every=1", "--no-progress")
    assert code == 0
    log = (tmp_path / "run" / "train.log").read_text()
    if skipped_train:
        assert f"note: skipped {len(skipped_train)} video(s) of subset 'validation'" in out
        assert f"fewer than {min_features} features (data.min_features): {', '.join(skipped_train)}" in log
    evaluation_note = (f"skipped 1 video(s) of subset 'test' with fewer than {min_features} features "
                       f"(data.min_features): {shortest_test}; the per-epoch evaluation gives them no detections")
    assert evaluation_note in log and evaluation_note in out

    code, out, _ = run(capsys, "test", config, "--checkpoint", tmp_path / "run" / "last.pt", "--out",
                       tmp_path / "test", "--set", setting, "--no-plots", "--no-progress")
    assert code == 0
    note = f"skipped 1 video(s) of subset 'test' with fewer than {min_features} features (data.min_features): " \
           f"{shortest_test}; they have no detections"
    assert note in out and note in (tmp_path / "test" / "report.txt").read_text()
    report = json.loads((tmp_path / "test" / "report.json").read_text())
    assert report["skipped_videos"] == {"subset": "test", "count": 1, "ids": [shortest_test],
                                        "reason": f"fewer than {min_features} features (data.min_features)"}


def test_detect_on_a_video_too_short_for_the_method_says_so(synth, tmp_path, capsys):
    from tadkit.engine.checkpoint import save_checkpoint
    from tadkit.models import build_model

    kwargs = {"in_dim": DIM, "num_classes": 20, "num_heads": 2, "aas_hidden": 8, "mca_merge": "official"}
    config = json.loads(acrnet_config(synth, tmp_path / "acrnet.yaml").read_text())
    ckpt = save_checkpoint({"model_name": "acrnet", "model_config": kwargs, "model": build_model("acrnet", **kwargs)
                            .state_dict(), "epoch": 1, "config": config}, tmp_path / "acrnet.pt")
    short = tmp_path / "short.npy"
    np.save(short, np.random.default_rng(0).normal(size=(5, DIM)).astype(np.float32))
    code, _, err = run(capsys, "detect", short, "--checkpoint", ckpt, "--feature-fps", 30, "--feature-stride", 4,
                       "--no-progress")
    assert code == 2 and "video short, field data.min_features" in err and "fewer than 11 features" in err


# --------------------------------------------------------------------------------------------------
# 8. A text file or a cut file as a checkpoint
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "cut", "directory"])
def test_a_checkpoint_that_is_no_checkpoint_is_one_clear_error(synth, tmp_path, capsys, kind):
    config = a2net_config(synth, tmp_path / "a2net.yaml")
    good = model_checkpoint(tmp_path / "good.pt").read_bytes()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    bad = run_dir / "last.pt"
    if kind == "text":
        bad.write_text("hello, this is not a checkpoint\n")  # the legacy unpickler: KeyError(104)
    elif kind == "cut":
        bad.write_bytes(good[: len(good) // 3])
    else:
        bad.mkdir()
    feature = next((synth / "features").glob("video_test_*.npy"))
    words = "is a directory, expected a checkpoint" if kind == "directory" else "not a readable PyTorch checkpoint"
    for argv in (["detect", feature, "--checkpoint", bad], ["test", config, "--checkpoint", bad, "--out", tmp_path / "o"],
                 ["train", config, "--out", run_dir, "--resume"]):
        code, _, err = run(capsys, *argv, "--no-progress")
        assert code == 2, err
        assert f"file {bad}" in err and words in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# 9. Full disk: numpy's tofile raises an OSError without errno (or writes short)
# --------------------------------------------------------------------------------------------------


def full_disk_numpy_save(monkeypatch, where: Path | None = None, how: str = "raise") -> None:
    """``np.save`` as on a full disk, for files under ``where`` (all files when None): half the bytes
    reach the file, then numpy's own errno-less OSError (``how="raise"``) or nothing (``how="short"``)."""
    real = np.save

    def save(handle, array, *args, **kwargs):
        name = Path(getattr(handle, "name", "")) if not isinstance(getattr(handle, "name", 0), int) else None
        target = Path(os.readlink(f"/proc/self/fd/{handle.fileno()}")) if name is None else name
        if where is not None and where not in target.parents:
            return real(handle, array, *args, **kwargs)
        import io

        buffer = io.BytesIO()
        real(buffer, array, *args, **kwargs)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        if how == "raise":
            raise OSError(f"{len(data)} requested and {len(data) // 2} written")

    monkeypatch.setattr(np, "save", save)


@pytest.mark.parametrize("how", ["raise", "short"])
def test_data_synth_on_a_full_disk_is_one_clear_error_without_temp_files(tmp_path, capsys, monkeypatch, how):
    full_disk_numpy_save(monkeypatch, how=how)
    code, _, err = run(capsys, "data", "synth", "--out", tmp_path / "data", "--dim", 8, "--videos", 2)
    assert code == 2 and "no space left on device" in err and "Traceback" not in err
    assert temp_files(tmp_path) == []


@pytest.fixture
def fake_i3d(monkeypatch, tmp_path):
    extractor = CountingExtractor()
    monkeypatch.setattr(extract_module, "extract_video", extractor)
    torch.manual_seed(0)
    rgb = I3D(I3DConfig()).eval()
    monkeypatch.setattr(weights_module, "load_i3d", lambda *a, **k: rgb)
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(1 << 16))
    return extractor, video


def test_detect_prints_and_saves_its_detections_before_a_full_features_out(fake_i3d, tmp_path, capsys, monkeypatch):
    _, video = fake_i3d
    ckpt = model_checkpoint(tmp_path / "a2net.pt", in_dim=1024)
    keep = tmp_path / "keep"
    full_disk_numpy_save(monkeypatch, where=keep)
    code, out, err = run(capsys, "detect", video, "--checkpoint", ckpt, "--features-out", keep, "--out",
                         tmp_path / "dets.json", "--no-cache", "--no-progress")
    assert code == 2 and f"file {keep / 'clip.npy'}" in err and "no space left on device" in err
    assert "clip: " in out and "detections" in out  # the detections were printed first ...
    assert json.loads((tmp_path / "dets.json").read_text())["results"]  # ... and written
    assert temp_files(keep) == [] and not (keep / "clip.npy").exists()


def write_tiny_video(path: Path, frames: int = 20, fps: int = 10) -> Path:
    """A real, decodable H.264 clip (32 x 32 noise)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            image = av.VideoFrame.from_ndarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(image))
        container.mux(stream.encode())
    return path


def test_extract_on_a_full_disk_is_one_clear_error(fake_i3d, tmp_path, capsys, monkeypatch):
    video = write_tiny_video(tmp_path / "clip.mp4")  # decoded for real: the extraction job's own reader
    out_dir = tmp_path / "features"
    full_disk_numpy_save(monkeypatch, where=out_dir)
    code, _, err = run(capsys, "extract", video, "--out", out_dir)
    assert code == 2 and "no space left on device" in err and f"file {out_dir / 'clip.npy'}" in err
    assert temp_files(out_dir) == [] and not (out_dir / "clip.json").exists()


# --------------------------------------------------------------------------------------------------
# 10. A read-only --out for import-features (and test / extract: checked before the work)
# --------------------------------------------------------------------------------------------------


def read_only(monkeypatch, directory: Path) -> None:
    """``directory`` behaves as on a read-only file system (root ignores chmod, so the failure is simulated)."""
    real_mkstemp, real_mkdir = io_module.tempfile.mkstemp, Path.mkdir

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == directory:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdir(self, *args, **kwargs):
        if self == directory:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(io_module.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_import_features_into_a_read_only_out_is_one_clear_error(tmp_path, capsys, monkeypatch):
    from test_import_features import features, write_a2net_windows

    write_a2net_windows(tmp_path / "src", "video_test_0000001", features(0, 300), [0, 512])
    out = tmp_path / "out"
    read_only(monkeypatch, out)
    code, _, err = run(capsys, "data", "import-features", tmp_path / "src", "--layout", "a2net", "--out", out)
    assert code == 2 and f"file {out}" in err and "read-only file system" in err and "Traceback" not in err


def test_test_and_extract_check_a_read_only_out_before_the_work(synth, fake_i3d, tmp_path, capsys, monkeypatch):
    import tadkit.engine.checkpoint as checkpoint_module

    extractor, video = fake_i3d
    out = tmp_path / "out"
    read_only(monkeypatch, out)
    monkeypatch.setattr(checkpoint_module, "load_checkpoint_model", lambda *a, **k: pytest.fail("model loaded"))
    config = a2net_config(synth, tmp_path / "a2net.yaml")
    code, _, err = run(capsys, "test", config, "--checkpoint", tmp_path / "any.pt", "--out", out, "--no-progress")
    assert code == 2 and "read-only file system" in err and "--out" in err
    code, _, err = run(capsys, "extract", video, "--out", out)
    assert code == 2 and "read-only file system" in err and extractor.calls == []


# --------------------------------------------------------------------------------------------------
# 11. detect on a stand-alone feature file that is not one
# --------------------------------------------------------------------------------------------------


def write_bad_feature_file(path: Path, kind: str) -> None:
    good = np.random.default_rng(0).normal(size=(50, DIM)).astype(np.float32)
    if kind == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "truncated":
        np.save(path, good)
        path.write_bytes(path.read_bytes()[:-300])
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "no rows":
        np.save(path, good[:0])
    elif kind == "npz under a .npy name":
        with open(path, "wb") as handle:
            np.savez(handle, a=good, b=good[:3])


@pytest.mark.parametrize("kind, words", [("object", "cannot read features"), ("truncated", "cannot read features"),
                                         ("empty file", "cannot read features"),
                                         ("directory", "is a directory, expected a video or feature file"),
                                         ("no rows", "holds no features (T = 0)"),
                                         ("npz under a .npy name", "is an .npz archive, expected one .npy array")])
def test_detect_on_a_broken_stand_alone_feature_file_names_the_users_file(tmp_path, capsys, kind, words):
    ckpt = model_checkpoint(tmp_path / "a2net.pt")
    path = tmp_path / "mine.npy"
    write_bad_feature_file(path, kind)
    code, _, err = run(capsys, "detect", path, "--checkpoint", ckpt, "--feature-fps", 30, "--feature-stride", 4,
                       "--no-progress")
    assert code == 2 and f"file {path}" in err and words in err and "Traceback" not in err
    assert "tadkit_detect_" not in err  # never the temporary one-video store


def test_detect_reads_a_stand_alone_single_array_npz(tmp_path, capsys):
    ckpt = model_checkpoint(tmp_path / "a2net.pt")
    path = tmp_path / "mine.npz"
    np.savez(path, whatever=np.random.default_rng(0).normal(size=(300, DIM)).astype(np.float32))
    code, out, err = run(capsys, "detect", path, "--checkpoint", ckpt, "--feature-fps", 30, "--feature-stride", 4,
                         "--no-progress")
    assert code == 0, err
    assert out.startswith("mine: ") and "detections" in out
    np.savez(path, a=np.zeros((300, DIM), np.float32), b=np.zeros(3))
    code, _, err = run(capsys, "detect", path, "--checkpoint", ckpt, "--feature-fps", 30, "--feature-stride", 4,
                       "--no-progress")
    assert code == 2 and f"file {path}" in err and "has no array 'features' (arrays: ['a', 'b'])" in err


# --------------------------------------------------------------------------------------------------
# 12. Hostile sizes are refused before allocating
# --------------------------------------------------------------------------------------------------


def test_a_window_file_asking_for_terabytes_is_refused_before_allocating(tmp_path, capsys):
    from test_import_features import features, write_a2net_windows

    feats = features(0, 300)
    write_a2net_windows(tmp_path / "src", "video_test_0000001", feats, [0, 512])
    begin = 4_000_000_000_000  # a (4000, 128) window 10**12 features in: 58 TiB of float32 zeros before it
    block = feats[:128]
    half = block.shape[1] // 2
    np.savez(tmp_path / "src" / f"video_test_0000001_{begin}.npz", vid_name="video_test_0000001", begin_frame=begin,
             feat_spa=block[:, :half].T.copy(), feat_tem=block[:, half:].T.copy())
    code, _, err = run(capsys, "data", "import-features", tmp_path / "src", "--layout", "a2net", "--out",
                       tmp_path / "out")
    assert code == 2 and "video_test_0000001_4000000000000.npz" in err and "field begin_frame" in err
    assert "past the video's end" in err and not (tmp_path / "out" / "video_test_0000001.npy").exists()


def test_a_checkpoint_asking_for_a_huge_model_is_refused_before_allocating(tmp_path, capsys):
    ckpt = model_checkpoint(tmp_path / "a2net.pt")
    data = torch.load(ckpt, weights_only=True)
    data["model_config"]["in_dim"] = 10**12
    torch_save(data, ckpt)
    feature = tmp_path / "v.npy"
    np.save(feature, np.zeros((200, DIM), np.float32))
    code, _, err = run(capsys, "detect", feature, "--checkpoint", ckpt, "--feature-fps", 30, "--feature-stride", 4,
                       "--no-progress")
    assert code == 2 and f"file {ckpt}, field model" in err and "weights do not fit the model" in err
    assert "1000000000000" in err


@pytest.mark.parametrize("field, value", [("duration", 1e12), ("fps", 1e9)])
def test_a_timeline_asking_for_years_of_video_is_refused_before_allocating(synth, tmp_path, capsys, field, value):
    annotations = json.loads((synth / "annotations.json").read_text())
    video = sorted(annotations["database"])[0]
    annotations["database"] = {video: {**annotations["database"][video], field: value}}
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps(annotations))
    code, _, err = run(capsys, "data", "synth", "--out", tmp_path / "out", "--timeline", path, "--dim", 8)
    assert code == 2 and f"file {path}, video {video}, field {field}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# 13. A NaN in a cached feature file
# --------------------------------------------------------------------------------------------------


def test_a_damaged_feature_cache_entry_is_extracted_again(fake_i3d, tmp_path, capsys):
    from tadkit.video.cache import feature_cache_dir

    extractor, video = fake_i3d
    ckpt = model_checkpoint(tmp_path / "a2net.pt", in_dim=1024)
    argv = ["detect", video, "--checkpoint", ckpt, "--no-progress"]
    assert run(capsys, *argv)[0] == 0 and len(extractor.calls) == 1
    (entry,) = feature_cache_dir().glob("clip-*.npy")
    cached = np.load(entry)
    cached[3, 7] = np.nan
    np.save(entry, cached)
    code, out, err = run(capsys, *argv)
    assert code == 0 and len(extractor.calls) == 2 and "clip: " in out
    assert f"cached features {entry} hold a non-finite value (feature 3, column 7); extracting again" in err
    assert np.isfinite(np.load(entry)).all()  # the entry was replaced


# --------------------------------------------------------------------------------------------------
# Smaller, from the same run
# --------------------------------------------------------------------------------------------------


def test_stale_temp_files_of_a_killed_run_are_removed_by_the_next_run(synth, tmp_path, capsys):
    config = a2net_config(synth, tmp_path / "a2net.yaml")
    run_dir = tmp_path / "run"
    assert run(capsys, "train", config, "--out", run_dir, "--no-progress")[0] == 0
    stale = [run_dir / ".epoch_002.pt.k1ll3d.tmp", run_dir / ".history.json.x9.tmp", run_dir / ".last.pt.4242.link"]
    for path in stale:
        path.write_bytes(b"half a file")
    assert run(capsys, "train", config, "--out", run_dir, "--resume", "--set", "train.epochs=2", "--no-progress")[0] == 0
    assert not any(p.exists() for p in stale)
    assert torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["epoch"] == 2  # the run went on


def test_stale_temp_files_in_a_frame_folder_are_removed(tmp_path, monkeypatch):
    import tadkit.video.frames as frames_module
    from tadkit.video.frames import FrameSettings, convert_videos

    monkeypatch.setattr(frames_module, "find_videos", lambda inputs: [])  # every video already converted

    out = tmp_path / "frames"
    (out / "rgb").mkdir(parents=True)
    stale = out / "rgb" / ".v.npy.abc123.tmp"
    stale.write_bytes(b"half a frame")
    summary = convert_videos([], out, FrameSettings(fps=10.0, size=32), show_progress=False)
    assert not stale.exists() and not summary.failed


@pytest.mark.parametrize("name, text", [("p.txt", ""), ("p.json", ""), ("p.csv", ""), ("p.txt", "\n  \n")])
def test_an_empty_prediction_file_is_refused_in_every_format(synth, tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_text(text)
    code, _, err = run(capsys, "eval", "--gt", synth / "annotations.json", "--pred", path, "--protocol", "thumos14",
                       "--subset", "test")
    assert code == 2 and f"file {path}: prediction file is empty" in err


def test_a_missing_protocol_is_reported_before_the_predictions_are_read(synth, tmp_path, capsys, monkeypatch):
    import tadkit.evaluation as evaluation

    monkeypatch.setattr(evaluation, "load_predictions", lambda *a, **k: pytest.fail("predictions parsed"))
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"results": {}}))
    code, _, err = run(capsys, "eval", "--gt", synth / "annotations.json", "--pred", path, "--subset", "test")
    assert code == 2 and "--protocol is required" in err
    code, _, err = run(capsys, "eval", "--gt", synth / "annotations.json", "--compare", path, path, "--subset", "test")
    assert code == 2 and "--protocol is required with --compare" in err


def test_negative_prediction_times_are_counted_like_reversed_ones(synth, tmp_path, capsys):
    gt = json.loads((synth / "annotations.json").read_text())["database"]
    video = next(v for v, item in gt.items() if item["subset"] == "test")
    label = gt[video]["annotations"][0]["label"]
    results = {video: [{"segment": [-2.0, 3.0], "label": label, "score": 0.9},
                       {"segment": [-4.0, -1.0], "label": label, "score": 0.8},
                       {"segment": [1.0, 5.0], "label": label, "score": 0.7}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"results": results}))
    code, out, _ = run(capsys, "eval", "--gt", synth / "annotations.json", "--pred", path, "--protocol", "thumos14",
                       "--subset", "test")
    assert code == 0 and "note: 2 predictions with a negative start or end" in out
    code, out, _ = run(capsys, "eval", "--gt", synth / "annotations.json", "--pred", path, "--protocol", "thumos14",
                       "--subset", "test", "--format", "json")
    assert json.loads(out)["counts"]["negative_time_preds"] == 2
