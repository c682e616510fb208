"""ACRNet against the golden fixture produced by the OFFICIAL code (leftthomas/ACRNet @ 5718240).

The fixture file comes from ``TADKIT_ACRNET_FIXTURE`` (default ``../shared/fixtures/acrnet_official_small.npz``);
its .json (same stem) lists the configurations (``thumos/``, ``anet/``...) and every size is read from
the file or the .json, so the same tests run on another fixture of the same layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path
from tadkit.methods.acrnet.model import build_acrnet
from tadkit.methods.acrnet.official import from_official_state_dict
from tadkit.methods.acrnet.postprocess import (
    ACRNetLocalizeOptions,
    drop_ambiguous,
    proposals_from_frame_scores,
    revert_frame,
)

pytestmark = pytest.mark.shared

SCORE_ATOL = 1e-7  # the official test forward ran one video at a time: its act scores (float32) may differ
# by one ulp from the stored batch forward, and 0.2 * act enters every proposal score.


def _fixture() -> tuple[dict[str, np.ndarray], dict]:
    env = os.environ.get("TADKIT_ACRNET_FIXTURE")
    if env:
        path = Path(env)
        if not path.exists():
            pytest.skip(f"needs {path} (TADKIT_ACRNET_FIXTURE)")
    else:
        path = shared_path("fixtures", "acrnet_official_small.npz")
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        pytest.skip(f"needs {meta_path} (the .json beside the fixture)")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(meta_path.read_text())
    assert meta["configs"], "fixture lists no configuration"
    return arrays, meta


@pytest.fixture(scope="module")
def fixture():
    return _fixture()


def _state_dict(data: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    head = f"{prefix}/state_dict/"
    return {k[len(head):]: torch.from_numpy(v) for k, v in data.items() if k.startswith(head)}


def _forward(data, prefix):
    model = from_official_state_dict(_state_dict(data, prefix)).eval()
    x = torch.from_numpy(data[f"{prefix}/input"])  # official layout (N, T, 2D)
    batch = {"features": x.mT.contiguous(), "video_labels": torch.from_numpy(data[f"{prefix}/label"])}
    with torch.no_grad():
        out = model(batch)
        losses = model.loss(out, batch)
    return model, out, losses


def _ambiguous() -> dict[str, np.ndarray]:
    path = shared_path("data", "thumos14", "evalkit", "test", "Ambiguous_test.txt")
    table: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            table.setdefault(parts[0], []).append((float(parts[1]), float(parts[2])))
    return {k: np.array(v) for k, v in table.items()}


def test_acrnet_official_widths_inferred(fixture):
    data, meta = fixture
    for name, cfg in meta["configs"].items():
        model = from_official_state_dict(_state_dict(data, name))
        c = model.config
        assert (c.in_dim, c.num_classes, c.aas_hidden, c.num_heads) == (
            2 * cfg["feat_dim_per_modality"], cfg["num_classes"], cfg["aas_hidden"], cfg["num_head"])
        assert c.avg_pool is bool(cfg["avgpool13"]), name  # the official rule num_classes != 20
        assert c.mca_merge == "official"


def test_acrnet_official_forward_and_intermediates(fixture):
    data, meta = fixture
    for name, cfg in meta["configs"].items():
        _, out, _ = _forward(data, name)
        b, t = cfg["batch"], cfg["num_seg"]
        assert out["seg_score"].shape == (b, t, cfg["num_classes"])
        for key in ("act_score", "bkg_score", "seg_score", "aas_rgb", "aas_flow"):
            ref = data[f"{name}/out_{key}"]
            assert out[key].shape == ref.shape, (name, key)
            np.testing.assert_allclose(out[key].numpy(), ref, rtol=0, atol=1e-5, err_msg=f"{name} {key}")
        for key in ("mca_rgb", "mca_flow", "cas"):
            ref = data[f"{name}/mid_{key}"]
            np.testing.assert_allclose(out[key].numpy(), ref, rtol=0, atol=1e-5, err_msg=f"{name} mid {key}")
        # masks: exactly
        np.testing.assert_array_equal(out["cluster_mask"].numpy(), data[f"{name}/mid_cluster_mask"])
        np.testing.assert_array_equal(out["seg_mask"].numpy(), data[f"{name}/out_seg_mask"])


def test_acrnet_official_losses(fixture):
    data, meta = fixture
    for name in meta["configs"]:
        _, _, losses = _forward(data, name)
        for ours, ref in (("cas", "loss_cas"), ("aas_rgb", "loss_aas_rgb"), ("aas_flow", "loss_aas_flow"),
                          ("total", "loss_total")):
            assert abs(float(losses[ours]) - float(data[f"{name}/{ref}"])) <= 1e-5, (name, ours)


def test_acrnet_official_init_from_seed(fixture):
    """``torch.manual_seed(seed); build`` draws the official Model(C)'s initial weights, then the input."""
    data, meta = fixture
    for name, cfg in meta["configs"].items():
        torch.manual_seed(cfg["seed"])
        model = build_acrnet(in_dim=2 * cfg["feat_dim_per_modality"], num_classes=cfg["num_classes"],
                             aas_hidden=cfg["aas_hidden"], num_heads=cfg["num_head"])
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(value.numpy(), data[f"{name}/state_dict/{key}"], err_msg=f"{name} {key}")
        x = torch.randn(*data[f"{name}/input"].shape)
        np.testing.assert_array_equal(x.numpy(), data[f"{name}/input"])


