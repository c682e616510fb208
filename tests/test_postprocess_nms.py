"""NMS against plain loop references (written here, one candidate at a time) and hand cases."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import stat
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError
from tadkit.ops import tiou_pairwise
from tadkit.postprocess.nms import (
    NMS_PRESETS,
    NMSConfig,
    batched_nms,
    batched_nms_numpy,
    nms,
    nms_detection_set,
    segment_iou,
    soft_nms,
    soft_nms_indices,
    soft_nms_numpy,
)

# --------------------------------------------------------------------------------------------- #
# Every test of this file runs twice: on the NumPy kernels, and on the compiled (numba) sequential
# kernel at every input size. Both must give the loop references' results exactly.
# --------------------------------------------------------------------------------------------- #

HAVE_NUMBA = importlib.util.find_spec("numba") is not None


@pytest.fixture(scope="module", autouse=True, params=["numpy", "jit"])
def nms_path(request):
    """Module-scoped (hypothesis tolerates it): TADKIT_NMS_JIT=0 / 1 for the whole pass."""
    if request.param == "jit" and not HAVE_NUMBA:
        pytest.skip("numba is not installed: only the NumPy kernels can run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TADKIT_NMS_JIT", "0" if request.param == "numpy" else "1")
        yield request.param


# --------------------------------------------------------------------------------------------- #
# Loop references: Python floats, lists, one candidate at a time.
# --------------------------------------------------------------------------------------------- #


def ref_iou(a: tuple[float, float], b: tuple[float, float], offset: float = 0.0) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]) + offset)
    union = (a[1] - a[0] + offset) + (b[1] - b[0] + offset) - inter
    return inter / union if union > 0 else 0.0


def ref_hard_nms(segs, scores, thr, max_keep=None, offset=0.0) -> list[int]:
    """Visit candidates best-first; keep one if it overlaps no kept one by more than thr."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if max_keep is not None and len(kept) == max_keep:
            break
        if all(ref_iou(segs[i], segs[k], offset) <= thr for k in kept):
            kept.append(i)
    return kept


def ref_per_class_nms(segs, scores, labels, thr, max_keep=None, offset=0.0) -> list[int]:
    kept: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i in range(len(labels)) if labels[i] == label]
        local = ref_hard_nms([segs[i] for i in members], [scores[i] for i in members], thr, max_keep, offset)
        kept.extend(members[j] for j in local)
    return sorted(kept, key=lambda i: (-scores[i], i))


def ref_soft_nms(segs, scores, method="gaussian", sigma=0.5, thr=0.0, min_score=None, max_keep=None,
                 thr_high=None, keep_last=True) -> list[tuple[int, float]]:
    """Emit the best pending candidate, decay the others; returns [(index, score at emission)]."""
    current = list(map(float, scores))
    pending = [i for i in range(len(scores)) if min_score is None or current[i] >= min_score]
    out: list[tuple[int, float]] = []
    while pending and (max_keep is None or len(out) < max_keep):
        if not keep_last and len(pending) == 1:
            break
        best = max(pending, key=lambda i: (current[i], -i))
        out.append((best, current[best]))
        pending.remove(best)
        width = segs[best][1] - segs[best][0]
        gate = thr if thr_high is None else thr + (thr_high - thr) * width
        for j in pending:
            iou = ref_iou(segs[j], segs[best])
            if iou > gate:
                current[j] *= (1.0 - iou) if method == "linear" else math.exp(-(iou * iou) / sigma)
        if min_score is not None:
            pending = [j for j in pending if current[j] >= min_score]
    return out


# --------------------------------------------------------------------------------------------- #
# Strategies: coarse grids make exact ties, identical segments and IoU == threshold common.
# --------------------------------------------------------------------------------------------- #

coord = st.one_of(st.integers(0, 40).map(lambda v: v / 2), st.floats(0, 20, allow_nan=False))
length = st.one_of(st.integers(0, 16).map(lambda v: v / 2), st.floats(0, 10, allow_nan=False))
score = st.one_of(st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]), st.floats(0, 1, allow_nan=False))


@st.composite
def candidates(draw, max_n=30, num_labels=3):
    n = draw(st.integers(0, max_n))
    starts = draw(st.lists(coord, min_size=n, max_size=n))
    lengths = draw(st.lists(length, min_size=n, max_size=n))
    scores = draw(st.lists(score, min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, num_labels - 1), min_size=n, max_size=n))
    segs = [(s, s + w) for s, w in zip(starts, lengths)]
    return segs, scores, labels


def as_tensors(segs, scores, labels=None):
    seg_t = torch.tensor(segs, dtype=torch.float64).reshape(-1, 2)
    score_t = torch.tensor(scores, dtype=torch.float64)
    label_t = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    return seg_t, score_t, label_t


# Sized to keep this file ~15 s on 2 cores; CI runs a fresh random sample every time.
FAST = settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SETS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------- #
# Property tests
# --------------------------------------------------------------------------------------------- #


