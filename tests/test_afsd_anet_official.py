"""Golden fixture: tadkit's ActivityNet AFSD head vs the OFFICIAL ``AFSD/anet`` code (ActionDetection-AFSD @ ed86a0d).

The fixture is ``$TADKIT_AFSD_ANET_FIXTURE`` (default ``tests/fixtures/afsd_anet_official/afsd_anet_official_small.npz``,
made by ``generate.py`` beside it, patches in its PATCHES.md) with its ``.json`` (same stem). Every size (width,
GroupNorm groups, Mixed_5c channels, spatial kernel, clip length, level lengths, classes, batch) is read from the
files; the head's ActivityNet settings (strides, scale ranges, loss options, SSL scales) must come out of tadkit's
official importer on its own and are checked against the .json.

Tolerances, and why they hold for other sizes:

* forward outputs: float32 both sides, different op order (TF-SAME padding by hand vs ``F.pad``, GroupNorm
  reductions), so ``1e-5 * max(1, |official|)`` — relative because the coarse distances are exp() x stride
  values up to ~1000 frames. A level whose GroupNorm groups hold <= 4 values is ill-conditioned in float32
  (``(x - mean) / std`` magnifies rounding by ``max|x| / std``): there both float32 results are compared
  with tadkit in float64 at ``1e-5 * kappa`` (kappa measured), as in tests/test_afsd_official.py;
* boundary regions, targets and boundary labels are rounded / copied values: exact;
* losses: sums over <= 2 x 768 terms of the outputs above, ``1e-5`` relative;
* detections: the same float32 soft-NMS arithmetic on the stored official window outputs, so the count
  and order are exact; times (seconds ~100) and scores to 1e-6 absolute.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tadkit.data.records import DetectionSet
from tadkit.methods.afsd.inference import clip_to_duration, detect_video
from tadkit.methods.afsd.losses import boundary_losses, detection_losses, triplet_loss, weighted_total
from tadkit.methods.afsd.model import AFSD, triplet_features
from tadkit.methods.afsd.official import from_official_state_dict
from afsd_golden import RAW, close, compare_levels
from tadkit.methods.afsd.targets import boundary_labels, clip_targets
from tadkit.postprocess.video_classifier import VideoScores, fuse_video_labels

DEFAULT_FIXTURE = Path(__file__).parent / "fixtures" / "afsd_anet_official" / "afsd_anet_official_small.npz"
FRAME_LEVEL = ("start", "end", "start_loc_prop", "end_loc_prop", "start_conf_prop", "end_conf_prop")
LOSSES = ("loc", "conf", "prop_loc", "prop_conf", "center", "start", "end")


def _fixture_path() -> Path:
    path = Path(os.environ.get("TADKIT_AFSD_ANET_FIXTURE") or DEFAULT_FIXTURE)
    if not path.exists():
        pytest.skip(f"needs {path} (TADKIT_AFSD_ANET_FIXTURE)")
    return path


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).float()  # float16-exact inputs -> float32, as the generator fed them


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    path = _fixture_path()
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        pytest.skip(f"needs {meta_path} (the fixture's .json with the same stem)")
    data = np.load(path)
    arrays = {k: data[k] for k in data.files}
    meta = json.loads(meta_path.read_text())
    state = {k[len("state_dict/"):]: _tensor(v) for k, v in arrays.items() if k.startswith("state_dict/")}
    # only what the tensors cannot show: GroupNorm groups (and the clip length when not the official 768)
    model = from_official_state_dict(state, source=str(path), gn_groups=int(meta["gn_groups"]),
                                     clip_length=int(meta["clip_length"]))
    assert isinstance(model, AFSD)
    model.eval()
    with torch.no_grad():
        out = model.forward_taps(None, _tensor(arrays["input_mixed_5c"]), return_regions=True)
    return {"a": arrays, "meta": meta, "model": model, "out": out, "model64": copy.deepcopy(model).double()}


def test_afsd_anet_official_sizes_and_head_settings_from_the_importer(golden: dict[str, Any]) -> None:
    a, meta, cfg = golden["a"], golden["meta"], golden["model"].config
    assert cfg.pyramid_taps == "mixed_5c"  # read off the keys: one conv3d, on Mixed_5c
    assert cfg.width == meta["width"] and cfg.backbone_channels[1] == meta["mixed_5c_channels"]
    assert cfg.spatial_kernels[1] == meta["spatial_kernel"] == a["input_mixed_5c"].shape[-1]
    assert cfg.num_outputs == meta["num_classes_incl_background"] == a["out_conf"].shape[-1]
    assert cfg.clip_length == meta["clip_length"] == a["out_start"].shape[1]
    lengths = [a[f"mid_bmp_segments_level{i}"].shape[1] for i in range(cfg.num_levels)]
    assert lengths == meta["level_lengths"] and sum(lengths) == a["out_loc"].shape[1]
    assert lengths[0] == a["input_mixed_5c"].shape[2]  # level 0 is Mixed_5c's own length (clip / 8)
    assert list(cfg.loc_strides) == meta["loc_strides"]
    assert [list(r) for r in cfg.scale_ranges] == meta["scale_ranges"]
    assert cfg.adaptive_piou and cfg.per_sample_normalisation and cfg.prop_loc_loss == "smooth_l1"
    assert list(cfg.triplet_scales) == meta["train"]["triplet_scales"]
    train = meta["train"]
    assert (cfg.loc_weight, cfg.cls_weight, cfg.piou, cfg.ssl_weight) == (train["lw"], train["cw"], train["piou"], train["ssl"])


def test_afsd_anet_official_forward(golden: dict[str, Any]) -> None:
    a, out = golden["a"], golden["out"]
    for key in FRAME_LEVEL:
        close(out[key], a[f"out_{key}"], 1e-5, key)
    np.testing.assert_array_equal(out["priors"][0, :, 0].numpy(), a["out_priors"][0, :, 0])
    compare_levels(golden, out, {k: a[f"out_{k}"] for k in RAW}, None, a["input_mixed_5c"], "")


def test_afsd_anet_official_boundary_regions_exact(golden: dict[str, Any]) -> None:
    a, out = golden["a"], golden["out"]
    for i in range(golden["model"].config.num_levels):
        np.testing.assert_array_equal(out[f"regions_level{i}"].numpy(), a[f"mid_bmp_segments_level{i}"])
        np.testing.assert_array_equal(out[f"frame_regions_level{i}"].numpy(), a[f"mid_bmp_frame_segments_level{i}"])


def test_afsd_anet_official_mixed_5c_only_ignores_mixed_4f(golden: dict[str, Any]) -> None:
    """The ActivityNet pyramid has no Mixed_4f input: a tensor passed there changes nothing."""
    a, model = golden["a"], golden["model"]
    x5 = _tensor(a["input_mixed_5c"])
    with torch.no_grad():
        with_4f = model.forward_taps(torch.randn(x5.shape[0], 8, 2 * x5.shape[2], 6, 6), x5)
    torch.testing.assert_close(with_4f["loc"], golden["out"]["loc"], rtol=0, atol=0)


def _train_targets(golden: dict[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
    length = int(golden["meta"]["clip_length"])
    gts = [np.asarray(g, dtype=np.float64) for g in golden["meta"]["train"]["gts_in_clip_frames"]]
    return [clip_targets(g, length) for g in gts], torch.stack([boundary_labels(g, length) for g in gts])


def test_afsd_anet_official_targets_and_boundary_labels_exact(golden: dict[str, Any]) -> None:
    a = golden["a"]
    targets, labels = _train_targets(golden)
    assert len(targets) == a["input_mixed_5c"].shape[0]
    for b, target in enumerate(targets):
        np.testing.assert_array_equal(target.numpy(), a[f"train/target_{b}"])
    np.testing.assert_array_equal(labels.numpy(), a["train/boundary_scores"])


def test_afsd_anet_official_losses(golden: dict[str, Any]) -> None:
    a, model = golden["a"], golden["model"]
    cfg = model.config
    targets, labels = _train_targets(golden)
    out = model.forward_taps(None, _tensor(a["input_mixed_5c"]))
    terms = detection_losses(out, targets, cfg)
    terms.update(boundary_losses(out, labels, cfg.boundary_aux_weight))  # level-0 labels: 768 -> 96 (1/8)
    for key in LOSSES:
        close(terms[key], a[f"train/loss_{key}"], 1e-5, f"loss_{key}")
    close(weighted_total(terms, cfg), a["train/loss_total_without_triplet"], 1e-5, "total_without_triplet")

    # SSL pass on the augmented copy of sample 0 (its Mixed_5c = input sample 0), official scales (1, 4, 4)
    feats = model.boundary_features_taps(None, _tensor(a["input_mixed_5c"][:1]))
    scales = model.triplet_scales(feats[1].shape[2])
    anchors, positives, negatives = triplet_features(feats, torch.from_numpy(a["ssl/target"])[None], scales)
    terms["triplet"] = triplet_loss(anchors, positives, negatives, cfg.triplet_weights, cfg.triplet_margin)
    close(terms["triplet"], a["ssl/loss_triplet"], 1e-5, "loss_triplet")
    close(terms["triplet"] * cfg.ssl_weight, a["ssl/loss_triplet_x_ssl"], 1e-5, "loss_triplet_x_ssl")
    close(weighted_total(terms, cfg), a["train/loss_total"], 1e-5, "loss_total")
    weighted_total(terms, cfg).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


def test_afsd_anet_official_activitynet_options_matter(golden: dict[str, Any]) -> None:
    """The fixture tells the options apart: the THUMOS rules (no scale ranges / adaptive piou / per-sample
    normalisation, L1 refinement) or the geometric SSL scales give other losses than the official ones."""
    a, model = golden["a"], golden["model"]
    targets, _ = _train_targets(golden)
    with torch.no_grad():
        out = model.forward_taps(None, _tensor(a["input_mixed_5c"]))
        for change in ({"scale_ranges": None}, {"adaptive_piou": False}, {"per_sample_normalisation": False},
                       {"prop_loc_loss": "l1"}):
            cfg = dataclasses.replace(model.config, **change)
            terms = detection_losses(out, targets, cfg)
            differs = [k for k in LOSSES[:5] if abs(float(terms[k]) - float(a[f"train/loss_{k}"])) > 1e-4 * max(1.0, abs(float(a[f"train/loss_{k}"])))]
            assert differs, f"{change} gives the official losses: the fixture cannot see it"
        feats = model.boundary_features_taps(None, _tensor(a["input_mixed_5c"][:1]))
        ratio = model.config.clip_length / feats[1].shape[2]
        trip = triplet_loss(*triplet_features(feats, torch.from_numpy(a["ssl/target"])[None], (1.0, ratio, ratio)),
                            model.config.triplet_weights, model.config.triplet_margin)
    assert abs(float(trip) - float(a["ssl/loss_triplet"])) > 1e-4


def test_afsd_anet_official_test_window_forward(golden: dict[str, Any]) -> None:
    a, model = golden["a"], golden["model"]
    test = golden["meta"]["test"]
    assert test["clip_shape"][2] == model.config.clip_length  # one window of 768 frames (a shorter video padded)
    with torch.no_grad():
        ours = model.forward_taps(None, _tensor(a["test/input_mixed_5c"]))
    compare_levels(golden, ours, {k: a[f"test/out_{k}"] for k in RAW}, None, a["test/input_mixed_5c"], "test/")


def test_afsd_anet_official_detections(golden: dict[str, Any]) -> None:
    """The ActivityNet loop: one window at offset 0, candidates > 1e-9, class-agnostic soft-NMS (sigma 0.85,
    5000, threshold 1e-9), times clipped to the duration, then the CUHK top-1 class x its score."""
    a, meta, model = golden["a"], golden["meta"], golden["model"]
    test = meta["test"]
    outs = [{k: torch.from_numpy(a[f"test/out_{k}"]) for k in RAW}]
    det = detect_video(outs, [0], float(test["sample_fps"]), torch.from_numpy(a["out_priors"][0, :, :1]),
                       model.config.clip_length, model.config.num_classes, conf_thresh=model.config.conf_thresh,
                       sigma=float(test["nms_sigma"]), top_k=int(test["top_k"]),
                       score_threshold=float(test["score_threshold"]))
    det = clip_to_duration(det, float(test["duration"]))
    cuhk = test["cuhk"]
    video = test["video"]
    proposals = DetectionSet(np.full(len(det.scores), video, dtype=object), det.segments[:, 0].numpy(),
                             det.segments[:, 1].numpy(), np.full(len(det.scores), "action", dtype=object),
                             det.scores.double().numpy())
    scores = VideoScores(classes=cuhk["class"], scores={k: np.asarray(v) for k, v in cuhk["results"].items()})
    labelled = fuse_video_labels(proposals, scores, topk=1)
    assert len(labelled) == test["num_detections"] == a["test/seg_score"].shape[0]
    assert set(labelled.label) == set(test["labels"])
    np.testing.assert_allclose(labelled.start, a["test/seg_start"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(labelled.end, a["test/seg_end"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(labelled.score, a["test/seg_score"], rtol=0, atol=1e-6)
    assert float(labelled.end.max()) <= test["duration"]  # the clip's padding reached past the video


def test_afsd_anet_official_detections_through_the_tadkit_test_pipeline(golden: dict[str, Any], tmp_path: Path) -> None:
    """What `tadkit test afsd/anet13_frames` does with the window (the model's decode, then the config's
    post-processing: soft-NMS preset afsd sigma 0.85 to 1e-9, reversed kept through it, times clipped after it,
    the CUHK file's top-1 class) gives the official detections. Scores to 1e-6; times to float32 rounding
    (the official computes seconds in float32, tadkit in float64: half an ulp, <= eps32 x |t|)."""
    from tadkit.data.records import AnnotationSet, VideoAnnotation
    from tadkit.engine.config import load_config
    from tadkit.engine.inference import WindowPrediction
    from tadkit.methods.afsd.model import decode_clips
    from tadkit.pipeline import detections_from_predictions

    a, meta, model = golden["a"], golden["meta"], golden["model"]
    test = meta["test"]
    outputs = {k: torch.from_numpy(a[f"test/out_{k}"]) for k in RAW}
    outputs["priors"] = torch.from_numpy(a["out_priors"][:, :, :1])
    window = decode_clips(outputs, model.config)[0]
    prediction = WindowPrediction(0, {"video_id": test["video"], "t0": 0.0, "step": 1.0 / test["sample_fps"],
                                      "valid_length": test["sample_count"]}, window)
    classifier = tmp_path / "cuhk_val_simp_share.json"
    classifier.write_text(json.dumps(test["cuhk"]))
    config = load_config("afsd/anet13_frames", [f"test.video_classifier={classifier}"])
    video = VideoAnnotation(video_id=test["video"], subset="validation", duration=test["duration"], segments=[])
    dets = detections_from_predictions([prediction], AnnotationSet(videos={video.video_id: video}, classes=["action"]),
                                       config)
    assert len(dets) == test["num_detections"] and set(dets.label) == set(test["labels"])
    ours = np.lexsort((dets.start, -dets.score))
    theirs = np.lexsort((a["test/seg_start"], -a["test/seg_score"]))
    np.testing.assert_allclose(dets.score[ours], a["test/seg_score"][theirs], rtol=0, atol=1e-6)
    eps = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(dets.start[ours], a["test/seg_start"][theirs], rtol=eps, atol=1e-6)
    np.testing.assert_allclose(dets.end[ours], a["test/seg_end"][theirs], rtol=eps, atol=1e-6)
    # the THUMOS order (clip when merging, reversed dropped before the NMS) keeps other detections
    thumos_order = load_config("afsd/anet13_frames", [f"test.video_classifier={classifier}",
                                                      "test.clip_after_nms=false", "test.drop_reversed=true"])
    other = detections_from_predictions([prediction], AnnotationSet(videos={video.video_id: video},
                                                                    classes=["action"]), thumos_order)
    assert len(other) != test["num_detections"]
