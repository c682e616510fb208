"""Class activation sequences (CAS) -> scored temporal segments, for weakly supervised methods.

The recipe shared by ECM and ACRNet (and the W-TALC family before them):

1. normalise / stretch the per-class score sequence to the output time grid
   (:func:`minmax_normalize`, :func:`resize_linear_centers`, :func:`resize_linear_extrapolate`);
2. for several thresholds, every maximal run of consecutive above-threshold points is a proposal
   (:func:`find_runs`, vectorized with ``np.diff`` over all thresholds x classes at once);
3. score each run by outer-inner contrast: mean inside - mean of a margin of ``lambda * length``
   on both sides, plus ``gamma`` x the video-level class score (:func:`cas_proposals`);
4. per-class NMS (:func:`localize_from_cas` uses :mod:`tadkit.postprocess.nms`).

The details that differ between the official codes are named options of :class:`CASProposalConfig`
and the presets in :data:`CAS_PRESETS` set them as each code does (see ``ecm.md`` / ``acrnet.md``).
Time is always the **last** axis: CAS arrays are (C, T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.data.records import DetectionSet
from tadkit.postprocess.nms import NMSConfig, nms_detection_set

__all__ = [
    "check_flags",
    "check_numbers",
    "check_threshold_range",
    "find_runs",
    "minmax_normalize",
    "resize_linear_centers",
    "resize_linear_extrapolate",
    "select_classes",
    "CASProposalConfig",
    "CASProposals",
    "CAS_PRESETS",
    "cas_proposals",
    "localize_from_cas",
]


# --------------------------------------------------------------------------------------------- #
# Building blocks
# --------------------------------------------------------------------------------------------- #


def find_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of ``True`` along the last axis of a 1-D (T,) or 2-D (R, T) boolean array.

    Returns ``(row, start, end)`` int64 arrays, ``end`` inclusive, ordered by row then start
    (a 1-D input is row 0).
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 1:
        m = m[None]
    if m.ndim != 2:
        raise TadkitError(f"expected a 1-D or 2-D mask, got shape {m.shape}", field="mask")
    padded = np.zeros((m.shape[0], m.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = m
    step = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past where it ends
    rows, starts = np.nonzero(step == 1)
    _, stops = np.nonzero(step == -1)  # row-major order: aligned with the starts
    return rows.astype(np.int64), starts.astype(np.int64), stops.astype(np.int64) - 1


def minmax_normalize(cas: np.ndarray, axis: int = -1) -> np.ndarray:
    """ECM's per-class normalisation: ``(x - relu(min)) / (relu(max) - relu(min))``.

    The range is 1 where ``relu(max) <= relu(min)``; the input is not clipped, so negative logits
    map below 0 when the minimum is clipped to 0 (as in the official code).
    """
    x = np.asarray(cas, dtype=np.float64)
    hi = np.maximum(x.max(axis=axis, keepdims=True), 0.0)
    lo = np.maximum(x.min(axis=axis, keepdims=True), 0.0)
    span = hi - lo
    return (x - lo) / np.where(span <= 0, 1.0, span)


def _check_resize(x: np.ndarray, length: int, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise TadkitError(f"needs at least one time step, got shape {arr.shape}", field=name)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise TadkitError(f"output length must be a positive integer, got {length!r}", field="length")
    return arr


def resize_linear_centers(x: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of the last axis to ``length`` with pixel-centre alignment (OpenCV
    ``INTER_LINEAR``, what ECM's ``cv2.resize`` does): output ``i`` samples input position
    ``(i + 0.5) * T / length - 0.5``, clamped to the end samples (no extrapolation). Matches
    ``cv2.resize`` on float32 input to ~1e-6 (float64 output)."""
    arr = _check_resize(x, length, "cas")
    t = arr.shape[-1]
    # OpenCV computes the source position in float32 (scale = 1 / (dst / src) in double); keeping
    # that rounding matters: float64 positions drift up to ~1e-4 from cv2 on 750 -> 5000 steps.
    scale = 1.0 / (length / t)
    pos = ((np.arange(length, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    left = np.floor(pos).astype(np.int64)
    frac = pos - left.astype(np.float32)
    frac[left < 0] = 0.0
    left = np.clip(left, 0, t - 1)
    frac[left >= t - 1] = 0.0
    right = np.minimum(left + 1, t - 1)
    weight_left = (np.float32(1.0) - frac).astype(np.float64)
    return arr[..., left] * weight_left + arr[..., right] * frac.astype(np.float64)


def resize_linear_extrapolate(x: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of the last axis to ``length`` as ACRNet's ``revert_frame`` does:
    output ``f`` samples input position ``f * T / length`` (left-aligned) and positions past the
    last sample extrapolate the last segment's slope (``scipy interp1d(fill_value="extrapolate")``)."""
    arr = _check_resize(x, length, "cas")
    t = arr.shape[-1]
    if t == 1:
        return np.repeat(arr, length, axis=-1)
    pos = np.arange(length, dtype=np.float64) * t / length
    left = np.clip(np.floor(pos).astype(np.int64), 0, t - 2)
    frac = pos - left
    lo, hi = arr[..., left], arr[..., left + 1]
    return lo + (hi - lo) * frac


def select_classes(video_scores: np.ndarray, threshold: float, *, fallback_top1: bool = False) -> np.ndarray:
    """Indices of classes whose video-level score is ``>= threshold``.

    ``fallback_top1``: when none passes, return the arg-max class (ACRNet); ECM returns none.
    """
    scores = np.asarray(video_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0 or not np.isfinite(scores).all():
        raise TadkitError("video-level class scores must be a non-empty finite vector", field="class_scores")
    chosen = np.flatnonzero(scores >= threshold)
    if chosen.size == 0 and fallback_top1:
        chosen = np.array([int(np.argmax(scores))], dtype=np.int64)
    return chosen.astype(np.int64)


# --------------------------------------------------------------------------------------------- #
# Multi-threshold grouping + outer-inner contrast
# --------------------------------------------------------------------------------------------- #


def check_numbers(options: Any, names: Sequence[str], prefix: str = "") -> None:
    """Each of ``names`` on ``options`` is a finite int/float (not a bool); else a TadkitError on ``prefix+name``."""
    for name in names:
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TadkitError(f"must be a finite number, got {value!r}", field=f"{prefix}{name}")


def check_flags(options: Any, names: Sequence[str], prefix: str = "") -> None:
    """Each of ``names`` on ``options`` is a bool; else a TadkitError on ``prefix+name``."""
    for name in names:
        if not isinstance(getattr(options, name), bool):
            raise TadkitError(f"must be true or false, got {getattr(options, name)!r}", field=f"{prefix}{name}")


def check_threshold_range(low: float, high: float, step: float, field: str) -> None:
    """``arange(low, high, step)`` must hold at least one threshold."""
    if step <= 0 or high <= low:
        raise TadkitError(f"empty threshold range arange({low}, {high}, {step})", field=field)


@dataclass(frozen=True)
class CASProposalConfig:
    """How runs are found and scored. Defaults are neutral; :data:`CAS_PRESETS` hold the methods.

    * ``thresholds``: run thresholds, applied one by one to the same sequence.
    * ``rule``: ``"at_least"``: a point is foreground when ``v >= thr`` (ACRNet).
      ``"zero_below"``: values ``< thr`` are set to 0 and the foreground is what stays ``> 0`` (ECM;
      differs only at ``thr <= 0``, e.g. ECM's ActivityNet threshold 0).
    * ``min_length``: shortest run kept, in points (ACRNet keeps runs of >= 2 frames).
    * ``outer_lambda``: the outer margin on each side is ``int(lambda * length)`` points
      (``int`` truncation of ``start - lambda*L`` and ``end + lambda*L``, clipped to the sequence).
    * ``outer_right_inclusive``: ACRNet's right margin ends at ``min(T-1, int(end + lambda*L))``
      inclusive; ECM's at ``min(T, int(end + lambda*L))`` exclusive (one point shorter).
    * ``contrast_on``: ``"raw"`` scores (ACRNet) or the ``"thresholded"`` sequence with values
      below the threshold zeroed (ECM) for the inner and outer means.
    * ``gamma``: weight of the video-level class score added to each proposal score.
    * ``skip_if_only_first``: ECM's ``if any(position)`` quirk: a threshold whose only foreground
      point is index 0 yields nothing.
    * ``start_offset`` / ``end_offset``: times are ``(start + start_offset) / rate`` and
      ``(end + end_offset) / rate`` (ECM 0 / 1, ACRNet 1 / 2).
    """

    thresholds: tuple[float, ...] = (0.5,)
    rule: Literal["at_least", "zero_below"] = "at_least"
    min_length: int = 1
    outer_lambda: float = 0.25
    outer_right_inclusive: bool = False
    contrast_on: Literal["raw", "thresholded"] = "raw"
    gamma: float = 0.0
    skip_if_only_first: bool = False
    start_offset: float = 0.0
    end_offset: float = 1.0

    def __post_init__(self) -> None:
        thresholds = tuple(float(t) for t in np.asarray(self.thresholds, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "thresholds", thresholds)
        if not thresholds or not all(math.isfinite(t) for t in thresholds):
            raise TadkitError("needs at least one finite threshold", field="thresholds")
        if self.rule not in ("at_least", "zero_below"):
            raise TadkitError(f"rule must be 'at_least' or 'zero_below', got {self.rule!r}", field="rule")
        if self.contrast_on not in ("raw", "thresholded"):
            raise TadkitError(f"must be 'raw' or 'thresholded', got {self.contrast_on!r}", field="contrast_on")
        min_length = self.min_length
        if isinstance(min_length, bool) or not isinstance(min_length, (int, np.integer)) or min_length < 1:
            raise TadkitError(f"must be a positive integer, got {self.min_length!r}", field="min_length")
        check_numbers(self, ("outer_lambda", "gamma", "start_offset", "end_offset"))
        if self.outer_lambda < 0:
            raise TadkitError(f"must be >= 0, got {self.outer_lambda}", field="outer_lambda")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, file: str | None = None) -> "CASProposalConfig":
        """From a YAML mapping; ``preset: name`` starts from :data:`CAS_PRESETS`, other keys override."""
        if not isinstance(data, Mapping):
            raise TadkitError(f"expected a mapping, got {type(data).__name__}", file=file, field="cas")
        data = dict(data)
        base = cls()
        if "preset" in data:
            name = data.pop("preset")
            if name not in CAS_PRESETS:
                raise TadkitError(f"unknown CAS preset {name!r}; choose one of {sorted(CAS_PRESETS)}", file=file,
                                  field="cas.preset")
            base = CAS_PRESETS[name]
        reject_unknown_fields(cls, data, "key(s)", field="cas", file=file, known=None)
        try:
            return replace(base, **data)
        except TadkitError as error:
            raise TadkitError(error.message, file=file, field=f"cas.{error.field}") from None


CAS_PRESETS: dict[str, CASProposalConfig] = {
    # ECM THUMOS14: thr arange(0.01, 0.2, 0.025), lambda 0.4, gamma 0.15, times [s/fps, (e+1)/fps].
    "ecm_thumos": CASProposalConfig(
        thresholds=tuple(np.arange(0.01, 0.2, 0.025)), rule="zero_below", min_length=1, outer_lambda=0.4,
        outer_right_inclusive=False, contrast_on="thresholded", gamma=0.15, skip_if_only_first=True,
        start_offset=0.0, end_offset=1.0,
    ),
    # ECM ActivityNet: thr arange(0, 0.175, 0.025), lambda 0.5, gamma 0.45; rate = frame_num / duration.
    "ecm_anet": CASProposalConfig(
        thresholds=tuple(np.arange(0.0, 0.175, 0.025)), rule="zero_below", min_length=1, outer_lambda=0.5,
        outer_right_inclusive=False, contrast_on="thresholded", gamma=0.45, skip_if_only_first=True,
        start_offset=0.0, end_offset=1.0,
    ),
    # ACRNet: thr arange(0.1, 1.0, 0.05) on [0,1] frame scores, runs >= 2 frames, OIC on raw scores
    # (lambda 0.25, gamma 0.2), times [(s+1)/25, (e+2)/25].
    "acrnet": CASProposalConfig(
        thresholds=tuple(np.arange(0.1, 1.0, 0.05)), rule="at_least", min_length=2, outer_lambda=0.25,
        outer_right_inclusive=True, contrast_on="raw", gamma=0.2, skip_if_only_first=False,
        start_offset=1.0, end_offset=2.0,
    ),
}


@dataclass
class CASProposals:
    """Proposals in time-step units (``start``/``end`` inclusive indices of the CAS grid)."""

    label: np.ndarray  # (N,) int64 class index (row of the CAS)
    start: np.ndarray  # (N,) int64
    end: np.ndarray  # (N,) int64, inclusive
    score: np.ndarray  # (N,) float64
    threshold: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) the threshold that produced it

    def __len__(self) -> int:
        return len(self.label)

    def seconds(self, rate: float, config: CASProposalConfig) -> np.ndarray:
        """(N, 2) [start, end] seconds: ``(index + offset) / rate`` with the config's offsets."""
        if not math.isfinite(rate) or rate <= 0:
            raise TadkitError(f"rate must be a positive number of steps per second, got {rate}", field="rate")
        return np.stack([(self.start + config.start_offset) / rate, (self.end + config.end_offset) / rate], axis=1)


def _resolve_config(config: CASProposalConfig | str) -> CASProposalConfig:
    if isinstance(config, CASProposalConfig):
        return config
    if isinstance(config, str) and config in CAS_PRESETS:
        return CAS_PRESETS[config]
    raise TadkitError(f"expected a CASProposalConfig or one of {sorted(CAS_PRESETS)}, got {config!r}", field="cas")


def _check_cas(cas: np.ndarray) -> np.ndarray:
    arr = np.asarray(cas, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise TadkitError(f"expected a (C, T) class activation sequence, got shape {arr.shape}", field="cas")
    if not np.isfinite(arr).all():
        raise TadkitError("contains NaN or infinite values", field="cas")
    return arr


def cas_proposals(
    cas: np.ndarray,
    config: CASProposalConfig | str,
    class_scores: np.ndarray | None = None,
    classes: Sequence[int] | np.ndarray | None = None,
) -> CASProposals:
    """Multi-threshold run grouping + outer-inner-contrast scoring, all thresholds x classes at once.

    Args:
        cas: (C, T) scores on the output grid (already normalised / resized), or (T,) for one class.
        config: a :class:`CASProposalConfig` or a :data:`CAS_PRESETS` name.
        class_scores: (C,) video-level class scores for the ``gamma`` term (required if gamma != 0).
        classes: rows to process (e.g. :func:`select_classes`); ``None`` = all rows.

    Returns:
        :class:`CASProposals` ordered by class, threshold, start (the official per-class pooling order).
    """
    config = _resolve_config(config)
    values = _check_cas(cas)
    num_classes, length = values.shape
    rows = np.arange(num_classes) if classes is None else np.asarray(classes, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= num_classes):
        raise TadkitError(f"class index outside 0..{num_classes - 1}", field="classes")
    if class_scores is not None:
        class_scores = np.asarray(class_scores, dtype=np.float64).reshape(-1)
        if class_scores.shape[0] != num_classes or not np.isfinite(class_scores).all():
            raise TadkitError(f"expected {num_classes} finite video-level scores", field="class_scores")
    elif config.gamma != 0:
        raise TadkitError("class_scores are required when gamma != 0", field="class_scores")
    empty = CASProposals(*(np.zeros(0, np.int64),) * 3, np.zeros(0), np.zeros(0))
    if rows.size == 0:
        return empty

    v = values[rows]  # (C', T)
    thr = np.asarray(config.thresholds, dtype=np.float64)[:, None, None]  # (K, 1, 1)
    above = v[None] >= thr  # (K, C', T)
    foreground = above & (v[None] > 0) if config.rule == "zero_below" else above
    flat_fg = foreground.reshape(-1, length)
    run_row, start, end = find_runs(flat_fg)
    keep = (end - start + 1) >= config.min_length
    if config.skip_if_only_first:
        only_first = (flat_fg.sum(axis=1) == 1) & flat_fg[:, 0]
        keep &= ~only_first[run_row]
    run_row, start, end = run_row[keep], start[keep], end[keep]
    if run_row.size == 0:
        return empty
    k_index, c_index = np.divmod(run_row, len(rows))

    # Means via prefix sums: one cumsum per source row, then O(1) per run and region.
    if config.contrast_on == "thresholded":
        source = np.where(above, v[None], 0.0).reshape(-1, length)
        source_row = run_row
    else:
        source = v
        source_row = c_index
    prefix = np.zeros((source.shape[0], length + 1))
    np.cumsum(source, axis=1, out=prefix[:, 1:])

    run_len = end - start + 1
    inner = (prefix[source_row, end + 1] - prefix[source_row, start]) / run_len
    margin = config.outer_lambda * run_len
    left = np.maximum(0, np.trunc(start - margin).astype(np.int64))
    left = np.minimum(left, start)
    reach = np.trunc(end + margin).astype(np.int64)
    right_stop = np.minimum(length - 1, reach) + 1 if config.outer_right_inclusive else np.minimum(length, reach)
    right_stop = np.maximum(right_stop, end + 1)  # an empty right margin
    outer_count = (start - left) + (right_stop - end - 1)
    outer_sum = (prefix[source_row, start] - prefix[source_row, left]) + (
        prefix[source_row, right_stop] - prefix[source_row, end + 1]
    )
    outer = np.divide(outer_sum, outer_count, out=np.zeros_like(outer_sum), where=outer_count > 0)
    score = inner - outer
    labels = rows[c_index]
    if config.gamma != 0:
        score = score + config.gamma * class_scores[labels]

    order = np.lexsort((start, k_index, c_index))
    return CASProposals(
        label=labels[order],
        start=start[order],
        end=end[order],
        score=score[order],
        threshold=np.asarray(config.thresholds)[k_index[order]],
    )


def localize_from_cas(
    cas: np.ndarray,
    config: CASProposalConfig | str,
    rate: float,
    nms: NMSConfig | str,
    class_scores: np.ndarray | None = None,
    classes: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proposals -> seconds -> per-class NMS for one video.

    ``rate`` = CAS steps per second (ECM THUMOS: the video fps; ECM ActivityNet: T / duration;
    ACRNet: 25). ``nms``: an :class:`NMSConfig` or preset name (``"ecm_thumos"``, ``"acrnet_thumos"``...),
    applied per class (unless ``class_agnostic``) with its caps, as :func:`nms_detection_set` does.

    Returns ``(segments (N, 2) seconds, scores (N,), labels (N,) int64)``, sorted by score desc.
    """
    config = _resolve_config(config)
    props = cas_proposals(cas, config, class_scores, classes)
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise TadkitError(f"rate must be a number, got {rate!r}", field="rate") from None
    segments = props.seconds(rate, config)
    scores = props.score
    labels = props.label
    if len(props) == 0:
        return segments, scores, labels
    # One video: reuse the set-level NMS (groups = labels), which also applies the caps.
    dets = DetectionSet(np.full(len(props), "", dtype=object), segments[:, 0], segments[:, 1],
                        labels.astype(object), scores)
    out = nms_detection_set(dets, nms)
    return np.stack([out.start, out.end], axis=1), out.score, out.label.astype(np.int64)