@FAST
@given(candidates(num_labels=1), st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0]), st.sampled_from([None, 1, 3]))
def test_hard_nms_matches_loop_reference(data, thr, max_keep):
    segs, scores, _ = data
    keep = nms(*as_tensors(segs, scores)[:2], thr, max_keep).tolist()
    assert keep == ref_hard_nms(segs, scores, thr, max_keep)


@FAST
@given(candidates(), st.sampled_from([0.0, 0.2, 0.6]), st.sampled_from([None, 2]), st.sampled_from([0.0, 1.0]))
def test_batched_nms_equals_per_class_loop(data, thr, max_keep, offset):
    segs, scores, labels = data
    keep = batched_nms(*as_tensors(segs, scores, labels), thr, max_keep, length_offset=offset).tolist()
    assert keep == ref_per_class_nms(segs, scores, labels, thr, max_keep, offset)


@FAST
@given(
    candidates(max_n=25, num_labels=1),
    st.sampled_from(["gaussian", "linear"]),
    st.sampled_from([0.0, 0.1, 0.3]),
    st.sampled_from([None, 0.001, 0.2]),
    st.sampled_from([None, 4]),
    st.booleans(),
)
def test_soft_nms_matches_loop_reference(data, method, thr, min_score, max_keep, keep_last):
    segs, scores, _ = data
    seg_t, score_t, _ = as_tensors(segs, scores)
    keep, new_scores = soft_nms_indices(seg_t, score_t, None, method, 0.5, thr, min_score, max_keep,
                                        keep_last=keep_last)
    ref = sorted(ref_soft_nms(segs, scores, method, 0.5, thr, min_score, max_keep, keep_last=keep_last),
                 key=lambda p: (-p[1], p[0]))
    assert sorted(keep.tolist()) == sorted(i for i, _ in ref)
    got = dict(zip(keep.tolist(), new_scores.tolist()))
    for index, value in ref:
        assert got[index] == pytest.approx(value, abs=1e-6)
    assert all(np.diff(new_scores.numpy()) <= 0)  # sorted by decayed score


@FAST
@given(candidates(max_n=25), st.sampled_from([0.5, 0.8]), st.sampled_from([None, 3]))
def test_batched_soft_nms_equals_per_class_loop(data, sigma, max_keep):
    segs, scores, labels = data
    seg_t, score_t, label_t = as_tensors(segs, scores, labels)
    keep, new_scores = soft_nms_indices(seg_t, score_t, label_t, "gaussian", sigma, 0.1, None, max_keep)
    expected: dict[int, float] = {}
    for label in set(labels):
        members = [i for i in range(len(labels)) if labels[i] == label]
        for j, value in ref_soft_nms([segs[i] for i in members], [scores[i] for i in members], "gaussian",
                                     sigma, 0.1, None, max_keep):
            expected[members[j]] = value
    got = dict(zip(keep.tolist(), new_scores.tolist()))
    assert set(got) == set(expected)
    for index, value in expected.items():
        assert got[index] == pytest.approx(value, abs=1e-6)


@FAST
@given(candidates(max_n=20, num_labels=1))
def test_bsn_width_gate_matches_reference(data):
    segs, scores, _ = data
    seg_t, score_t, _ = as_tensors(segs, scores)
    keep, new_scores = soft_nms_indices(seg_t, score_t, None, "gaussian", 0.75, 0.3, None, None,
                                        iou_threshold_high=0.05)
    ref = ref_soft_nms(segs, scores, "gaussian", 0.75, 0.3, None, None, thr_high=0.05)
    got = dict(zip(keep.tolist(), new_scores.tolist()))
    assert set(got) == {i for i, _ in ref}
    for index, value in ref:
        assert got[index] == pytest.approx(value, abs=1e-6)


@st.composite
def detection_sets(draw):
    segs, scores, labels = draw(candidates(max_n=40))
    videos = draw(st.lists(st.sampled_from(["v_b", "v_a", "v_c"]), min_size=len(segs), max_size=len(segs)))
    names = np.array(["Diving", "Shotput", "HighJump"], dtype=object)
    arr = np.asarray(segs, dtype=np.float64).reshape(-1, 2)
    return DetectionSet(np.asarray(videos, dtype=object), arr[:, 0], arr[:, 1], names[np.asarray(labels, int)],
                        np.asarray(scores, dtype=np.float64))


def rows_of(dets: DetectionSet) -> list[tuple]:
    return list(zip(dets.video.tolist(), dets.start.tolist(), dets.end.tolist(), dets.label.tolist(),
                    dets.score.tolist()))


@SETS
@given(detection_sets(), st.sampled_from([0.2, 0.5]), st.sampled_from([None, 2]), st.sampled_from([None, 3]),
       st.booleans())
