"""ECM localize (CAS -> seconds) against a plain-loop statement of the official recipe (cv2.resize,
threshold loop, grouping, outer-inner contrast, NMS loop), its quirks and options, and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tadkit.errors import TadkitError
from tadkit.methods.base import ClassActivation
from tadkit.methods.ecm.postprocess import ECM_LOCALIZE_PRESETS, ECMLocalizeOptions, localize


def ref_minmax(cas: np.ndarray) -> np.ndarray:
    hi = np.maximum(cas.max(axis=1, keepdims=True), 0)
    lo = np.maximum(cas.min(axis=1, keepdims=True), 0)
    span = hi - lo
    span[span <= 0] = 1
    return (cas - lo) / span


def ref_nms(props: list[list[float]], thr: float, plus: float) -> list[list[float]]:
    arr = np.array(props)
    x1, x2, sc = arr[:, 1], arr[:, 2], arr[:, 0]
    lengths = x2 - x1 + plus
    order = sc.argsort()[::-1]
    kept = []
    while order.size:
        i = order[0]
        kept.append(arr[i].tolist())
        inter = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + plus)
        iou = inter / (lengths[i] + lengths[order[1:]] - inter)
        order = order[np.where(iou < thr)[0] + 1]
    return kept


def ref_localize(cas: np.ndarray, scores: np.ndarray, frame_num: int, rate_or_duration: float,
                 o: ECMLocalizeOptions) -> list[tuple[float, float, float, int]]:
    """The official localize_actions / get_localization / nms, loop by loop (seconds via fps or duration)."""
    norm = ref_minmax(cas).astype(np.float32)
    out = []
    for c in np.where(scores >= o.class_threshold)[0]:
        seq = cv2.resize(norm[c:c + 1], (frame_num, 1), interpolation=cv2.INTER_LINEAR)[0].astype(np.float64)
        actions = []
        for th in np.arange(o.thresh_min, o.thresh_max, o.thresh_step):
            tmp = seq.copy()
            tmp[tmp < th] = 0
            pos = np.where(tmp > 0)[0]
            if (o.skip_only_first and not any(pos)) or pos.size == 0:
                continue
            for g in np.split(pos, np.where(np.diff(pos) != 1)[0] + 1):
                if o.time_base == "fps":
                    s, e = g[0] / rate_or_duration, (g[-1] + 1) / rate_or_duration
                else:
                    s, e = g[0] / frame_num * rate_or_duration, (g[-1] + 1) / frame_num * rate_or_duration
                inner = tmp[g].mean()
                lo = max(0, int(g[0] - o.outer_lambda * len(g)))
                hi = min(frame_num, int(g[-1] + o.outer_lambda * len(g)))
                outer_idx = list(range(lo, g[0])) + list(range(g[-1] + 1, hi))
                outer = tmp[outer_idx].mean() if outer_idx else 0.0
                actions.append([inner - outer + o.gamma * scores[c], s, e])
        if actions:
            for sc, s, e in ref_nms(actions, o.nms_threshold, 1.0 if o.nms_plus_one else 0.0):
                out.append((s, e, sc, int(c)))
    return out


def smooth_cas(rng: np.random.Generator, c: int, t: int) -> np.ndarray:
    return rng.normal(size=(c, t)).cumsum(axis=1) + rng.normal(scale=0.3, size=(c, 1))


def compare(got, want) -> None:
    segments, scores, labels = got
    assert labels.tolist() == [w[3] for w in want]
    np.testing.assert_allclose(segments[:, 0], [w[0] for w in want], rtol=0, atol=1e-9)
    np.testing.assert_allclose(segments[:, 1], [w[1] for w in want], rtol=0, atol=1e-9)
    np.testing.assert_allclose(scores, [w[2] for w in want], rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("preset", ["thumos14", "anet13"])
def test_localize_equals_official_loop(seed, preset):
    rng = np.random.default_rng(seed)
    c, t = 6, int(rng.integers(20, 120))
    cas = smooth_cas(rng, c, t)
    probs = rng.dirichlet(np.full(c, 0.5))
    frame_num = int(rng.integers(50, 2000))
    opts = ECM_LOCALIZE_PRESETS[preset]
    meta = {"video_id": "v", "frame_num": frame_num, "fps": 29.97, "duration": frame_num / 29.97 * 1.01}
    got = localize(ClassActivation(torch.from_numpy(cas).float(), torch.from_numpy(probs)), meta, {"preset": preset})
    base = 29.97 if opts.time_base == "fps" else meta["duration"]
    want = ref_localize(cas.astype(np.float32).astype(np.float64), probs, frame_num, base, opts)
    compare(got, want)
    assert len(want) == 0 or got[0].shape == (len(want), 2)


def test_quirk_options_fix_the_official_behaviour():
    rng = np.random.default_rng(3)
    cas = smooth_cas(rng, 3, 60)
    probs = np.array([0.5, 0.3, 0.2])
    meta = {"video_id": "v", "frame_num": 300, "fps": 30.0}
    act = ClassActivation(torch.from_numpy(cas), torch.from_numpy(probs))
    for options in ({}, {"nms_plus_one": False}, {"skip_only_first": False}):
        opts = ECMLocalizeOptions.from_mapping(options)
        compare(localize(act, meta, options), ref_localize(cas, probs, 300, 30.0, opts))
    # Q1: the +1 s on 1/30 s-scale segments makes nearly everything overlap -> far fewer segments kept
    assert len(localize(act, meta, {"nms_plus_one": False})[2]) > len(localize(act, meta, {})[2])
    # Q2: a class that is only active on frame 0 at the top thresholds
    spike = np.zeros((1, 10))
    spike[0, 0] = 1.0
    one = ClassActivation(torch.from_numpy(spike), torch.ones(1))
    small = {"video_id": "s", "frame_num": 10, "fps": 10.0}
    assert len(localize(one, small, {})[2]) == 0
    fixed = localize(one, small, {"skip_only_first": False})
    assert fixed[0].tolist() == [[0.0, 0.1]] and fixed[2].tolist() == [0]


def test_normalisation_is_idempotent_and_no_class_gives_empty_arrays():
    rng = np.random.default_rng(5)
    cas = smooth_cas(rng, 4, 50)
    probs = np.array([0.4, 0.3, 0.2, 0.1])
    meta = {"video_id": "v", "frame_num": 400, "fps": 25.0}
    a = localize(ClassActivation(torch.from_numpy(cas), torch.from_numpy(probs)), meta, None)
    b = localize(ClassActivation(torch.from_numpy(ref_minmax(cas)), torch.from_numpy(probs)), meta, None)
    compare(a, list(zip(b[0][:, 0], b[0][:, 1], b[1], b[2].tolist())))
    assert len(a[2]) > 0
    none = localize(ClassActivation(torch.from_numpy(cas), torch.full((4,), 0.1)), meta, {"class_threshold": 0.5})
    assert none[0].shape == (0, 2) and none[1].shape == (0,) and none[2].dtype == np.int64


def test_options_presets_and_validation():
    opts = ECMLocalizeOptions.from_mapping({"preset": "anet12", "gamma": 0.3})
    assert opts.class_threshold == 0.12 and opts.gamma == 0.3 and opts.time_base == "duration"
    assert len(opts.thresholds) == 7 and len(ECMLocalizeOptions().thresholds) == 8
    assert ECM_LOCALIZE_PRESETS["anet13"].class_threshold == 0.05
    with pytest.raises(TadkitError) as info:
        ECMLocalizeOptions.from_mapping({"lambda": 0.3}, file="c.yaml")
    assert info.value.field == "test.cas" and info.value.file == "c.yaml"
    with pytest.raises(TadkitError) as info:
        ECMLocalizeOptions.from_mapping({"thresh_step": 0})
    assert info.value.field == "test.cas.thresh_step"
    with pytest.raises(TadkitError):
        ECMLocalizeOptions.from_mapping({"preset": "thumos15"})


def test_bad_input_names_video_and_field():
    act = ClassActivation(torch.tensor([[0.1, float("nan"), 0.3]]), torch.ones(1))
    with pytest.raises(TadkitError) as info:
        localize(act, {"video_id": "vid9", "frame_num": 30, "fps": 10.0}, {})
    assert info.value.video == "vid9" and info.value.field == "cas" and "NaN" in str(info.value)
    good = ClassActivation(torch.tensor([[0.1, 0.9, 0.3]]), torch.ones(1))
    with pytest.raises(TadkitError) as info:
        localize(good, {"video_id": "vid9", "fps": 10.0}, {})
    assert info.value.field == "frame_num"
    with pytest.raises(TadkitError) as info:
        localize(good, {"video_id": "vid9", "frame_num": 30, "fps": 10.0}, {"preset": "anet13"})
    assert info.value.field == "duration"
