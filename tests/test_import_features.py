"""`tadkit data import-features`: released feature files -> tadkit's layout, with each source's time mapping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tadkit.cli import main
from tadkit.data.features import FeatureStore
from tadkit.data.import_features import REPORT_FILE, import_features
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError

C = 8  # channels per stream (1024 in the releases; small here)


def features(seed: int, length: int, dim: int = 2 * C) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((length, dim)).astype(np.float32)


def a2net_starts(frames: int, training: bool) -> list[int]:
    """A2Net's window starts in frames (spec a2net.md 1.2), for generating a release."""
    stride = 128 if training else 256
    count = int((frames + stride - 512) / stride)
    starts = [i * stride for i in range(count)] or ([0] if training else [])
    if frames > 512:
        starts.append(frames - 512)
    return starts or [0]


def write_a2net_windows(root, video: str, feats: np.ndarray, begins: list[int]) -> None:
    """One npz per window as A2Net's construct_feature_thumos.py writes them (pad = repeat last row)."""
    root.mkdir(parents=True, exist_ok=True)
    for begin in begins:
        start = begin // 4
        block = feats[start:start + 128]
        if len(block) < 128:
            block = np.concatenate([block, np.repeat(block[-1:], 128 - len(block), axis=0)])
        np.savez(root / f"{video}_{str(begin).zfill(5)}.npz", vid_name=video, begin_frame=begin,
                 feat_spa=block[:, :C].T.copy(), feat_tem=block[:, C:].T.copy())


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------- A2Net


def test_a2net_test_split_round_trip_and_time_mapping(tmp_path):
    videos = {"video_test_0000004": features(0, 300), "video_test_0000950": features(1, 700),
              "video_test_0001207": features(2, 100)}  # 30, 25 and 24 fps in A2Net's table; the last one is short
    for vid, feats in videos.items():
        write_a2net_windows(tmp_path / "src", vid, feats, a2net_starts(4 * len(feats), training=False))
    report = import_features(tmp_path / "src", tmp_path / "out", "a2net", show_progress=False)
    spec = json.loads((tmp_path / "out" / "features.json").read_text())
    assert (spec["fps"], spec["stride_frames"], spec["clip_frames"], spec["offset_frames"], spec["dim"]) == \
        (None, 4, 16, 0, 2 * C)
    assert spec["streams"] == ["rgb", "flow"]
    for vid, feats in videos.items():
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"{vid}.npy"), feats)  # exact, RGB first
    by_id = {v.video_id: v for v in report.videos}
    assert by_id["video_test_0001207"].padding_trimmed == 28  # 100 features padded to a 128 window
    assert all(not v.gaps for v in report.videos)
    assert by_id["video_test_0000950"].sources == len(a2net_starts(2800, training=False)) == 10
    store = FeatureStore(tmp_path / "out")
    assert [json.loads((tmp_path / "out" / f"{v}.json").read_text())["fps"] for v in videos] == [30.0, 25.0, 24.0]
    # feature k stands for frame 4k at the video's own rate
    assert store.timing("video_test_0000950").index_to_seconds(10) == pytest.approx(40 / 25)
    assert store.timing("video_test_0000004").index_to_seconds(10) == pytest.approx(40 / 30)
    assert json.loads((tmp_path / "out" / REPORT_FILE).read_text())["layout"] == "a2net"


