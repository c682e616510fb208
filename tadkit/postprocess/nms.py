"""Temporal non-maximum suppression: hard NMS and soft-NMS, per class, per video, all at once.

Every public function works on groups: a group is one (video, class) pair for per-class NMS, one
video for class-agnostic NMS. Suppression never crosses groups.

How it runs. Greedy NMS is sequential inside a group but independent across groups. Three exact
kernels give the same kept sets and scores as a one-pick-at-a-time loop:

* :func:`tadkit.postprocess.nms_native.greedy_core`, compiled with numba once per machine and
  reloaded from a disk cache without numba (imported lazily): that loop per group, touching only
  the candidates that overlap each pick (binary searches over start order) and finding the next
  pick in a tournament tree over blocks. ``TADKIT_NMS_JIT`` (see below) decides when it runs; it is
  the fastest by 3-7x.
* NumPy *rounds* (groups below ``_BLOCK_MIN_GROUP``): each round takes the current best candidate
  of **every** group at once and suppresses (or decays) the rest of each group against its own
  best in one vectorized step; Python iterations = the most picks in one group.
* NumPy :func:`_block_nms` (larger groups): touches only the candidates overlapping each pick,
  one pick per overlap component per round.

The NumPy kernels are the reference and the fallback (numba / llvmlite missing or failing). None uses the
box-offset trick (shifting each group to its own coordinate range), which perturbs IoUs by
floating-point rounding and could flip a comparison that sits exactly on the threshold. On CPU
small-tensor torch ops (advanced indexing, ``exp``) measured 5-100x slower than NumPy here, so the
torch API converts at the boundary (zero-copy for CPU tensors).

Conventions (documented once, used everywhere):

* IoU is the ActivityNet tIoU of :mod:`tadkit.ops` (0 when the union is not positive), computed in
  float64 whatever the input dtype.
* Hard NMS keeps a candidate whose IoU with every kept, higher-ranked candidate is ``<= iou_threshold``
  (A2Net's rule: "keep IoU <= thr"); so a pair exactly at the threshold survives.
* Soft-NMS decays a candidate only when its IoU with the picked one is ``> iou_threshold``
  (BSN / mmaction2 rule; AFSD's Gaussian soft-NMS has no threshold, i.e. ``iou_threshold=0``).
  Linear: ``s *= 1 - iou``; Gaussian: ``s *= exp(-iou**2 / sigma)`` (``sigma`` divides directly, as
  in AFSD and mmaction2, not ``2 sigma**2``).
* Ties: higher score first, then lower input index. Results are sorted by score descending with
  the same tie-break. The official codes sort with an unstable ``argsort()[::-1]``, so they agree
  with us whenever scores are distinct.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from typing import Any, Literal, Mapping

import numpy as np

from tadkit.ops import tiou
import torch
from torch import Tensor

from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError, reject_unknown_fields

NMSMethod = Literal["hard", "linear", "gaussian", "none"]
_METHODS = ("hard", "linear", "gaussian", "none")

__all__ = [
    "NMSConfig",
    "NMS_PRESETS",
    "segment_iou",
    "nms",
    "batched_nms",
    "soft_nms",
    "soft_nms_indices",
    "nms_numpy",
    "batched_nms_numpy",
    "soft_nms_numpy",
    "nms_detection_set",
    "rank_within_groups",
    "first_appearance_codes",
]


# --------------------------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------------------------- #


@dataclass(frozen=True)
class NMSConfig:
    """Everything that defines one post-processing NMS recipe (see :data:`NMS_PRESETS`).

    ``min_score``: candidates scoring below it are dropped before NMS (hard) or as soon as their
    decayed score falls below it (soft, AFSD's ``score_threshold``); ``None`` keeps everything.
    ``length_offset``: added to every length and intersection (ECM's ``x2 - x1 + 1`` quirk).
    ``iou_threshold_high``: BSN's width-dependent soft-NMS gate,
    ``thr = iou_threshold + (iou_threshold_high - iou_threshold) * width(picked)``.
    ``keep_last=False`` reproduces AFSD's loop, which never emits a group's last pending candidate.
    """

    method: NMSMethod = "hard"
    iou_threshold: float = 0.5
    sigma: float = 0.5
    min_score: float | None = None
    max_per_class: int | None = None
    max_per_video: int | None = None
    class_agnostic: bool = False
    length_offset: float = 0.0
    iou_threshold_high: float | None = None
    keep_last: bool = True

    def __post_init__(self) -> None:
        _check_params(
            self.method,
            self.iou_threshold,
            self.sigma,
            self.min_score,
            self.max_per_class,
            self.length_offset,
            self.iou_threshold_high,
        )
        _check_top_k(self.max_per_video, "max_per_video")
        if self.length_offset and self.method in ("linear", "gaussian"):
            raise TadkitError("length_offset is only supported by hard NMS", field="length_offset")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, file: str | None = None) -> "NMSConfig":
        """Build from a YAML/JSON mapping; ``preset: name`` starts from a preset, other keys override."""
        if not isinstance(data, Mapping):
            raise TadkitError(f"expected a mapping, got {type(data).__name__}", file=file, field="nms")
        data = dict(data)
        base = NMSConfig()
        if "preset" in data:
            name = data.pop("preset")
            if name not in NMS_PRESETS:
                raise TadkitError(
                    f"unknown NMS preset {name!r}; choose one of {sorted(NMS_PRESETS)}", file=file, field="nms.preset"
                )
            base = NMS_PRESETS[name]
        reject_unknown_fields(cls, data, "key(s)", field="nms", file=file)
        try:
            return replace(base, **data)
        except TadkitError as error:
            raise TadkitError(error.message, file=file, field=f"nms.{error.field}" if error.field else "nms") from None
        except TypeError as error:  # wrong value types that the dataclass machinery rejects
            raise TadkitError(str(error), file=file, field="nms") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_top_k(value: int | None, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TadkitError(f"must be a positive integer or None, got {value!r}", field=name)


def _check_params(
    method: str,
    iou_threshold: float,
    sigma: float,
    min_score: float | None,
    max_per_class: int | None,
    length_offset: float,
    iou_threshold_high: float | None,
) -> None:
    if method not in _METHODS:
        raise TadkitError(f"unknown NMS method {method!r}; choose one of {list(_METHODS)}", field="method")
    for name, value in (("iou_threshold", iou_threshold), ("sigma", sigma), ("length_offset", length_offset)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TadkitError(f"must be a finite number, got {value!r}", field=name)
    if not 0.0 <= iou_threshold <= 1.0:
        raise TadkitError(f"must be in [0, 1], got {iou_threshold}", field="iou_threshold")
    if sigma <= 0:
        raise TadkitError(f"must be > 0, got {sigma}", field="sigma")
    if length_offset < 0:
        raise TadkitError(f"must be >= 0, got {length_offset}", field="length_offset")
    if min_score is not None and (
        isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or math.isnan(min_score)
    ):
        raise TadkitError(f"must be a number or None, got {min_score!r}", field="min_score")
    if iou_threshold_high is not None and (
        isinstance(iou_threshold_high, bool)
        or not isinstance(iou_threshold_high, (int, float))
        or not math.isfinite(iou_threshold_high)
    ):
        raise TadkitError(f"must be a finite number or None, got {iou_threshold_high!r}", field="iou_threshold_high")
    _check_top_k(max_per_class, "max_per_class")


# The official recipes (see /work/shared/methods/*.md); keys are what configs may name.
NMS_PRESETS: dict[str, NMSConfig] = {
    # A2Net: per-class hard NMS 0.2, <= 200 per class, then top 200 per video.
    "a2net": NMSConfig(method="hard", iou_threshold=0.2, max_per_class=200, max_per_video=200),
    # AFSD: per-class Gaussian soft-NMS sigma 0.5 without IoU gate, score floor 0.001, 5000 per class;
    # its loop never emits the last pending candidate of a class.
    "afsd": NMSConfig(
        method="gaussian", iou_threshold=0.0, sigma=0.5, min_score=0.001, max_per_class=5000, keep_last=False
    ),
    # ECM: per-class hard NMS with the "+1" length convention, no cap.
    "ecm_thumos": NMSConfig(method="hard", iou_threshold=0.6, length_offset=1.0),
    "ecm_anet": NMSConfig(method="hard", iou_threshold=0.7, length_offset=1.0),
    # ACRNet: mmaction2 BSN soft-NMS with low = high = 0.1 (so the gate is a plain 0.1), keep all.
    "acrnet_thumos": NMSConfig(method="gaussian", iou_threshold=0.1, sigma=0.5),
    "acrnet_anet": NMSConfig(method="gaussian", iou_threshold=0.1, sigma=0.8),
}


# --------------------------------------------------------------------------------------------- #
# Input checks (all public entry points end up with float64 / int64 NumPy columns)
# --------------------------------------------------------------------------------------------- #


def _validate(seg: np.ndarray, sc: np.ndarray, lab: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Shape/value checks on arrays; returns (start, end, scores, labels-or-None) as contiguous columns."""
    if seg.ndim != 2 or seg.shape[1] != 2:
        if seg.size == 0 and sc.size == 0:
            seg = seg.reshape(0, 2)
        else:
            raise TadkitError(f"expected shape (N, 2), got {tuple(seg.shape)}", field="segments")
    n = seg.shape[0]
    if sc.ndim != 1 or sc.shape[0] != n:
        raise TadkitError(f"expected shape ({n},), got {tuple(sc.shape)}", field="scores")
    if not np.isfinite(seg).all():
        raise TadkitError("contains NaN or infinite values", field="segments")
    if not np.isfinite(sc).all():
        raise TadkitError("contains NaN or infinite values", field="scores")
    if lab is not None and (lab.ndim != 1 or lab.shape[0] != n):
        raise TadkitError(f"expected shape ({n},), got {tuple(lab.shape)}", field="labels")
    return np.ascontiguousarray(seg[:, 0]), np.ascontiguousarray(seg[:, 1]), sc, lab


def _tensor_inputs(segments: Tensor, scores: Tensor, labels: Tensor | None) -> tuple[np.ndarray, ...]:
    """Torch inputs -> CPU float64 NumPy columns (float64: exact threshold comparisons)."""
    if not isinstance(segments, Tensor) or not isinstance(scores, Tensor):
        raise TadkitError("segments and scores must be torch tensors (use the *_numpy functions for arrays)",
                          field="segments")
    if segments.is_complex() or segments.dtype == torch.bool:
        raise TadkitError(f"unsupported dtype {segments.dtype}", field="segments")
    if scores.is_complex() or scores.dtype == torch.bool:
        raise TadkitError(f"unsupported dtype {scores.dtype}", field="scores")
    seg = segments.detach().to("cpu", torch.float64).numpy()
    sc = scores.detach().to("cpu", torch.float64).numpy()
    lab = None
    if labels is not None:
        if not isinstance(labels, Tensor):
            raise TadkitError(f"expected an integer tensor, got {type(labels).__name__}", field="labels")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TadkitError(f"must be integer class indices, got dtype {labels.dtype}", field="labels")
        lab = labels.detach().to("cpu", torch.int64).numpy()
    return _validate(seg, sc, lab)


def _array_inputs(segments: Any, scores: Any, labels: Any) -> tuple[np.ndarray, ...]:
    def convert(value: Any, name: str, dtype: type) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.kind not in "iuf" or (dtype is np.int64 and arr.dtype.kind == "f"):
            raise TadkitError(f"expected a numeric array, got dtype {arr.dtype}", field=name)
        return arr.astype(dtype, copy=False)

    lab = None if labels is None else convert(labels, "labels", np.int64)
    return _validate(convert(segments, "segments", np.float64), convert(scores, "scores", np.float64), lab)


def _dense(groups: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """Arbitrary integer group ids -> 0..G-1."""
    if groups is None or n == 0:
        return np.zeros(n, dtype=np.int64), 1 if n else 0
    low, high = int(groups.min()), int(groups.max())
    if 0 <= low and high < 4 * n + 1024:  # small non-negative ids (class indices): no sort needed
        present = np.bincount(groups, minlength=high + 1) > 0
        code = np.cumsum(present) - 1
        return code[groups], int(present.sum())
    uniq, inverse = np.unique(groups, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64, copy=False), len(uniq)


# --------------------------------------------------------------------------------------------- #
# Kernels (NumPy: on CPU these loops are latency-bound, and small-tensor torch ops measured 5-100x
# slower than NumPy here, more so under load from OpenMP thread contention)
# --------------------------------------------------------------------------------------------- #


def _iou_cols(s1: np.ndarray, e1: np.ndarray, s2: np.ndarray, e2: np.ndarray, offset: float) -> np.ndarray:
    """Element-wise tIoU (:func:`tadkit.ops.tiou`), lengths and intersection + ``offset``."""
    return tiou(s1, e1, s2, e2, offset)


def _run_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """Boolean mask: True where a new group begins in a group-sorted array."""
    first = np.empty(sorted_groups.size, dtype=bool)
    if sorted_groups.size:
        first[0] = True
        np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=first[1:])
    return first


def _sort_by_score(indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``indices`` ordered by ``scores[indices]`` desc, ties by index asc."""
    return indices[np.lexsort((indices, -scores[indices]))]


def _hard_nms_rounds(
    start: np.ndarray,
    end: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    iou_threshold: float,
    max_per_group: int | None,
    length_offset: float,
) -> np.ndarray:
    """Greedy hard NMS inside each group, all groups per round; kept indices sorted by score desc."""
    n = scores.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(n), -scores, groups))  # group asc, score desc, index asc
    s, e, g = start[order], end[order], groups[order]
    single_group = g[0] == g[-1]
    idx = np.arange(n)  # alive positions in sorted order, ascending
    kept: list[np.ndarray] = []
    rounds = 0
    while idx.size:
        if single_group:
            tops, rest = idx[:1], idx[1:]
            top_of = np.broadcast_to(tops, rest.shape)
        else:
            first = _run_starts(g[idx])  # first alive position of each group = its best candidate
            tops = idx[first]
            rest_mask = ~first
            rest = idx[rest_mask]
            top_of = tops[np.cumsum(first)[rest_mask] - 1]
        kept.append(tops)
        rounds += 1
        if not rest.size or (max_per_group is not None and rounds >= max_per_group):
            break
        iou = _iou_cols(s[rest], e[rest], s[top_of], e[top_of], length_offset)
        idx = rest[iou <= iou_threshold]  # keep IoU <= thr: a pair exactly at the threshold survives
    return _sort_by_score(order[np.concatenate(kept)], scores)


def _soft_nms_rounds(
    start: np.ndarray,
    end: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    num_groups: int,
    method: str,
    sigma: float,
    iou_threshold: float,
    iou_threshold_high: float | None,
    min_score: float | None,
    max_per_group: int | None,
    keep_last: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS inside each group, all groups per round; (emitted indices, decayed scores), score desc."""
    n = scores.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    current = scores.astype(np.float64, copy=True)
    # Pending candidates stay sorted by (group, index): groups are contiguous runs and, within a
    # run, the first maximum is the lowest input index (the documented tie-break).
    pend = np.lexsort((np.arange(n), groups))
    if min_score is not None:
        pend = pend[current[pend] >= min_score]
    emitted: list[np.ndarray] = []
    emitted_count = np.zeros(num_groups, dtype=np.int64)
    while pend.size:
        first = _run_starts(groups[pend])
        if not keep_last:  # AFSD: a group stops while exactly one candidate is still pending
            run_start = np.flatnonzero(first)
            sizes = np.diff(np.append(run_start, pend.size))
            if (sizes == 1).any():
                pend = pend[np.repeat(sizes > 1, sizes)]
                if not pend.size:
                    break
                first = _run_starts(groups[pend])
        run_start = np.flatnonzero(first)
        run_id = np.cumsum(first) - 1
        values = current[pend]
        run_max = np.maximum.reduceat(values, run_start)
        at_max = np.flatnonzero(values == run_max[run_id])
        pick_pos = at_max[_run_starts(run_id[at_max])]  # first maximum of each run
        picks = pend[pick_pos]
        emitted.append(picks)
        not_picked = np.ones(pend.size, dtype=bool)
        not_picked[pick_pos] = False
        rest, rest_run = pend[not_picked], run_id[not_picked]
        if max_per_group is not None:
            emitted_count[groups[picks]] += 1  # one pick per group: no repeated indices
            open_group = emitted_count[groups[rest]] < max_per_group
            rest, rest_run = rest[open_group], rest_run[open_group]
        if not rest.size:
            break
        top = picks[rest_run]
        top_start, top_end = start[top], end[top]
        iou = _iou_cols(start[rest], end[rest], top_start, top_end, 0.0)
        if iou_threshold_high is None:
            gate = iou > iou_threshold
        else:  # BSN: the gate rises with the picked segment's width
            gate = iou > iou_threshold + (iou_threshold_high - iou_threshold) * (top_end - top_start)
        factor = 1.0 - iou if method == "linear" else np.exp(-(iou * iou) / sigma)
        decayed = np.where(gate, current[rest] * factor, current[rest])
        current[rest] = decayed
        if min_score is not None:
            rest = rest[decayed >= min_score]
        pend = rest
    keep = _sort_by_score(np.concatenate(emitted), current) if emitted else np.zeros(0, dtype=np.int64)
    return keep, current[keep]


# --------------------------------------------------------------------------------------------- #
# Block kernel for large groups: each step touches only the picked candidate's overlap window
# --------------------------------------------------------------------------------------------- #

_BLOCK = 32  # candidates per block (the unit whose best candidate is cached)
_BLOCK_MIN_GROUP = 128  # groups with at least this many candidates go through the block kernel


def _spans(first: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(first[i], first[i] + length[i])`` over i (lengths >= 0)."""
    total = int(length.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(length)
    return np.arange(total, dtype=np.int64) + np.repeat(first - (ends - length), length)


def _block_nms(
    start: np.ndarray,
    end: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    method: str,
    sigma: float,
    iou_threshold: float,
    iou_threshold_high: float | None,
    min_score: float | None,
    max_per_group: int | None,
    keep_last: bool,
    length_offset: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy hard NMS (``method="hard"``) or soft-NMS, exact; (emitted indices, emission scores), unsorted.

    Candidates must already pass ``min_score``. The greedy sequence is the same as the round
    kernels' (and the plain loop's); only the bookkeeping differs:

    * Candidates are sorted by (group, start). A pick can only change candidates that overlap it
      (IoU 0 never passes a gate >= 0; a negative BSN gate multiplies by exactly 1), and those lie
      in one contiguous *window* of that order, found once for all by binary search (the end bound
      on the starts, the start bound on the running maximum of the ends).
    * The overlap graph splits each group into *components* (runs whose start passes every earlier
      end). Components never interact, so each one is a unit that emits its own best candidate per
      round: every round picks once in every live component.
    * Each component is padded to whole blocks of ``_BLOCK`` slots, and every block caches its best
      candidate (score desc, index asc). A unit's best is the best of its block bests; after a pick
      only the blocks of its window are recomputed. A round therefore costs
      O(#blocks + window sizes), not O(#pending).
    * Decays from different components never meet, so each candidate is multiplied by at most one
      factor per round, in the same floating-point order as the sequential loop.
    * Per-class caps and AFSD's ``keep_last=False`` are group rules; the greedy order of a group is
      its components' emissions merged by (score desc, index asc), so they are applied afterwards
      (see the end of this function).

    The coordinate shift ``x + group * span`` makes one sorted array serve all groups; rounding
    can only widen a window or merge components (both harmless), never cut a true overlap.
    """
    n = scores.size
    b = _BLOCK
    hard = method == "hard"
    off = float(length_offset)
    order = np.argsort(start)  # then a stable sort by group: (group, start), in O(n) for small group ids
    group_key = groups[order]
    if int(group_key.max()) < np.iinfo(np.int16).max:
        group_key = group_key.astype(np.int16)
    order = order[np.argsort(group_key, kind="stable")]
    s, e, g = start[order], end[order], groups[order]
    low = min(float(s.min()), float(e.min()))
    high = max(float(s.max()), float(e.max())) + off
    shift = g.astype(np.float64) * (2.0 * (high - low) + 1.0)
    ts = s + shift
    te = (e + off) + shift
    reach = np.maximum.accumulate(te)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.logical_or(g[1:] != g[:-1], ts[1:] > reach[:-1], out=first[1:])
    cstart = np.flatnonzero(first)
    csize = np.diff(np.append(cstart, n))
    cid = np.cumsum(first) - 1

    nblk = -(-csize // b)
    ubs = np.zeros(csize.size, dtype=np.int64)  # first block of each unit (component)
    np.cumsum(nblk[:-1], out=ubs[1:])
    ub = np.repeat(np.arange(csize.size), nblk)  # unit of each block
    pos = np.arange(n) + (ubs * b - cstart)[cid]
    npad = int(nblk.sum()) * b
    S = np.zeros(npad)
    E = np.zeros(npad)
    C = np.full(npad, -np.inf)  # current score; -inf = padding, emitted, suppressed or dropped
    I = np.full(npad, n, dtype=np.int64)
    J = np.zeros(npad, dtype=np.int64)  # sorted position of each slot (windows are found per pick)
    S[pos], E[pos], C[pos], I[pos], J[pos] = s, e, scores[order], order, np.arange(n)
    LEN = (E - S) + off
    unit_lo, unit_hi, unit_delta = cstart, cstart + csize, ubs * b - cstart
    C2, I2 = C.reshape(-1, b), I.reshape(-1, b)
    num_blocks = C2.shape[0]
    bmax = np.empty(num_blocks)
    bidx = np.empty(num_blocks, dtype=np.int64)
    bpos = np.empty(num_blocks, dtype=np.int64)

    def refresh(blocks: np.ndarray) -> None:
        values = C2[blocks]
        best = values.max(axis=1)
        key = np.where(values == best[:, None], I2[blocks], n)
        col = key.argmin(axis=1)
        bmax[blocks] = best
        bidx[blocks] = key[np.arange(blocks.size), col]
        bpos[blocks] = blocks * b + col

    refresh(np.arange(num_blocks))
    count = np.zeros(csize.size, dtype=np.int64)
    emitted: list[np.ndarray] = []
    values_out: list[np.ndarray] = []
    units_out: list[np.ndarray] = []
    dropped_out: list[np.ndarray] = []
    while True:
        unit_best = np.maximum.reduceat(bmax, ubs)
        live = unit_best > -np.inf
        if max_per_group is not None:
            live &= count < max_per_group
        if not live.any():
            break
        tied = live[ub] & (bmax == unit_best[ub])
        key = np.where(tied, bidx, n)
        blocks = np.flatnonzero(tied & (bidx == np.minimum.reduceat(key, ubs)[ub]))  # one per live unit
        picks = bpos[blocks]
        emitted.append(I[picks])
        values_out.append(bmax[blocks])
        units = ub[blocks]
        units_out.append(units)
        count[units] += 1
        C[picks] = -np.inf
        j = J[picks]
        lo_p = np.maximum(np.searchsorted(reach, ts[j], side="left"), unit_lo[units]) + unit_delta[units]
        hi_p = np.minimum(np.searchsorted(ts, te[j], side="right"), unit_hi[units]) + unit_delta[units]
        width = np.maximum(hi_p - lo_p, 0)
        others = _spans(lo_p, width)
        # Same arithmetic as _iou_cols, restricted to pending candidates with a positive intersection
        # (the only ones a pick can change; for them the union is positive too).
        top_start, top_end = np.repeat(S[picks], width), np.repeat(E[picks], width)
        inter = np.minimum(E[others], top_end) - np.maximum(S[others], top_start) + off
        touched = (inter > 0.0) & (C[others] > -np.inf)
        others, inter = others[touched], inter[touched]
        owner = np.repeat(np.arange(picks.size), width)[touched]
        top_len = LEN[picks][owner]
        iou = inter / ((LEN[others] + top_len) - inter)
        dropped = np.zeros(picks.size, dtype=bool)
        if hard:
            C[others[iou > iou_threshold]] = -np.inf
        else:
            if iou_threshold_high is None:
                gate = iou > iou_threshold
            else:
                gate = iou > iou_threshold + (iou_threshold_high - iou_threshold) * (top_len - off)
            factor = 1.0 - iou if method == "linear" else np.exp(-(iou * iou) / sigma)
            current = C[others]
            decayed = np.where(gate, current * factor, current)
            if min_score is not None:
                below = decayed < min_score
                decayed[below] = -np.inf
                dropped[owner[below]] = True
            C[others] = decayed
        first_block = np.minimum(lo_p, picks) // b
        last_block = np.maximum(hi_p - 1, picks) // b
        refresh(_spans(first_block, last_block - first_block + 1))
        dropped_out.append(dropped)

    keep = np.concatenate(emitted)
    value = np.concatenate(values_out)
    if max_per_group is None and keep_last:
        return keep, value
    # Group rules on the merged greedy order (group asc, score desc, index asc).
    group = g[cstart][np.concatenate(units_out)]
    ranked = np.lexsort((keep, -value, group))
    run = _run_starts(group[ranked])
    run_first = np.flatnonzero(run)
    run_size = np.diff(np.append(run_first, ranked.size))
    mask = np.ones(keep.size, dtype=bool)
    if not keep_last:
        # The greedy loop stops when exactly one candidate is pending, i.e. before its last pick L
        # when no other candidate was still pending then: none that L itself drops. That pick only
        # happens if the cap did not stop the group first (it emits at most max_per_group).
        last = ranked[run_first + run_size - 1]
        quiet = ~np.concatenate(dropped_out)[last]
        if max_per_group is not None:
            capped_with_pending = (count >= max_per_group) & (unit_best > -np.inf)
            overflow = np.zeros(int(group.max()) + 1, dtype=bool)
            overflow[g[cstart][capped_with_pending]] = True
            quiet &= ~overflow[group[last]] & (run_size <= max_per_group)
        mask[last[quiet]] = False
    if max_per_group is not None:
        rank = np.arange(ranked.size) - np.repeat(run_first, run_size)
        mask[ranked[rank >= max_per_group]] = False
    return keep[mask], value[mask]


# --------------------------------------------------------------------------------------------- #
# Compiled sequential kernel (tadkit.postprocess.nms_native): the plain greedy loop, one group at a time
# --------------------------------------------------------------------------------------------- #

# ``TADKIT_NMS_JIT``: "1" / "on" always runs the compiled kernel (compiling it first if this machine
# has no cached copy), "0" / "off" always the NumPy kernels above; "auto" (default) decides from the
# work a call brings, never from time spent. Loading the cached machine code costs a process ~0.1 s
# (about what the NumPy kernels spend on 10-20 calls of 2,000 candidates; the compiled kernel is
# 3-7x faster), so with a warm cache "auto" loads it for the first call of
# ``_WARM_MIN_CANDIDATES`` candidates or more. Compiling (no cached copy yet: first use on a machine,
# or a new numba / CPU) costs several seconds, so "auto" does that only for a call of
# ``_COLD_MIN_CANDIDATES`` or more; ``python -m tadkit.postprocess.nms_native`` builds the cache ahead.
# Once loaded, the kernel serves every call of the process.
_WARM_MIN_CANDIDATES = 1_000
_COLD_MIN_CANDIDATES = 250_000
_jit_state: dict[str, Any] = {}  # "kernel": the loaded kernel or None (failed); "cold": no cached copy here


def _jit_kernel(n: int) -> Any:
    """The compiled kernel when it should run for a call of ``n`` candidates, else None (NumPy kernels).

    Nothing compiled is imported before a call wants it (never at ``import tadkit``). If numba or
    llvmlite is missing or fails, the NumPy kernels run (same results).
    """
    mode = os.environ.get("TADKIT_NMS_JIT", "auto").strip().lower()
    if mode in ("0", "off", "false", "no", "numpy"):
        return None
    if "kernel" in _jit_state:
        return _jit_state["kernel"]
    forced = mode in ("1", "on", "true", "yes", "numba")
    if not forced and n < _WARM_MIN_CANDIDATES:
        return None
    if not _jit_state.get("cold"):
        kernel = _load_cached_kernel()
        if kernel is not None:
            _jit_state["kernel"] = kernel
            return kernel
        _jit_state["cold"] = True  # look once per process
    if not (forced or n >= _COLD_MIN_CANDIDATES):
        return None
    _jit_state["kernel"] = _build_kernel()
    return _jit_state["kernel"]


def _load_cached_kernel() -> Any:
    from tadkit.postprocess import nms_native

    return nms_native.load_cached() if nms_native.may_be_cached() else None


def _build_kernel() -> Any:
    """Compile (numba), cache and load the kernel; None (NumPy kernels, one RuntimeWarning) on failure."""
    try:
        from tadkit.postprocess import nms_native

        return nms_native.build()
    except ImportError:  # numba / llvmlite not installed, or broken against this NumPy
        return None
    except Exception as error:
        warnings.warn(f"tadkit NMS: compiled kernel unavailable ({type(error).__name__}: {error}); "
                      "using the NumPy kernels", RuntimeWarning, stacklevel=4)
        return None


def _run_jit(kernel: Any, start: np.ndarray, end: np.ndarray, scores: np.ndarray, groups: np.ndarray,
             num_groups: int, method: str, sigma: float, iou_threshold: float, iou_threshold_high: float | None,
             min_score: float | None, max_per_group: int | None, keep_last: bool,
             length_offset: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Run the compiled loop; (input indices, emission scores) in emission order.

    ``groups`` are dense ids in ``[0, num_groups)``. Returns None (the caller falls back to the NumPy
    kernels, after one RuntimeWarning) when the kernel fails.
    """
    f64, i64 = partial(np.ascontiguousarray, dtype=np.float64), partial(np.ascontiguousarray, dtype=np.int64)
    args = (  # fixed dtypes and layouts: the kernel reads raw buffers
        f64(start), f64(end), f64(scores), i64(groups), int(num_groups), i64(np.argsort(start)),
        {"hard": 0, "linear": 1, "gaussian": 2}[method], float(sigma), float(iou_threshold),
        iou_threshold_high is not None, float(iou_threshold_high or 0.0),
        -np.inf if min_score is None else float(min_score), -1 if max_per_group is None else int(max_per_group),
        bool(keep_last), float(length_offset),
    )
    try:
        return kernel(*args)
    except Exception as error:
        _jit_state["kernel"] = None
        warnings.warn(f"tadkit NMS: compiled kernel unavailable ({type(error).__name__}: {error}); "
                      "using the NumPy kernels", RuntimeWarning, stacklevel=3)
        return None


def _split_by_group_size(groups: np.ndarray, rows: np.ndarray, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` split into (rows of groups with >= _BLOCK_MIN_GROUP rows, the others)."""
    sizes = np.bincount(groups[rows], minlength=num_groups)
    big = sizes[groups[rows]] >= _BLOCK_MIN_GROUP
    return rows[big], rows[~big]


def _hard_nms_kernel(
    start: np.ndarray,
    end: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    iou_threshold: float,
    max_per_group: int | None,
    length_offset: float,
) -> np.ndarray:
    """Greedy hard NMS inside each group; kept indices sorted by score desc (ties: index asc)."""
    n = scores.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    num_groups = int(groups.max()) + 1
    kernel = _jit_kernel(n)
    if kernel is not None:
        result = _run_jit(kernel, start, end, scores, groups, num_groups, "hard", 0.5, iou_threshold, None, None,
                          max_per_group, True, length_offset)
        if result is not None:
            return _sort_by_score(result[0], scores)
    big, small = _split_by_group_size(groups, np.arange(n), num_groups)
    parts = []
    if big.size:
        kept, _ = _block_nms(start[big], end[big], scores[big], groups[big], "hard", 0.5, iou_threshold, None,
                             None, max_per_group, True, length_offset)
        parts.append(big[kept])
    if small.size:
        parts.append(small[_hard_nms_rounds(start[small], end[small], scores[small], groups[small], iou_threshold,
                                            max_per_group, length_offset)])
    keep = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return _sort_by_score(keep, scores)


def _soft_nms_kernel(
    start: np.ndarray,
    end: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    num_groups: int,
    method: str,
    sigma: float,
    iou_threshold: float,
    iou_threshold_high: float | None,
    min_score: float | None,
    max_per_group: int | None,
    keep_last: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS inside each group; (emitted indices, decayed scores), score desc (ties: index asc)."""
    n = scores.size
    rows = np.arange(n) if min_score is None else np.flatnonzero(scores >= min_score)
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    kernel = _jit_kernel(rows.size)
    result = None if kernel is None else _run_jit(
        kernel, start, end, scores, groups, num_groups, method, sigma, iou_threshold, iou_threshold_high,
        min_score, max_per_group, keep_last, 0.0)
    if result is not None:
        keep, value = result
        order = np.lexsort((keep, -value))
        return keep[order], value[order]
    big, small = _split_by_group_size(groups, rows, num_groups)
    keep_parts, value_parts = [], []
    if big.size:
        kept, value = _block_nms(start[big], end[big], scores[big].astype(np.float64), groups[big], method, sigma,
                                 iou_threshold, iou_threshold_high, min_score, max_per_group, keep_last, 0.0)
        keep_parts.append(big[kept])
        value_parts.append(value)
    if small.size:
        kept, value = _soft_nms_rounds(start[small], end[small], scores[small], groups[small], num_groups, method,
                                       sigma, iou_threshold, iou_threshold_high, min_score, max_per_group, keep_last)
        keep_parts.append(small[kept])
        value_parts.append(value)
    keep, value = np.concatenate(keep_parts), np.concatenate(value_parts)
    order = np.lexsort((keep, -value))
    return keep[order], value[order]


# --------------------------------------------------------------------------------------------- #
# Public torch API
# --------------------------------------------------------------------------------------------- #


def segment_iou(a: Tensor, b: Tensor, length_offset: float = 0.0) -> Tensor:
    """Element-wise tIoU of rows ``a[i]`` and ``b[i]`` ((N, 2) each) -> (N,) float64.

    Same definition as :func:`tadkit.ops.tiou_pairwise_torch` (0 where the union is not positive);
    ``length_offset`` adds a constant to lengths and intersection (ECM's ``+1`` convention).
    """
    a_np = a.detach().to("cpu", torch.float64).numpy()
    b_np = b.detach().to("cpu", torch.float64).numpy()
    out = _iou_cols(a_np[:, 0], a_np[:, 1], b_np[:, 0], b_np[:, 1], length_offset)
    return torch.from_numpy(out).to(a.device)


def nms(
    segments: Tensor,
    scores: Tensor,
    iou_threshold: float,
    max_keep: int | None = None,
    *,
    length_offset: float = 0.0,
) -> Tensor:
    """Class-agnostic hard NMS. Returns kept indices (int64) sorted by score desc."""
    return batched_nms(segments, scores, None, iou_threshold, max_keep, length_offset=length_offset)


def batched_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor | None,
    iou_threshold: float,
    max_per_class: int | None = None,
    *,
    length_offset: float = 0.0,
) -> Tensor:
    """Per-class hard NMS: suppression only between segments of the same label.

    Args:
        segments: (N, 2) [start, end], any unit.
        scores: (N,).
        labels: (N,) integer class ids (any values); ``None`` = one class.
        iou_threshold: a candidate survives when its IoU with every kept one is ``<= iou_threshold``.
        max_per_class: keep at most this many per class (the best ones); ``None`` = no cap.
        length_offset: ECM's ``+1`` length convention (0 = plain tIoU).

    Returns:
        (K,) int64 indices into the inputs, sorted by score desc (ties: lower index first).
    """
    _check_params("hard", iou_threshold, 0.5, None, max_per_class, length_offset, None)
    start, end, sc, lab = _tensor_inputs(segments, scores, labels)
    groups, _ = _dense(lab, sc.size)
    keep = _hard_nms_kernel(start, end, sc, groups, iou_threshold, max_per_class, length_offset)
    return torch.from_numpy(keep).to(segments.device)


def soft_nms_indices(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor | None = None,
    method: Literal["gaussian", "linear"] = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.0,
    min_score: float | None = 0.001,
    max_per_class: int | None = None,
    *,
    iou_threshold_high: float | None = None,
    keep_last: bool = True,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS per class; returns (indices of the emitted inputs, their decayed scores), score desc.

    See :func:`soft_nms` for the arguments.
    """
    _check_soft(method, iou_threshold, sigma, min_score, max_per_class, iou_threshold_high)
    start, end, sc, lab = _tensor_inputs(segments, scores, labels)
    groups, num_groups = _dense(lab, sc.size)
    keep, new_scores = _soft_nms_kernel(start, end, sc, groups, num_groups, method, sigma, iou_threshold,
                                        iou_threshold_high, min_score, max_per_class, keep_last)
    out_dtype = scores.dtype if scores.is_floating_point() else torch.float64
    return torch.from_numpy(keep).to(segments.device), torch.from_numpy(new_scores).to(scores.device, out_dtype)


def soft_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor | None = None,
    method: Literal["gaussian", "linear"] = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.0,
    min_score: float | None = 0.001,
    max_per_class: int | None = None,
    *,
    iou_threshold_high: float | None = None,
    keep_last: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Soft-NMS (Bodla et al. 2017) per class, as AFSD and BSN/mmaction2 run it.

    Repeatedly emit the highest-scoring pending candidate of each class and decay the others of
    that class: Gaussian ``s *= exp(-iou**2 / sigma)`` or linear ``s *= 1 - iou``, only where
    ``iou > iou_threshold``.

    Args:
        segments, scores, labels: (N, 2), (N,), (N,) or None (one class).
        method: "gaussian" or "linear".
        sigma: Gaussian divisor (AFSD 0.5; ACRNet's mmaction2 ``alpha`` 0.5 / 0.8).
        iou_threshold: decay gate (0 = decay everything that overlaps, AFSD).
        min_score: drop candidates whose (decayed) score falls below it; ``None`` keeps all.
        max_per_class: emit at most this many per class (AFSD 5000).
        iou_threshold_high: BSN's width-dependent gate (see :class:`NMSConfig`).
        keep_last: ``False`` = AFSD's loop, which never emits a class's last pending candidate.

    Returns:
        (segments (K, 2), decayed scores (K,), labels (K,) or None), sorted by decayed score desc.
    """
    keep, new_scores = soft_nms_indices(
        segments, scores, labels, method, sigma, iou_threshold, min_score, max_per_class,
        iou_threshold_high=iou_threshold_high, keep_last=keep_last,
    )
    pick = partial(torch.index_select, dim=0, index=keep)
    return pick(segments), new_scores, None if labels is None else pick(labels)


def _check_soft(method: str, iou_threshold: float, sigma: float, min_score: float | None,
                max_per_class: int | None, iou_threshold_high: float | None) -> None:
    if method not in ("gaussian", "linear"):
        raise TadkitError(f"soft-NMS method must be 'gaussian' or 'linear', got {method!r}", field="method")
    _check_params(method, iou_threshold, sigma, min_score, max_per_class, 0.0, iou_threshold_high)


# --------------------------------------------------------------------------------------------- #
# NumPy API
# --------------------------------------------------------------------------------------------- #


def nms_numpy(segments: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None,
              *, length_offset: float = 0.0) -> np.ndarray:
    """NumPy version of :func:`nms` (kept indices, score desc)."""
    return batched_nms_numpy(segments, scores, None, iou_threshold, max_keep, length_offset=length_offset)


def batched_nms_numpy(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray | None, iou_threshold: float,
                      max_per_class: int | None = None, *, length_offset: float = 0.0) -> np.ndarray:
    """NumPy version of :func:`batched_nms` (kept indices, score desc)."""
    _check_params("hard", iou_threshold, 0.5, None, max_per_class, length_offset, None)
    start, end, sc, lab = _array_inputs(segments, scores, labels)
    groups, _ = _dense(lab, sc.size)
    return _hard_nms_kernel(start, end, sc, groups, iou_threshold, max_per_class, length_offset)


def soft_nms_numpy(
    segments: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    method: Literal["gaussian", "linear"] = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.0,
    min_score: float | None = 0.001,
    max_per_class: int | None = None,
    *,
    iou_threshold_high: float | None = None,
    keep_last: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy version of :func:`soft_nms_indices`: (emitted indices, decayed scores), score desc."""
    _check_soft(method, iou_threshold, sigma, min_score, max_per_class, iou_threshold_high)
    start, end, sc, lab = _array_inputs(segments, scores, labels)
    groups, num_groups = _dense(lab, sc.size)
    return _soft_nms_kernel(start, end, sc, groups, num_groups, method, sigma, iou_threshold, iou_threshold_high,
                            min_score, max_per_class, keep_last)


# --------------------------------------------------------------------------------------------- #
# Whole detection sets
# --------------------------------------------------------------------------------------------- #


def first_appearance_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer code per row, numbered by first appearance (so output order follows input order)."""
    values = np.asarray(values)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64), 0
    if values.dtype == object:  # strings: dict lookups run in C and beat sorting Python objects ~3x
        items = values.tolist()
        code = {key: i for i, key in enumerate(dict.fromkeys(items))}
        return np.fromiter(map(code.__getitem__, items), dtype=np.int64, count=len(items)), len(code)
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[inverse.reshape(-1)], len(uniq)


def rank_within_groups(groups: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order rows by (group asc, score desc, index asc) and give each row its 0-based rank in its group.

    Returns ``(order, rank)`` where ``rank[i]`` is row ``i``'s rank (aligned with the input rows).
    """
    groups = np.asarray(groups)
    scores = np.asarray(scores, dtype=np.float64)
    n = len(groups)
    order = np.lexsort((np.arange(n), -scores, groups))
    group_start = np.maximum.accumulate(np.where(_run_starts(groups[order]), np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    return order, rank


def _check_detection_set(dets: DetectionSet) -> None:
    if not isinstance(dets, DetectionSet):
        raise TadkitError(f"expected a DetectionSet, got {type(dets).__name__}", field="detections")
    for name in ("start", "end", "score"):
        column = getattr(dets, name)
        bad = ~np.isfinite(column)
        if bad.any():
            row = int(np.argmax(bad))
            raise TadkitError(f"non-finite value {column[row]!r} (row {row})", video=str(dets.video[row]), field=name)


def _resolve(config: NMSConfig | str | None, overrides: Mapping[str, Any]) -> NMSConfig:
    if config is None:
        config = NMSConfig()
    elif isinstance(config, str):
        if config not in NMS_PRESETS:
            raise TadkitError(f"unknown NMS preset {config!r}; choose one of {sorted(NMS_PRESETS)}", field="nms")
        config = NMS_PRESETS[config]
    elif not isinstance(config, NMSConfig):
        raise TadkitError(f"expected an NMSConfig or preset name, got {type(config).__name__}", field="nms")
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in fields(NMSConfig)})
        if unknown:
            raise TadkitError(f"unknown NMS option(s) {unknown}", field="nms")
        config = replace(config, **overrides)
    return config


def nms_detection_set(dets: DetectionSet, config: NMSConfig | str | None = None, **overrides: Any) -> DetectionSet:
    """Apply one NMS recipe to every video of a detection set in a single vectorized pass.

    ``config`` is an :class:`NMSConfig`, a preset name from :data:`NMS_PRESETS`, or ``None``
    (defaults); keyword ``overrides`` replace its fields, e.g.
    ``nms_detection_set(dets, "a2net", max_per_video=100)``.

    Groups are (video, label), or video alone with ``class_agnostic=True``; all groups of all
    videos go through one kernel call. After NMS, ``max_per_video`` keeps the best rows of each
    video. Output rows are ordered by video (first appearance in ``dets``), then score desc (ties:
    input order); soft-NMS scores are the decayed ones.
    """
    config = _resolve(config, overrides)
    _check_detection_set(dets)
    if len(dets) == 0:
        return DetectionSet.empty()

    video_code, _ = first_appearance_codes(dets.video)
    if config.class_agnostic:
        groups = video_code
    else:
        label_code, num_labels = first_appearance_codes(dets.label)
        groups = video_code * num_labels + label_code
    num_groups = int(groups.max()) + 1

    scores = dets.score
    candidates = np.arange(len(dets))
    if config.min_score is not None and config.method in ("hard", "none"):
        candidates = np.flatnonzero(scores >= config.min_score)
    if config.method == "hard":
        local = _hard_nms_kernel(dets.start[candidates], dets.end[candidates], scores[candidates],
                                 groups[candidates], config.iou_threshold, config.max_per_class, config.length_offset)
        keep = candidates[local]
    elif config.method == "none":
        keep = candidates
        if config.max_per_class is not None:
            _, rank = rank_within_groups(groups[keep], scores[keep])
            keep = keep[rank < config.max_per_class]
    else:
        keep, decayed = _soft_nms_kernel(
            dets.start, dets.end, scores, groups, num_groups, config.method, config.sigma, config.iou_threshold,
            config.iou_threshold_high, config.min_score, config.max_per_class, config.keep_last,
        )
        scores = scores.copy()
        scores[keep] = decayed

    if config.max_per_video is not None and len(keep):
        _, rank = rank_within_groups(video_code[keep], scores[keep])
        keep = keep[rank < config.max_per_video]
    keep = keep[np.lexsort((keep, -scores[keep], video_code[keep]))]
    return DetectionSet(dets.video[keep], dets.start[keep], dets.end[keep], dets.label[keep], scores[keep])