def _options(cfg: dict) -> ACRNetLocalizeOptions:
    args = cfg["test_args"]
    act_th = np.asarray(args["act_th"])
    step = float(act_th[1] - act_th[0]) if act_th.size > 1 else 1.0
    opts = ACRNetLocalizeOptions(class_threshold=args["cls_th"], thresh_min=float(act_th[0]),
                                 thresh_max=float(act_th[-1] + step / 2), thresh_step=round(step, 10),
                                 alpha=args["alpha"], iou_threshold=args["iou_th"], fps=float(args["fps"]),
                                 rate=int(args["rate"]))
    np.testing.assert_array_equal(opts.thresholds, act_th)  # the official np.arange values, bit for bit
    return opts


def _check_list(name, b, got, data, prefix):
    seg, score, label = got
    ref_start, ref_end = data[f"{prefix}seg_start"], data[f"{prefix}seg_end"]
    assert len(score) == len(ref_start), (name, b, prefix, len(score), len(ref_start))
    np.testing.assert_array_equal(seg[:, 0], ref_start, err_msg=f"{name} v{b} {prefix}start")
    np.testing.assert_array_equal(seg[:, 1], ref_end, err_msg=f"{name} v{b} {prefix}end")
    np.testing.assert_array_equal(label, data[f"{prefix}seg_class"], err_msg=f"{name} v{b} {prefix}class")
    np.testing.assert_allclose(score, data[f"{prefix}seg_score"], rtol=0, atol=SCORE_ATOL,
                               err_msg=f"{name} v{b} {prefix}score")


def test_acrnet_official_frame_scores(fixture):
    """revert_frame + clip of the stored segment scores gives the stored frame scores (F = rate * n)."""
    data, meta = fixture
    for name, cfg in meta["configs"].items():
        rate = int(cfg["test_args"]["rate"])
        for b in range(cfg["batch"]):
            p = f"{name}/post/v{b}/"
            n = int(data[p + "n_orig"])
            assert n == cfg["n_orig"][b]
            frames = int(data[p + "num_frames"])
            assert frames == rate * n
            got = np.clip(revert_frame(data[f"{name}/out_seg_score"][b], frames), 0.0, 1.0)
            assert got.shape == data[p + "frame_score"].shape
            np.testing.assert_allclose(got, data[p + "frame_score"], rtol=0, atol=1e-6)


def test_acrnet_official_prediction_lists(fixture):
    """From the stored frame scores: the pre-filter and final lists, order included."""
    data, meta = fixture
    ambiguous = None
    for name, cfg in meta["configs"].items():
        opts = _options(cfg)
        filtered = bool(cfg["test_args"]["ambiguous_filter"])
        if filtered and ambiguous is None:
            ambiguous = _ambiguous()
        for b in range(cfg["batch"]):
            p = f"{name}/post/v{b}/"
            got = proposals_from_frame_scores(data[p + "frame_score"], data[f"{name}/out_act_score"][b], opts)
            if filtered:
                _check_list(name, b, got, data, p + "prefilter_")
                amb = ambiguous.get(cfg["videos"][b], np.zeros((0, 2)))
                seg, score, label = drop_ambiguous(got[0], amb, got[1], got[2])
                _check_list(name, b, (seg, score, label), data, p)
            else:
                _check_list(name, b, got, data, p)