def test_a2net_training_split_gaps_are_explicit(tmp_path, capsys):
    feats = features(3, 300)  # 1200 frames = 40 s at 30 fps
    write_a2net_windows(tmp_path / "src", "video_validation_0000051", feats, [0, 640])  # windows with GT only
    src = tmp_path / "src"
    code, _, err = run_cli(capsys, "data", "import-features", str(src), "--layout", "a2net",
                           "--out", str(tmp_path / "e"))
    assert code == 2
    assert "field gaps" in err and "video_validation_0000051" in err and "[128, 160)" in err
    assert "--gaps zero" in err and "--gaps drop" in err
    assert not (tmp_path / "e" / "features.json").exists()

    gt = AnnotationSet({"video_validation_0000051": VideoAnnotation("video_validation_0000051", "val", 40.0, 30.0,
                                                                    [Segment(1.0, 3.0, "A")])}, ["A"])
    report = import_features(src, tmp_path / "z", "a2net", gaps="zero", annotations=gt, show_progress=False)
    (info,) = report.videos
    assert info.gaps == [(128, 160), (288, 300)]  # middle gap + the end no window reached (from the duration)
    out = np.load(tmp_path / "z" / "video_validation_0000051.npy")
    assert out.shape == (300, 2 * C)
    np.testing.assert_array_equal(out[:128], feats[:128])
    np.testing.assert_array_equal(out[160:288], feats[160:288])
    assert not out[128:160].any() and not out[288:].any()
    side = json.loads((tmp_path / "z" / "video_validation_0000051.json").read_text())
    assert side["gaps"] == [[128, 160], [288, 300]] and side["gaps_filled"] == "zero" and side["fps"] == 30.0
    assert "1 video(s) have 2 gap(s)" in report.summary()

    without = import_features(src, tmp_path / "z2", "a2net", gaps="zero", show_progress=False)
    assert without.videos[0].gaps == [(128, 160)] and "end unknown" in without.videos[0].note

    write_a2net_windows(src, "video_validation_0000052", features(4, 200), a2net_starts(800, training=False))
    dropped = import_features(src, tmp_path / "d", "a2net", gaps="drop", show_progress=False)
    assert [v.video_id for v in dropped.videos] == ["video_validation_0000052"]
    assert list(dropped.dropped) == ["video_validation_0000051"]
    assert not (tmp_path / "d" / "video_validation_0000051.npy").exists()


def test_imported_a2net_features_load_and_make_windows(tmp_path):
    from tadkit.data.dataset import WindowDataset

    vids = {f"video_validation_{i:07d}": features(10 + i, 400) for i in range(3)}
    for vid, feats in vids.items():
        write_a2net_windows(tmp_path / "src", vid, feats, a2net_starts(1600, training=False))
    import_features(tmp_path / "src", tmp_path / "out", "a2net", show_progress=False)
    gt = AnnotationSet({vid: VideoAnnotation(vid, "val", 400 * 4 / 30, None, [Segment(10.0, 14.0, "A"),
                                                                              Segment(30.0, 31.0, "B")])
                        for vid in vids}, ["A", "B"])
    store = FeatureStore(tmp_path / "out")
    report = store.check(gt, progress=False)
    assert report.dim == 2 * C and report.num_features == {v: 400 for v in vids}
    ds = WindowDataset(gt, store, window=128, stride=32, subset="validation", progress=False)
    window = ds[0]
    assert window.features.shape == (128, 2 * C)
    np.testing.assert_array_equal(window.features, vids[window.video_id][:128])
    # GT 10..14 s at 30 fps, stride 4 -> steps 75..105
    np.testing.assert_allclose(window.gt_segments[0], [75.0, 105.0], atol=1e-4)


@pytest.mark.parametrize("case, field", [
    ("no_tem", "feat_tem"), ("name", "vid_name"), ("begin", "begin_frame"), ("shape", "feat_spa"),
    ("filename", "path"), ("disagree", "feat_spa"), ("not_zip", "path"),
])
def test_a2net_bad_input_names_file_and_field(tmp_path, capsys, case, field):
    src = tmp_path / "src"
    src.mkdir()
    block = features(5, 128)
    arrays = {"vid_name": "v1", "begin_frame": 0, "feat_spa": block[:, :C].T, "feat_tem": block[:, C:].T}
    name = "v1_00000.npz"
    if case == "no_tem":
        del arrays["feat_tem"]
    elif case == "name":
        arrays["vid_name"] = "v2"
    elif case == "begin":
        arrays["begin_frame"] = 4
    elif case == "shape":
        arrays["feat_spa"] = block[:, :C].T[None]
    elif case == "filename":
        name = "v1.npz"
    elif case == "disagree":
        write_a2net_windows(src, "v1", features(6, 200), [256])
    if case == "not_zip":
        (src / name).write_bytes(b"not a zip")
    else:
        np.savez(src / name, **arrays)
    code, _, err = run_cli(capsys, "data", "import-features", str(src), "--layout", "a2net", "--out",
                           str(tmp_path / "out"))
    assert code == 2
    assert f"field {field}" in err
    assert ("v1.npz" if case == "filename" else "v1_00") in err  # the file is named


# ---------------------------------------------------------------------------------------------- ECM