def test_detection_set_hard_nms_equals_loop_over_videos(dets, thr, per_class, per_video, agnostic):
    out = nms_detection_set(dets, NMSConfig("hard", thr, max_per_class=per_class, max_per_video=per_video,
                                            class_agnostic=agnostic))
    expected = []
    for video in dets.videos():  # first-appearance order
        rows = np.flatnonzero(dets.video == video)
        segs = list(zip(dets.start[rows], dets.end[rows]))
        scores = dets.score[rows].tolist()
        labels = [0] * len(rows) if agnostic else dets.label[rows].tolist()
        kept = ref_per_class_nms(segs, scores, labels, thr, per_class)
        kept = kept[:per_video] if per_video else kept
        expected.extend(rows[kept].tolist())
    assert rows_of(out) == rows_of(dets.select(np.asarray(expected, dtype=np.int64)))


@SETS
@given(detection_sets(), st.sampled_from([None, 0.05]), st.sampled_from([None, 2]))
def test_detection_set_soft_nms_equals_loop_over_videos(dets, min_score, per_video):
    out = nms_detection_set(dets, "afsd", min_score=min_score, max_per_video=per_video)
    expected = []
    for video in dets.videos():
        rows = np.flatnonzero(dets.video == video)
        emitted = []
        for label in set(dets.label[rows].tolist()):
            members = rows[dets.label[rows] == label]
            ref = ref_soft_nms(list(zip(dets.start[members], dets.end[members])), dets.score[members].tolist(),
                               "gaussian", 0.5, 0.0, min_score, 5000, keep_last=False)
            emitted.extend((int(members[j]), value) for j, value in ref)
        emitted.sort(key=lambda p: (-p[1], p[0]))
        expected.extend(emitted[:per_video] if per_video else emitted)
    assert len(out) == len(expected)
    got = rows_of(out)
    for (video, start, end, label, value), (index, ref_value) in zip(got, expected):
        assert (video, start, end, label) == (dets.video[index], dets.start[index], dets.end[index],
                                              dets.label[index])
        assert value == pytest.approx(ref_value, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(candidates(max_n=20), st.sampled_from([0.0, 1.0]))
def test_segment_iou_is_the_shared_tiou(data, offset):
    segs, _, _ = data
    if not segs:
        return
    a = torch.tensor(segs, dtype=torch.float64)
    b = a.flip(0)
    got = segment_iou(a, b).numpy()
    np.testing.assert_array_equal(got, np.diag(tiou_pairwise(a.numpy(), b.numpy())))
    shifted = segment_iou(a, b, offset).numpy()
    assert shifted.tolist() == [ref_iou(x, y, offset) for x, y in zip(segs, segs[::-1])]


# --------------------------------------------------------------------------------------------- #
# Hand cases
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iou_exactly_at_threshold_is_kept(dtype):
    # [0, 6] vs [4, 10]: intersection 2, union 10 -> IoU 0.2 exactly.
    segs = torch.tensor([[0.0, 6.0], [4.0, 10.0]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8], dtype=dtype)
    assert nms(segs, scores, 0.2).tolist() == [0, 1]
    assert nms(segs, scores, 0.19).tolist() == [0]


def test_soft_nms_decays_only_above_the_gate():
    segs = torch.tensor([[0.0, 6.0], [4.0, 10.0]], dtype=torch.float64)  # IoU exactly 0.2
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    assert soft_nms(segs, scores, iou_threshold=0.2, min_score=None)[1].tolist() == [0.9, 0.8]
    decayed = soft_nms(segs, scores, iou_threshold=0.19, min_score=None)[1].tolist()
    assert decayed == pytest.approx([0.9, 0.8 * math.exp(-0.04 / 0.5)], rel=1e-12)


def test_ties_keep_the_lower_input_index():
    segs = torch.tensor([[0.0, 5.0], [0.0, 5.0], [0.0, 5.0], [20.0, 25.0]])
    scores = torch.tensor([0.5, 0.7, 0.7, 0.7])
    assert nms(segs, scores, 0.5).tolist() == [1, 3]
    keep, new_scores = soft_nms_indices(segs, scores, min_score=None)
    assert keep.tolist()[:2] == [1, 3]  # tied 0.7s: index 1 before 3, 2 decayed by the identical 1
    assert new_scores[2].item() == pytest.approx(0.7 * math.exp(-1 / 0.5), rel=1e-6)


def test_max_per_class_caps_each_class_separately():
    segs = torch.tensor([[i * 10.0, i * 10.0 + 5] for i in range(6)])
    scores = torch.tensor([0.1, 0.6, 0.3, 0.9, 0.8, 0.2])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert batched_nms(segs, scores, labels, 0.5, max_per_class=2).tolist() == [3, 4, 1, 2]


def test_ecm_plus_one_convention_suppresses_close_disjoint_segments():
    # Disjoint in seconds, but with the +1 length convention they "overlap": IoU 0.7 / 2.2 ~ 0.318.
    segs = torch.tensor([[0.0, 0.5], [0.8, 1.2]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    assert nms(segs, scores, 0.3).tolist() == [0, 1]
    assert nms(segs, scores, 0.3, length_offset=1.0).tolist() == [0]


def test_afsd_keep_last_quirk_drops_the_final_pending_candidate():
    segs = torch.tensor([[0.0, 1.0], [5.0, 6.0], [10.0, 11.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    _, kept_scores, kept_labels = soft_nms(segs, scores, labels, keep_last=False)
    assert kept_scores.tolist() == pytest.approx([0.9])  # class 0 loses its last, class 1 had one only
    assert kept_labels.tolist() == [0]
    assert len(soft_nms(segs, scores, labels)[1]) == 3


def test_gaussian_decay_value_matches_formula():
    segs = torch.tensor([[0.0, 10.0], [5.0, 15.0]], dtype=torch.float64)  # IoU 5/15
    scores = torch.tensor([1.0, 0.8], dtype=torch.float64)
    _, new, _ = soft_nms(segs, scores, method="gaussian", sigma=0.5, min_score=None)
    assert new.tolist() == pytest.approx([1.0, 0.8 * math.exp(-(1 / 3) ** 2 / 0.5)], rel=1e-12)
    _, new, _ = soft_nms(segs, scores, method="linear", iou_threshold=0.3, min_score=None)
    assert new.tolist() == pytest.approx([1.0, 0.8 * (1 - 1 / 3)], rel=1e-12)
    _, new, _ = soft_nms(segs, scores, method="linear", iou_threshold=0.5, min_score=None)
    assert new.tolist() == pytest.approx([1.0, 0.8])  # IoU below the gate: untouched


def test_soft_nms_returns_input_dtype_and_empty_inputs_work():
    segs = torch.zeros((0, 2), dtype=torch.float32)
    scores = torch.zeros(0, dtype=torch.float32)
    s, sc, lab = soft_nms(segs, scores, torch.zeros(0, dtype=torch.int64))
    assert s.shape == (0, 2) and sc.dtype == torch.float32 and lab.shape == (0,)
    assert batched_nms(segs, scores, torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)
    assert len(nms_detection_set(DetectionSet.empty(), "a2net")) == 0


def test_numpy_wrappers_agree_with_torch():
    rng = np.random.default_rng(3)
    start = rng.uniform(0, 100, 300)
    segs = np.stack([start, start + rng.uniform(1, 20, 300)], axis=1)
    scores = rng.random(300)
    labels = rng.integers(0, 5, 300)
    keep = batched_nms_numpy(segs, scores, labels, 0.4)
    assert isinstance(keep, np.ndarray)
    assert keep.tolist() == ref_per_class_nms([tuple(s) for s in segs], scores.tolist(), labels.tolist(), 0.4)
    idx, new = soft_nms_numpy(segs, scores, labels, sigma=0.5)
    t_idx, t_new = soft_nms_indices(torch.from_numpy(segs), torch.from_numpy(scores), torch.from_numpy(labels))
    np.testing.assert_array_equal(idx, t_idx.numpy())
    np.testing.assert_allclose(new, t_new.numpy())


def test_a2net_preset_caps_per_class_then_per_video():
    rng = np.random.default_rng(0)
    n = 3000  # disjoint segments (nothing suppressed) so only the caps act
    start = np.arange(n, dtype=np.float64) * 2.0
    labels = np.array(["A", "B", "C"], dtype=object)[np.arange(n) % 3]
    dets = DetectionSet(np.array(["v"] * n, dtype=object), start, start + 1.0, labels, rng.random(n))
    out = nms_detection_set(dets, "a2net")
    assert len(out) == 200
    best_per_class = {c: np.sort(dets.score[dets.label == c])[::-1][:200] for c in "ABC"}
    expected = np.sort(np.concatenate(list(best_per_class.values())))[::-1][:200]
    np.testing.assert_array_equal(out.score, expected)


def test_detection_set_output_order_is_video_then_score():
    dets = DetectionSet(
        np.array(["v2", "v1", "v2", "v1"], dtype=object), np.array([0.0, 0.0, 10.0, 10.0]),
        np.array([1.0, 1.0, 11.0, 11.0]), np.array(["A", "A", "A", "B"], dtype=object), np.array([0.3, 0.2, 0.9, 0.5]),
    )
    out = nms_detection_set(dets, NMSConfig("hard", 0.5))
    assert out.video.tolist() == ["v2", "v2", "v1", "v1"]
    assert out.score.tolist() == [0.9, 0.3, 0.5, 0.2]


# --------------------------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "segments, scores, labels, field",
    [
        (torch.zeros(3, 3), torch.zeros(3), None, "segments"),
        (torch.zeros(3, 2), torch.zeros(4), None, "scores"),
        (torch.tensor([[0.0, float("nan")]]), torch.ones(1), None, "segments"),
        (torch.zeros(1, 2), torch.tensor([float("inf")]), None, "scores"),
        (torch.zeros(2, 2), torch.zeros(2), torch.zeros(3, dtype=torch.int64), "labels"),
        (torch.zeros(2, 2), torch.zeros(2), torch.zeros(2), "labels"),
    ],
)
def test_bad_tensors_raise_tadkit_error(segments, scores, labels, field):
    with pytest.raises(TadkitError) as info:
        batched_nms(segments, scores, labels, 0.5)
    assert info.value.field == field


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"iou_threshold": float("nan")}, "iou_threshold"),
        ({"sigma": 0.0}, "sigma"),
        ({"max_per_class": 0}, "max_per_class"),
        ({"max_per_video": -1}, "max_per_video"),
        ({"method": "fast"}, "method"),
    ],
)
def test_bad_config_raises_tadkit_error(kwargs, field):
    with pytest.raises(TadkitError) as info:
        NMSConfig(**kwargs)
    assert info.value.field == field


def test_config_from_dict_presets_and_errors():
    cfg = NMSConfig.from_dict({"preset": "a2net", "max_per_video": 100})
    assert cfg == NMSConfig("hard", 0.2, max_per_class=200, max_per_video=100)
    with pytest.raises(TadkitError) as info:
        NMSConfig.from_dict({"iou_thresh": 0.5}, file="cfg.yaml")
    assert info.value.file == "cfg.yaml" and "iou_thresh" in str(info.value)
    with pytest.raises(TadkitError) as info:
        NMSConfig.from_dict({"preset": "a2net", "sigma": -1}, file="cfg.yaml")
    assert info.value.field == "nms.sigma" and info.value.file == "cfg.yaml"
    assert set(NMS_PRESETS) >= {"a2net", "afsd", "ecm_thumos", "ecm_anet", "acrnet_thumos", "acrnet_anet"}


def test_detection_set_with_nan_score_names_the_video():
    dets = DetectionSet(np.array(["v1", "v2"], dtype=object), np.array([0.0, 1.0]), np.array([1.0, 2.0]),
                        np.array(["A", "A"], dtype=object), np.array([0.5, np.nan]))
    with pytest.raises(TadkitError) as info:
        nms_detection_set(dets, "a2net")
    assert info.value.video == "v2" and info.value.field == "score"


# --------------------------------------------------------------------------------------------- #
# Large groups (the block kernel) against a straightforward NumPy loop
# --------------------------------------------------------------------------------------------- #

nms_module = importlib.import_module("tadkit.postprocess.nms")


def numpy_loop_nms(segs, scores, labels, method, thr, sigma=0.5, min_score=None, max_keep=None, thr_high=None,
                   keep_last=True, offset=0.0):
    """One class at a time, one pick per iteration (argmax: first = lowest index), vectorized update."""
    out: list[tuple[int, float]] = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        s, e, cur = segs[idx, 0], segs[idx, 1], scores[idx].astype(np.float64)
        pend = np.arange(idx.size)
        if method != "hard" and min_score is not None:
            pend = pend[cur[pend] >= min_score]
        emitted = 0
        while pend.size and (max_keep is None or emitted < max_keep):
            if not keep_last and pend.size == 1:
                break
            j = int(np.argmax(cur[pend]))
            p = pend[j]
            out.append((int(idx[p]), float(cur[p])))
            emitted += 1
            pend = np.delete(pend, j)
            inter = np.maximum(np.minimum(e[pend], e[p]) - np.maximum(s[pend], s[p]) + offset, 0.0)
            union = (e[pend] - s[pend] + offset) + (e[p] - s[p] + offset) - inter
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
            if method == "hard":
                pend = pend[iou <= thr]
                continue
            gate = thr if thr_high is None else thr + (thr_high - thr) * (e[p] - s[p])
            factor = 1.0 - iou if method == "linear" else np.exp(-(iou * iou) / sigma)
            cur[pend] = np.where(iou > gate, cur[pend] * factor, cur[pend])
            if min_score is not None:
                pend = pend[cur[pend] >= min_score]
    out.sort(key=lambda pair: (-pair[1], pair[0]))
    return np.array([i for i, _ in out], dtype=np.int64), np.array([v for _, v in out])


def clustered(rng, n, num_labels, coarse):
    """Heavy overlap around a few centres; ``coarse`` puts everything on a 0.5 grid with 5 score levels,
    so exact score ties, identical segments, zero-length segments and IoU == threshold are common."""
    centre = rng.choice(rng.uniform(0, 60, 6), n) + rng.normal(0, 2.0, n)
    length = rng.uniform(0, 12, n)
    start = centre - length / 2
    scores = rng.random(n)
    if coarse:
        start, length = np.round(start * 2) / 2, np.round(length * 2) / 2
        scores = rng.choice([0.1, 0.25, 0.5, 0.75, 0.9], n)
    dup = rng.random(n) < 0.1  # copies of another row: identical segment and score
    src = rng.integers(0, n, n)
    start[dup], length[dup], scores[dup] = start[src[dup]], length[src[dup]], scores[src[dup]]
    segs = np.stack([start, start + length], axis=1)
    return segs, scores, rng.integers(0, num_labels, n)


def assert_same(got, expected):
    keep, value = got
    ref_keep, ref_value = expected
    np.testing.assert_array_equal(keep, ref_keep)
    np.testing.assert_allclose(value, ref_value, rtol=0, atol=1e-12)


BLOCK_CASES = [
    # method, thr, min_score, max_keep, thr_high, keep_last
    ("gaussian", 0.0, 0.001, None, None, True),
    ("gaussian", 0.0, 0.001, 5000, None, False),  # AFSD
    ("gaussian", 0.1, None, None, None, True),  # ACRNet: keep everything
    ("gaussian", 0.3, None, None, 0.05, True),  # BSN width gate (negative for wide picks)
    ("linear", 0.1, 0.001, None, None, True),
    ("linear", 0.0, 0.2, 7, None, True),
    ("linear", 0.3, 0.05, 3, None, False),
    ("gaussian", 0.0, 0.3, None, None, False),
]


@pytest.mark.parametrize("coarse", [False, True])
@pytest.mark.parametrize("case", BLOCK_CASES)
def test_soft_nms_large_groups_equal_numpy_loop(case, coarse):
    method, thr, min_score, max_keep, thr_high, keep_last = case
    rng = np.random.default_rng(2 * BLOCK_CASES.index(case) + int(coarse))
    segs, scores, labels = clustered(rng, 900, 3, coarse)  # ~300 per class: the block kernel
    assert np.bincount(labels).min() >= nms_module._BLOCK_MIN_GROUP
    got = soft_nms_numpy(segs, scores, labels, method, 0.5, thr, min_score, max_keep, iou_threshold_high=thr_high,
                         keep_last=keep_last)
    assert_same(got, numpy_loop_nms(segs, scores, labels, method, thr, 0.5, min_score, max_keep, thr_high, keep_last))


@pytest.mark.parametrize("coarse", [False, True])
@pytest.mark.parametrize("thr, max_keep, offset", [(0.2, None, 0.0), (0.0, None, 0.0), (0.5, 4, 0.0),
                                                   (0.6, None, 1.0), (1.0, None, 0.0)])
def test_hard_nms_large_groups_equal_numpy_loop(thr, max_keep, offset, coarse):
    rng = np.random.default_rng(int(thr * 10) + 7 * int(coarse) + (max_keep or 0))
    segs, scores, labels = clustered(rng, 900, 3, coarse)
    keep = batched_nms_numpy(segs, scores, labels, thr, max_keep, length_offset=offset)
    ref_keep, _ = numpy_loop_nms(segs, scores, labels, "hard", thr, max_keep=max_keep, offset=offset)
    np.testing.assert_array_equal(keep, ref_keep)


def test_mixed_group_sizes_and_torch_entry_point_equal_numpy_loop():
    # One big class (block kernel) next to small ones (round kernel), through the public torch API.
    rng = np.random.default_rng(11)
    segs, scores, _ = clustered(rng, 700, 1, False)
    labels = np.where(rng.random(700) < 0.8, 0, rng.integers(1, 40, 700))
    keep, value = soft_nms_indices(torch.from_numpy(segs), torch.from_numpy(scores), torch.from_numpy(labels),
                                   "gaussian", 0.5, 0.0, 0.001)
    assert_same((keep.numpy(), value.numpy()), numpy_loop_nms(segs, scores, labels, "gaussian", 0.0, 0.5, 0.001))
    kept = batched_nms(torch.from_numpy(segs), torch.from_numpy(scores), torch.from_numpy(labels), 0.3)
    np.testing.assert_array_equal(kept.numpy(), numpy_loop_nms(segs, scores, labels, "hard", 0.3)[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidates(max_n=40), st.sampled_from(["hard", "gaussian", "linear"]), st.sampled_from([0.0, 0.2, 0.5]),
       st.sampled_from([None, 0.2]), st.sampled_from([None, 2]), st.booleans())
def test_block_kernel_on_small_inputs_matches_loop(data, method, thr, min_score, max_keep, keep_last):
    # Force every group through the block kernel, so the hand-picked corner cases of the strategies
    # (exact ties, identical and zero-length segments, IoU == threshold) reach it too.
    segs, scores, labels = data
    segs = np.asarray(segs, dtype=np.float64).reshape(-1, 2)
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nms_module, "_BLOCK_MIN_GROUP", 1)
        if method == "hard":
            got = batched_nms_numpy(segs, scores, labels, thr, max_keep)
            np.testing.assert_array_equal(got, numpy_loop_nms(segs, scores, labels, "hard", thr, max_keep=max_keep)[0])
        else:
            got = soft_nms_numpy(segs, scores, labels, method, 0.5, thr, min_score, max_keep, keep_last=keep_last)
            assert_same(got, numpy_loop_nms(segs, scores, labels, method, thr, 0.5, min_score, max_keep,
                                            keep_last=keep_last))


# --------------------------------------------------------------------------------------------- #
# The compiled path: which kernel runs, and graceful fallbacks
# --------------------------------------------------------------------------------------------- #


def _fresh_python(code: str, **env_changes: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TADKIT_NMS_JIT"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def test_compiled_kernel_is_loaded_lazily_and_only_when_it_pays(tmp_path):
    # `import tadkit` and a small NMS call load nothing compiled (default mode "auto").
    code = (
        "import sys, numpy as np, tadkit, importlib\n"
        "m = importlib.import_module('tadkit.postprocess.nms')\n"
        "assert 'numba' not in sys.modules and 'llvmlite' not in sys.modules, 'import pulled in a compiler'\n"
        "segs = np.array([[0.0, 2.0], [0.5, 2.5], [5.0, 6.0]])\n"
        "print(m.batched_nms_numpy(segs, np.array([0.9, 0.8, 0.7]), None, 0.5).tolist())\n"
        "print('numba' in sys.modules, 'llvmlite' in sys.modules)\n"
    )
    out = _fresh_python(code, TADKIT_CACHE=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[0,", "2]", "False", "False"]


def test_import_gives_the_module_not_a_function():
    # The package used to re-export a function `nms`, so `import tadkit.postprocess.nms as m` gave it.
    import tadkit.postprocess
    import tadkit.postprocess.nms as imported

    assert isinstance(imported, types.ModuleType) and imported is nms_module
    assert isinstance(tadkit.postprocess.nms, types.ModuleType)
    params = list(inspect.signature(imported.soft_nms_indices).parameters)
    assert params[:8] == ["segments", "scores", "labels", "method", "sigma", "iou_threshold", "min_score",
                          "max_per_class"]


@pytest.fixture
def empty_cache(tmp_path, monkeypatch, nms_path):
    """A private, empty kernel cache (TADKIT_CACHE and the temp-dir fallback both under tmp_path).

    The tests using it set the mode themselves, so they run once (in the NumPy pass)."""
    if nms_path != "numpy":
        pytest.skip("selects the kernel itself: runs once, in the other pass")
    monkeypatch.setenv("TADKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(nms_module, "_jit_state", {})
    return tmp_path


def test_auto_mode_decides_from_the_work_of_the_call(empty_cache, monkeypatch):
    monkeypatch.setenv("TADKIT_NMS_JIT", "0")
    assert nms_module._jit_kernel(10**9) is None
    monkeypatch.setenv("TADKIT_NMS_JIT", "auto")
    # Small calls never look for compiled code; with no cached copy, mid-size calls stay in NumPy
    # (compiling costs seconds) and the cache is looked up once per process.
    assert nms_module._jit_kernel(nms_module._WARM_MIN_CANDIDATES - 1) is None
    assert nms_module._jit_state == {}
    assert nms_module._jit_kernel(nms_module._COLD_MIN_CANDIDATES - 1) is None
    assert nms_module._jit_state == {"cold": True}
    if not HAVE_NUMBA:
        return
    # A call big enough to pay for compiling builds it, caches it, and from then on it serves every size.
    kernel = nms_module._jit_kernel(nms_module._COLD_MIN_CANDIDATES)
    assert kernel is not None and kernel.source == "compiled"
    assert nms_module._jit_kernel(1) is kernel
    assert list((empty_cache / "cache" / "nms").glob("*.o"))
    # A new process (state reset) with the warm cache loads it for a mid-size call.
    monkeypatch.setattr(nms_module, "_jit_state", {})
    assert nms_module._jit_kernel(nms_module._WARM_MIN_CANDIDATES - 1) is None
    warm = nms_module._jit_kernel(nms_module._WARM_MIN_CANDIDATES)
    assert warm is not None and warm.source == "cache"


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_warm_cache_runs_the_compiled_kernel_without_numba_and_equals_numpy(empty_cache):
    # Build the cache in one process; a fresh process then runs a 2,000-candidate call (the per-video
    # size of a test job) on the cached machine code without importing numba, equal to the NumPy path.
    build = _fresh_python("from tadkit.postprocess import nms_native; nms_native.build()",
                          TADKIT_CACHE=str(empty_cache / "cache"))
    assert build.returncode == 0, build.stderr
    code = (
        "import sys, numpy as np\n"
        "from tadkit.postprocess.nms import soft_nms_numpy, _jit_state\n"
        "rng = np.random.default_rng(0)\n"
        "c = rng.uniform(0, 100, 2000); w = rng.uniform(1, 8, 2000)\n"
        "segs = np.stack([c - w, c + w], 1); sc = rng.random(2000); lab = rng.integers(0, 20, 2000)\n"
        "keep, value = soft_nms_numpy(segs, sc, lab, 'gaussian', 0.5, 0.0, 0.001)\n"
        "print(_jit_state['kernel'].source, 'numba' in sys.modules)\n"
        "np.save(sys.argv[1], np.stack([keep.astype(float), value]))\n"
    )
    result = empty_cache / "compiled.npy"
    env = {k: v for k, v in os.environ.items() if k != "TADKIT_NMS_JIT"}
    env["TADKIT_CACHE"] = str(empty_cache / "cache")
    out = subprocess.run([sys.executable, "-c", code, str(result)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cache", "False"]
    rng = np.random.default_rng(0)
    c, w = rng.uniform(0, 100, 2000), rng.uniform(1, 8, 2000)
    segs, sc, lab = np.stack([c - w, c + w], 1), rng.random(2000), rng.integers(0, 20, 2000)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TADKIT_NMS_JIT", "0")
        keep, value = soft_nms_numpy(segs, sc, lab, "gaussian", 0.5, 0.0, 0.001)
    compiled = np.load(result)
    np.testing.assert_array_equal(compiled[0].astype(np.int64), keep)
    np.testing.assert_allclose(compiled[1], value, rtol=0, atol=1e-12)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_cache_falls_back_to_a_private_temp_dir_and_refuses_shared_or_tampered_code(empty_cache, monkeypatch):
    from tadkit.postprocess import nms_native

    blocker = empty_cache / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("TADKIT_CACHE", str(blocker / "cache"))  # cannot be created: a file is in the way
    kernel = nms_native.build()
    fallback = Path(tempfile.gettempdir()) / f"tadkit-{os.getuid()}" / "nms"
    stored = sorted(fallback.glob("*.o"))
    assert len(stored) == 1 and stat.S_IMODE(fallback.stat().st_mode) == 0o700
    assert nms_native.load_cached() is not None and kernel.source == "compiled"
    # Machine code that does not match its recorded digest is never run ...
    code = bytearray(stored[0].read_bytes())
    code[len(code) // 2] ^= 0xFF
    stored[0].write_bytes(bytes(code))
    assert nms_native.load_cached() is None
    # ... nor anything in a directory that others can write to.
    nms_native.build()
    assert nms_native.load_cached() is not None
    fallback.chmod(0o777)
    assert nms_native.load_cached() is None
    fallback.chmod(0o700)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_loading_the_kernel_leaves_numba_code_of_the_same_process_working(empty_cache):
    # The loader binds symbols process-wide; numba's own runtime symbols (NRT_*, numba_*) must keep
    # theirs, or numba code that frees an array after the load would call abort().
    code = (
        "import numpy as np, numba\n"
        "from tadkit.postprocess import nms_native\n"
        "@numba.njit\n"
        "def total(n):\n"
        "    return (np.ones(n) * 2).sum()\n"
        "total(4)\n"
        "kernel = nms_native.load_cached() or nms_native.build()\n"
        "@numba.njit\n"
        "def again(n):\n"
        "    s = 0.0\n"
        "    for i in range(50):\n"
        "        s += np.ones(n).sum()\n"
        "    return s\n"
        "print(kernel.source, total(1000), again(10))\n"
    )
    for expected in ("compiled", "cache"):  # first run compiles, the second loads the cached object
        out = _fresh_python(code, TADKIT_CACHE=str(empty_cache / "cache"))
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [expected, "2000.0", "500.0"]


def test_missing_numba_falls_back_to_numpy_with_the_same_results(empty_cache, monkeypatch):
    monkeypatch.setenv("TADKIT_NMS_JIT", "1")
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    segs, scores, labels = clustered(np.random.default_rng(5), 400, 2, True)
    got = soft_nms_numpy(segs, scores, labels, "gaussian", 0.5, 0.0, 0.001)
    assert nms_module._jit_state["kernel"] is None
    assert_same(got, numpy_loop_nms(segs, scores, labels, "gaussian", 0.0, 0.5, 0.001))


def test_failing_compiled_kernel_warns_and_falls_back(monkeypatch):
    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setenv("TADKIT_NMS_JIT", "1")
    monkeypatch.setattr(nms_module, "_jit_state", {"kernel": broken})
    segs, scores, labels = clustered(np.random.default_rng(6), 300, 2, False)
    with pytest.warns(RuntimeWarning, match="No space left"):
        keep = batched_nms_numpy(segs, scores, labels, 0.3)
    np.testing.assert_array_equal(keep, numpy_loop_nms(segs, scores, labels, "hard", 0.3)[0])
    assert nms_module._jit_state["kernel"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every call
        batched_nms_numpy(segs, scores, labels, 0.3)


def test_dense_group_ids_keep_label_order():
    # The O(n) path for small non-negative labels and np.unique agree (codes follow label order).
    labels = np.array([7, 3, 3, 0, 7, 12])
    codes, count = nms_module._dense(labels, labels.size)
    assert count == 4 and codes.tolist() == [2, 1, 1, 0, 2, 3]
    codes, count = nms_module._dense(np.array([-5, 10**12, -5]), 3)
    assert count == 2 and codes.tolist() == [0, 1, 0]
