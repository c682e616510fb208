"""ECM against the golden fixture of the OFFICIAL code (VividLe/Equivalent-Classification-Mapping @ bc89606).

The fixture file comes from ``TADKIT_ECM_FIXTURE`` (default ``../shared/fixtures/ecm_official_small.npz``);
every size (widths, classes, T, videos, frame_num, fps) and setting (top-k, loss weights, test config)
is read from the .npz and the .json with the same stem, so the tests run unchanged on another fixture
of the same layout. Select them with ``pytest -k "official and ecm"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path
from tadkit.methods.base import ClassActivation
from tadkit.methods.ecm.model import ECM
from tadkit.methods.ecm.official import from_official_state_dict
from tadkit.methods.ecm.postprocess import ECMLocalizeOptions, localize

FIXTURE = "fixtures/ecm_official_small.npz"
TOL = 1e-5


@pytest.fixture(scope="module")
def fixture() -> tuple[dict[str, np.ndarray], dict]:
    env = os.environ.get("TADKIT_ECM_FIXTURE")
    if env:
        path = Path(env)
        if not path.exists():
            pytest.skip(f"needs {path} (from TADKIT_ECM_FIXTURE)")
    else:
        path = shared_path(*FIXTURE.split("/"))
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        pytest.skip(f"needs {meta_path} (the fixture's sizes and settings)")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads(meta_path.read_text())


def official_model(arrays: dict[str, np.ndarray], meta: dict) -> ECM:
    state = {k[len("state_dict/"):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("state_dict/")}
    coefs = meta.get("loss_coefs", {})
    overrides = {"groups": int(meta.get("groups", 3)), "topk_k": int(meta["topk_k"])}
    for ours, theirs in (("loss_pre_coef", "cas"), ("loss_post_coef", "cam"), ("loss_cc_coef", "consistency"),
                         ("loss_agg_coef", "agg")):
        if theirs in coefs:
            overrides[ours] = float(coefs[theirs])
    return from_official_state_dict(state, **overrides).eval()


def localize_options(meta: dict) -> ECMLocalizeOptions:
    cfg = meta["test_cfg"]
    anet = "activitynet" in str(meta.get("dataset_name", "")).lower()
    return ECMLocalizeOptions(
        class_threshold=float(cfg["CLS_SCORE_TH"]), thresh_min=float(cfg["ACT_THRESH_MIN"]),
        thresh_max=float(cfg["ACT_THRESH_MAX"]), thresh_step=float(cfg["ACT_THRESH_STEP"]),
        outer_lambda=float(cfg["OUTER_LAMBDA"]), gamma=float(cfg["CONF_GAMMA"]),
        nms_threshold=float(cfg["NMS_THRESHOLD"]), time_base="duration" if anet else "fps",
    )


def video_meta(arrays: dict[str, np.ndarray], meta: dict, b: int) -> dict:
    out = {"video_id": (meta.get("video_names") or [f"v{b}"] * (b + 1))[b],
           "frame_num": int(arrays[f"post/v{b}/frame_num"]), "fps": float(arrays[f"post/v{b}/fps"])}
    if f"post/v{b}/duration" in arrays:
        out["duration"] = float(arrays[f"post/v{b}/duration"])
    elif meta.get("duration") is not None:
        out["duration"] = float(meta["duration"][b])
    return out


def test_official_ecm_fixture_sizes_are_read_from_the_file(fixture):
    arrays, meta = fixture
    model = official_model(arrays, meta)
    b, d, t = arrays["input"].shape
    c = arrays["cls_label"].shape[1]
    assert (model.config.in_dim, model.config.num_classes) == (d, c)
    assert model.config.hidden_dim == arrays["state_dict/base_module.conv_1.weight"].shape[0]
    assert model.topk(t) == int(meta["topk_k"])
    assert b == int(meta.get("batch", b)) and t == int(meta.get("num_snippets", t))
    # official keys load unchanged and strictly: our state_dict has exactly the official key set
    assert sorted(model.state_dict()) == sorted(k[len("state_dict/"):] for k in arrays if k.startswith("state_dict/"))


def test_official_ecm_forward_eval_matches(fixture):
    arrays, meta = fixture
    model = official_model(arrays, meta)
    with torch.no_grad():
        out = model({"features": torch.from_numpy(arrays["input"])})
    np.testing.assert_allclose(out["cas"].numpy(), arrays["out_eval_cas"], rtol=0, atol=TOL)
    np.testing.assert_allclose(out["video_scores"].numpy(), arrays["out_eval_score_pre_softmax"], rtol=0, atol=TOL)
    assert out["cas"].shape == arrays["out_eval_cas"].shape


def test_official_ecm_forward_train_and_losses_match(fixture):
    arrays, meta = fixture
    model = official_model(arrays, meta)  # eval mode, as the fixture (dropout off)
    x, y = torch.from_numpy(arrays["input"]), torch.from_numpy(arrays["cls_label"])
    with torch.no_grad():
        out = model.forward_train(x, y)
        losses = model.loss(out, {"video_labels": y})
    for ours, theirs in (("score_pre", "out_train_score_pre"), ("score_post", "out_train_score_post"),
                         ("score_agg", "out_train_score_agg")):
        assert out[ours].shape == arrays[theirs].shape
        np.testing.assert_allclose(out[ours].numpy(), arrays[theirs], rtol=0, atol=TOL, err_msg=ours)
    for ours, theirs in (("pre", "loss_pre"), ("post", "loss_post"), ("cls_consistency", "loss_cls_to_cls_consistency"),
                         ("agg_consistency", "loss_agg_to_cls_consistency"), ("total", "loss_total")):
        assert abs(float(losses[ours]) - float(arrays[theirs])) <= TOL, (ours, float(losses[ours]), float(arrays[theirs]))


def assert_same_segments(got, arrays: dict[str, np.ndarray], b: int) -> None:
    segments, scores, labels = got
    prefix = f"post/v{b}/"
    assert labels.tolist() == arrays[prefix + "seg_class"].tolist()  # same classes, same order
    np.testing.assert_allclose(segments[:, 0], arrays[prefix + "seg_start"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(segments[:, 1], arrays[prefix + "seg_end"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores, arrays[prefix + "seg_score"], rtol=0, atol=1e-6)


def test_official_ecm_postprocess_from_stored_cas_norm(fixture):
    arrays, meta = fixture
    options = localize_options(meta)
    num_videos = arrays["input"].shape[0]
    total = 0
    for b in range(num_videos):
        activation = ClassActivation(cas=torch.from_numpy(arrays[f"post/v{b}/cas_norm"]),
                                     video_scores=torch.from_numpy(arrays["out_eval_score_pre_softmax"][b]))
        got = localize(activation, video_meta(arrays, meta, b), options)
        assert_same_segments(got, arrays, b)
        assert got[0].dtype == np.float64 and got[2].dtype == np.int64
        total += len(got[2])
    assert total == sum(len(arrays[f"post/v{b}/seg_class"]) for b in range(num_videos)) and total > 0


def test_official_ecm_end_to_end_decode_then_localize(fixture):
    """Raw CAS from our forward -> decode -> localize (normalisation inside) gives the official segments."""
    arrays, meta = fixture
    model = official_model(arrays, meta)
    b_count = arrays["input"].shape[0]
    batch = {"features": torch.from_numpy(arrays["input"]),
             "meta": [{"video_id": str(b), "valid_length": arrays["input"].shape[2]} for b in range(b_count)]}
    with torch.no_grad():
        activations = model.decode(model(batch), batch)
    assert len(activations) == b_count
    for b, activation in enumerate(activations):
        assert activation.cas.shape == arrays[f"post/v{b}/cas_norm"].shape
        got = localize(activation, video_meta(arrays, meta, b), localize_options(meta))
        assert_same_segments(got, arrays, b)