def test_ecm_fixed_length_and_time_mapping(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    arrays = {"video_test_0000004": features(7, 50), "video_test_0000006": features(8, 50)}
    for i, (vid, feats) in enumerate(arrays.items()):
        np.savez(src / f"{vid}.npz", vid_name=vid, feat_spa=feats[:, :C].T, feat_tem=feats[:, C:].T,
                 frame_num=900 + 300 * i, fps=30.0, cls_label=np.zeros(20))
    code, out, _ = run_cli(capsys, "data", "import-features", str(src), "--layout", "ecm", "--out",
                           str(tmp_path / "out"))
    assert code == 0 and "imported 2 video(s), 100 features" in out
    spec = json.loads((tmp_path / "out" / "features.json").read_text())
    assert spec["fixed_length"] == 50 and spec["dim"] == 2 * C
    for vid, feats in arrays.items():
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"{vid}.npy"), feats)
    side = json.loads((tmp_path / "out" / "video_test_0000006.json").read_text())
    assert side["frame_num"] == 1200 and side["ecm_duration"] == pytest.approx(40.0)
    store = FeatureStore(tmp_path / "out")
    ann = VideoAnnotation("video_test_0000006", "test", 40.0, 30.0)
    # ECM: step k of T is at k * frame_num / (T * fps) seconds = k * duration / T
    assert store.timing("video_test_0000006", ann).index_to_seconds(10) == pytest.approx(10 * 1200 / (50 * 30))

    np.savez(src / "odd.npz", feat_spa=np.zeros((C, 40), np.float32), feat_tem=np.zeros((C, 40), np.float32),
             frame_num=10, fps=30.0)
    with pytest.raises(TadkitError) as info:
        import_features(src, tmp_path / "o2", "ecm", show_progress=False)
    assert info.value.field == "feat_spa" and "odd.npz" in str(info.value) and "same T" in str(info.value)
    (src / "odd.npz").unlink()
    np.savez(src / "nofps.npz", feat_spa=np.zeros((C, 50), np.float32), feat_tem=np.zeros((C, 50), np.float32),
             frame_num=10)
    with pytest.raises(TadkitError) as info:
        import_features(src, tmp_path / "o3", "ecm", show_progress=False)
    assert info.value.field == "fps" and "nofps.npz" in str(info.value)


# ---------------------------------------------------------------------------------------------- ACRNet


@pytest.mark.parametrize("naming", ["suffix", "dirs"])
def test_acrnet_pairs_sixteen_frames_at_25fps(tmp_path, naming):
    src = tmp_path / "src"
    feats = features(9, 60)
    if naming == "suffix":
        src.mkdir()
        np.save(src / "video_test_0000004_rgb.npy", feats[:, :C])
        np.save(src / "video_test_0000004_flow.npy", feats[:59, C:])  # flow one feature short: cut
    else:
        (src / "rgb").mkdir(parents=True)
        (src / "flow").mkdir()
        np.save(src / "rgb" / "video_test_0000004.npy", feats[:, :C])
        np.save(src / "flow" / "video_test_0000004.npy", feats[:59, C:])
    report = import_features(src, tmp_path / "out", "acrnet", show_progress=False)
    assert report.videos[0].length_cut == 1 and report.videos[0].num_features == 59
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "video_test_0000004.npy"), feats[:59])
    spec = json.loads((tmp_path / "out" / "features.json").read_text())
    assert (spec["fps"], spec["stride_frames"], spec["clip_frames"], spec["offset_frames"]) == (25.0, 16, 16, 0)
    assert FeatureStore(tmp_path / "out").timing("video_test_0000004").index_to_seconds(10) == pytest.approx(6.4)


def test_acrnet_errors(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a_rgb.npy", np.zeros((20, C), np.float32))
    code, _, err = run_cli(capsys, "data", "import-features", str(src), "--layout", "acrnet", "--out",
                           str(tmp_path / "o"))
    assert code == 2 and "a_rgb.npy" in err and "field flow" in err and "no matching flow" in err
    np.save(src / "a_flow.npy", np.zeros((17, C), np.float32))
    code, _, err = run_cli(capsys, "data", "import-features", str(src), "--layout", "acrnet", "--out",
                           str(tmp_path / "o"))
    assert code == 2 and "a_flow.npy" in err and "17 features" in err and "20" in err
    code, _, err = run_cli(capsys, "data", "import-features", str(src), "--layout", "acrnet", "--out",
                           str(tmp_path / "o"), "--fps", "30")
    assert code == 2 and "field fps" in err


# ---------------------------------------------------------------------------------------------- ActionFormer


def test_actionformer_clip_centre_mapping(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    feats = features(11, 80, dim=32)
    np.save(src / "video_validation_0000051.npy", feats)
    import_features(src, tmp_path / "out", "actionformer", show_progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "video_validation_0000051.npy"), feats)
    store = FeatureStore(tmp_path / "out")
    ann = VideoAnnotation("video_validation_0000051", "val", 80 * 4 / 30, 30.0)
    # ActionFormer: feature k is the 16-frame clip starting at frame 4k, placed at its centre 4k + 8
    assert store.timing("video_validation_0000051", ann).index_to_seconds(10) == pytest.approx(48 / 30)
    with pytest.raises(TadkitError) as info:  # fps comes from the annotations unless --fps
        store.timing("video_validation_0000051")
    assert info.value.field == "fps"
    import_features(src, tmp_path / "fixed", "actionformer", fps=30.0, show_progress=False)
    assert FeatureStore(tmp_path / "fixed").timing("video_validation_0000051").index_to_seconds(0) == \
        pytest.approx(8 / 30)


def test_generic_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "data", "import-features", str(tmp_path / "missing"), "--layout", "ecm", "--out",
                           str(tmp_path / "o"))
    assert code == 2 and "missing" in err and "field path" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "data", "import-features", str(tmp_path / "empty"), "--layout", "actionformer",
                           "--out", str(tmp_path / "o"))
    assert code == 2 and "no <video>.npy files" in err
    np.save(tmp_path / "empty" / "v.npy", np.zeros((5, 4), np.float32))
    assert run_cli(capsys, "data", "import-features", str(tmp_path / "empty"), "--layout", "actionformer",
                   "--out", str(tmp_path / "o"))[0] == 0
    code, _, err = run_cli(capsys, "data", "import-features", str(tmp_path / "empty"), "--layout", "actionformer",
                           "--out", str(tmp_path / "o"))
    assert code == 2 and "--overwrite" in err
    np.save(tmp_path / "empty" / "w.npy", np.zeros((5, 3), np.float32))
    code, _, err = run_cli(capsys, "data", "import-features", str(tmp_path / "empty"), "--layout", "actionformer",
                           "--out", str(tmp_path / "o2"))
    assert code == 2 and "field dim" in err and "video w" in err


def test_tadkit_train_runs_on_imported_a2net_features(tmp_path, capsys):
    # issue 12: the imported release trains as it is (A2Net CPU-sized widths, one epoch)
    vids = {f"video_validation_{i:07d}": features(20 + i, 300) for i in range(2)}
    for vid, feats in vids.items():
        write_a2net_windows(tmp_path / "src", vid, feats, a2net_starts(1200, training=False))
    import_features(tmp_path / "src", tmp_path / "feats", "a2net", show_progress=False)
    database = {vid: {"subset": "validation", "duration": 300 * 4 / 30, "fps": 30.0,
                      "annotations": [{"segment": [8.0, 14.0], "label": "A"}, {"segment": [25.0, 27.0], "label": "B"}]}
                for vid in vids}
    (tmp_path / "gt.json").write_text(json.dumps({"version": "t", "classes": ["A", "B"], "database": database}))
    (tmp_path / "a2net.yaml").write_text(
        "model: {name: a2net, kwargs: {in_dim: 16, base_dim: 16, pyramid_dims: [16, 16, 16, 16, 16, 16], "
        "reduce_dim: 16, head_dim: 16, num_classes: 2}}\n"
        f"data: {{annotations: {tmp_path / 'gt.json'}, features: {tmp_path / 'feats'}, subset_train: validation}}\n"
        "train: {epochs: 1, batch_size: 4, lr: 0.001, lr_decay_epochs: [], tensorboard: false, device: cpu}\n")
    code, out, err = run_cli(capsys, "train", str(tmp_path / "a2net.yaml"), "--out", str(tmp_path / "run"),
                             "--no-progress")
    assert code == 0, err
    history = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"]
    assert len(history) == 1 and np.isfinite(history[0]["loss"]["total"]) and history[0]["global_step"] > 0
