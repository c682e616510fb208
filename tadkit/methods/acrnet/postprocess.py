"""ACRNet segment scores -> segments in seconds (spec ``methods/acrnet.md`` §5; official ``main.py``
``test_loop`` with ``utils.py`` ``revert_frame``, ``grouping``, ``oic_score``, ``filter_results`` and
mmaction2's BSN-style ``soft_nms``).

Per video (:func:`localize`):

1. classes whose video score ``act`` (float32) is ``>= class_threshold``, ascending; if none, the arg-max;
2. frame scores: the (T', C) segment scores linearly interpolated to ``F = rate * n`` frames
   (``n`` = the video's original feature count, ``meta["num_features"]``) at positions
   ``f * T' / F``, extrapolating past the last segment (:func:`revert_frame`), clipped to [0, 1];
3. for each selected class and threshold in ``arange(thresh_min, thresh_max, thresh_step)`` (18 values):
   maximal runs of frames with score >= threshold, kept when >= ``min_frames`` long
   (:func:`tadkit.postprocess.cas.cas_proposals`, all thresholds x classes at once);
4. score = inner mean - outer mean (margins ``int(0.25 L)`` each side, right end inclusive, on the
   unthresholded frame scores) + ``gamma`` x act, the last product in float32 as the official code
   computes ``0.2 * act`` on a float32 NumPy scalar (NumPy >= 2 promotion rules);
5. times ``(start + 1) / fps`` and ``(end + 2) / fps`` (Q1 below), ``fps`` = 25 by default;
6. per class, BSN-style soft-NMS (:func:`bsn_soft_nms`, an exact re-statement of mmaction2's
   ``soft_nms(p, alpha, iou_th, iou_th, top_k=len(p))``).

Output order = the official prediction json: classes ascending, soft-NMS emission order within a class.

Quirks of the official code, reproduced by default, each with an option:

* Q1 ``frame_offsets`` (default True): start / end times are ``(s + 1) / fps`` and ``(e + 2) / fps`` for a
  run of frames s..e (one frame late at the start, one frame past the end); ``False`` gives the frame
  interval ``[s / fps, (e + 1) / fps)``.
* Q2 ``fps`` / ``rate``: the official features come from videos re-encoded at 25 fps, 16 frames per
  feature, and the code hard-codes both. tadkit's default (``null``) takes them from the features'
  own time mapping (features.json ``fps`` and ``stride_frames``, in the sample meta as ``feature_fps``
  and ``stride_frames``), which on the official features is the same 25 / 16; a sample that does not
  say (a direct call) falls back to 25 / 16. Numbers set explicitly are the official constants on
  request, and are checked against the features' mapping: a mismatch is an error naming the video,
  not seconds stretched by the ratio.
* Q3 soft-NMS gate: ``iou > low + (high - low) * width`` with low = high = ``iou_threshold`` collapses to
  ``iou > iou_threshold``; kept as is.
* THUMOS14 evaluation: the official test drops every prediction that overlaps any Ambiguous
  segment of its video (:func:`drop_ambiguous`). This is an evaluation choice, not part of
  :func:`localize`; the config key ``test.drop_ambiguous`` / ``tadkit eval --drop-ambiguous`` apply it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

import numpy as np

from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.postprocess.cas import CAS_PRESETS, cas_proposals, check_flags, check_numbers, check_threshold_range

__all__ = [
    "ACRNetLocalizeOptions",
    "LOCALIZE_PRESETS",
    "revert_frame",
    "select_classes",
    "bsn_soft_nms",
    "proposals_from_frame_scores",
    "localize",
    "drop_ambiguous",
]


@dataclass(frozen=True)
class ACRNetLocalizeOptions:
    """The ``test.cas`` mapping of an ACRNet config. Defaults = the official THUMOS14 test (``parse_args``)."""

    class_threshold: float = 0.1  # cls_th on act_score
    thresh_min: float = 0.1  # act_th = np.arange(thresh_min, thresh_max, thresh_step)
    thresh_max: float = 1.0
    thresh_step: float = 0.05
    min_frames: int = 2  # shortest run kept
    outer_lambda: float = 0.25  # OIC margin
    gamma: float = 0.2  # weight of act in the proposal score
    rate: float | None = None  # Q2 frames per feature; None = the features' stride_frames (official 16)
    fps: float | None = None  # Q2; None = the features' fps (official 25)
    frame_offsets: bool = True  # Q1
    clip: bool = True  # clip frame scores to [0, 1]
    alpha: float = 0.5  # soft-NMS Gaussian divisor: THUMOS 0.5, ActivityNet 0.8
    iou_threshold: float = 0.1  # soft-NMS gate (iou_th)

    def __post_init__(self) -> None:
        check_numbers(self, ("class_threshold", "thresh_min", "thresh_max", "thresh_step", "outer_lambda", "gamma",
                      "alpha", "iou_threshold"), "test.cas.")
        check_threshold_range(self.thresh_min, self.thresh_max, self.thresh_step, "test.cas.thresh_step")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise TadkitError(f"must be a positive integer, got {self.min_frames!r}", field="test.cas.min_frames")
        for name in ("fps", "rate"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise TadkitError(f"must be a positive number or null, got {value!r}", field=f"test.cas.{name}")
        if self.outer_lambda < 0:
            raise TadkitError(f"must be >= 0, got {self.outer_lambda}", field="test.cas.outer_lambda")
        if self.alpha <= 0:
            raise TadkitError(f"must be > 0, got {self.alpha}", field="test.cas.alpha")
        check_flags(self, ("frame_offsets", "clip"), "test.cas.")

    @property
    def thresholds(self) -> np.ndarray:
        return np.arange(self.thresh_min, self.thresh_max, self.thresh_step)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | "ACRNetLocalizeOptions" | None) -> "ACRNetLocalizeOptions":
        """From ``test.cas``; ``preset: thumos14 | anet`` starts from :data:`LOCALIZE_PRESETS`, other keys override."""
        if options is None:
            return cls()
        if isinstance(options, ACRNetLocalizeOptions):
            return options
        if not isinstance(options, Mapping):
            raise TadkitError(f"expected a mapping, got {type(options).__name__}", field="test.cas")
        data = dict(options)
        base = cls()
        if "preset" in data:
            name = data.pop("preset")
            if name not in LOCALIZE_PRESETS:
                raise TadkitError(f"unknown ACRNet preset {name!r}; choose one of {sorted(LOCALIZE_PRESETS)}",
                                  field="test.cas.preset")
            base = LOCALIZE_PRESETS[name]
        reject_unknown_fields(cls, data, "ACRNet localize option(s)", field="test.cas")
        return replace(base, **data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LOCALIZE_PRESETS: dict[str, ACRNetLocalizeOptions] = {
    "thumos14": ACRNetLocalizeOptions(),
    "anet": ACRNetLocalizeOptions(alpha=0.8),  # --data_name activitynet1.2 / 1.3 --alpha 0.8
}


OFFICIAL_FPS, OFFICIAL_RATE = 25.0, 16.0  # the official features: 25-fps video, 16 frames per feature


def time_mapping(opts: ACRNetLocalizeOptions, meta: Mapping[str, Any], video: str | None) -> tuple[float, float]:
    """``(fps, frames per feature)`` of the CAS -> seconds step (Q2): the features' own mapping
    unless the options set numbers, which must then agree with it."""
    known = {"fps": meta.get("feature_fps"), "rate": meta.get("stride_frames")}
    chosen = {"fps": opts.fps, "rate": opts.rate}
    for name, official in (("fps", OFFICIAL_FPS), ("rate", OFFICIAL_RATE)):
        feature_value = known[name]
        if chosen[name] is None:
            chosen[name] = float(feature_value) if feature_value is not None else official
        elif feature_value is not None and not math.isclose(float(chosen[name]), float(feature_value), rel_tol=1e-6):
            what = "fps" if name == "fps" else "stride_frames"
            raise TadkitError(
                f"test.cas.{name} is {chosen[name]:g} but the features say {what} {float(feature_value):g}: "
                f"seconds would be off by {float(feature_value) / float(chosen[name]):.3g}x; set test.cas.{name}: null "
                "to use the features' own time mapping (the official constants only fit features laid out like "
                "the release)", video=video, field=f"test.cas.{name}")
    return float(chosen["fps"]), float(chosen["rate"])


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def revert_frame(scores: np.ndarray, num_frames: int) -> np.ndarray:
    """(T', C) segment scores -> (F, C) float64 frame scores, as ``scipy.interpolate.interp1d(arange(T'),
    scores, axis=0, fill_value="extrapolate")`` evaluated at ``arange(F) * T' / F`` (same arithmetic:
    the difference of neighbours is taken in the input dtype, e.g. float32)."""
    y = np.asarray(scores)
    if y.ndim != 2 or y.shape[0] < 2:
        raise TadkitError(f"expected (T, C) segment scores with T >= 2, got shape {y.shape}", field="seg_score")
    if not np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float64)
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise TadkitError(f"num_frames must be a positive integer, got {num_frames!r}", field="num_frames")
    t = y.shape[0]
    x_new = np.arange(int(num_frames)) * t / int(num_frames)
    hi = np.clip(np.searchsorted(np.arange(t), x_new), 1, t - 1)
    lo = hi - 1
    slope = (y[hi] - y[lo]) / (hi - lo).astype(np.float64)[:, None]
    return slope * (x_new - lo)[:, None] + y[lo]


def select_classes(act_score: np.ndarray, threshold: float) -> np.ndarray:
    """Classes with ``act >= threshold`` compared in the scores' dtype (float32 officially); else the arg-max."""
    act = np.asarray(act_score).reshape(-1)
    if act.size == 0 or not np.isfinite(act).all():
        raise TadkitError("video-level class scores must be a non-empty finite vector", field="video_scores")
    dtype = act.dtype if np.issubdtype(act.dtype, np.floating) else np.float64
    chosen = np.flatnonzero(act >= np.asarray(threshold, dtype=dtype))
    if chosen.size == 0:
        chosen = np.array([int(np.argmax(act))])
    return chosen.astype(np.int64)


def bsn_soft_nms(segments: np.ndarray, scores: np.ndarray, alpha: float, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """mmaction2 ``soft_nms(proposals, alpha, low, high, top_k=len)``, exactly; returns (emitted
    indices into the input, decayed scores) in emission order.

    Candidates are first ordered by ``argsort(scores)[::-1]`` (NumPy's default sort, as the
    original); each round emits the first maximum of the pending list and multiplies the score of
    every other pending candidate with ``tIoU > low + (high - low) * width`` by ``exp(-tIoU^2 / alpha)``,
    with tIoU computed in the original's operation order. Each round is one vector operation.
    """
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = sc.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    order = sc.argsort()[::-1]
    start, end, current = seg[order, 0], seg[order, 1], sc[order].copy()
    pending = np.ones(n, dtype=bool)
    emitted = np.empty(n, dtype=np.int64)
    for k in range(n):
        m = int(np.argmax(np.where(pending, current, -np.inf)))
        width = end[m] - start[m]
        inter = np.maximum(np.minimum(end[m], end) - np.maximum(start[m], start), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (width - inter + end - start)
        pending[m] = False
        gate = pending & (iou > low + (high - low) * width)
        current = np.where(gate, current * np.exp(-np.square(iou) / alpha), current)
        emitted[k] = m
    return order[emitted], current[emitted]


# --------------------------------------------------------------------------------------------------
# Localization
# --------------------------------------------------------------------------------------------------


def proposals_from_frame_scores(frame_score: np.ndarray, act_score: np.ndarray,
                                options: Mapping[str, Any] | ACRNetLocalizeOptions | None = None,
                                *, fps: float | None = None, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 3-6 on (F, C) frame scores (already interpolated and clipped) and (C,) act scores.

    Returns ``(segments (K, 2) seconds, scores (K,), labels (K,))`` in the official json order.
    ``fps`` is used when ``options.fps`` is None (default: the official 25).
    """
    opts = ACRNetLocalizeOptions.from_mapping(options)
    frames = np.asarray(frame_score, dtype=np.float64)
    act = np.asarray(act_score)
    if frames.ndim != 2 or act.shape != (frames.shape[1],):
        raise TadkitError(f"expected frame scores (F, C) and act scores (C,), got {frames.shape} and {act.shape}",
                          field="frame_score")
    rate = opts.fps if opts.fps is not None else (fps if fps is not None else OFFICIAL_FPS)
    if not math.isfinite(float(rate)) or float(rate) <= 0:
        raise TadkitError(f"needs a positive fps (test.cas.fps or the features' fps), got {rate!r}", field="fps")
    rate = float(rate)
    classes = select_classes(act, opts.class_threshold)
    config = replace(CAS_PRESETS["acrnet"], thresholds=tuple(opts.thresholds), min_length=opts.min_frames,
                     outer_lambda=opts.outer_lambda, gamma=0.0)
    props = cas_proposals(frames.T, config, classes=classes)
    empty = (np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64))
    if len(props) == 0:
        return empty
    act32 = act.astype(np.float32) if act.dtype == np.float32 else act.astype(np.float64)
    bonus = (np.asarray(opts.gamma, dtype=act32.dtype) * act32).astype(np.float64)  # float32 product, as official
    score = props.score + bonus[props.label]
    start_off, end_off = (1.0, 2.0) if opts.frame_offsets else (0.0, 1.0)
    starts = (props.start + start_off) / rate + t0
    ends = (props.end + end_off) / rate + t0
    out_seg, out_score, out_label = [], [], []
    for c in np.unique(props.label):  # selected classes only (a handful): soft-NMS is per class
        rows = np.flatnonzero(props.label == c)
        seg = np.stack([starts[rows], ends[rows]], axis=1)
        keep, decayed = bsn_soft_nms(seg, score[rows], opts.alpha, opts.iou_threshold, opts.iou_threshold)
        out_seg.append(seg[keep])
        out_score.append(decayed)
        out_label.append(np.full(keep.size, c, dtype=np.int64))
    return np.concatenate(out_seg), np.concatenate(out_score), np.concatenate(out_label)


def localize(activation: Any, meta: Mapping[str, Any],
             options: Mapping[str, Any] | ACRNetLocalizeOptions | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One :class:`~tadkit.methods.base.ClassActivation` (``cas`` = segment scores (C, T'),
    ``video_scores`` = act (C,)) -> ``(segments (K, 2) s, scores (K,), labels (K,))``.

    ``meta``: ``num_features`` (the video's original feature count n; F = rate * n frames; default T'),
    ``feature_fps`` / ``stride_frames`` (the features' time mapping, Q2), ``t0`` (added to the times;
    0 for whole videos), ``video_id``.
    """
    opts = ACRNetLocalizeOptions.from_mapping(options)
    video = str(meta.get("video_id")) if meta.get("video_id") is not None else None
    seg = _numpy(activation.cas)
    act = _numpy(activation.video_scores)
    if seg.ndim != 2 or seg.shape[1] < 1:
        raise TadkitError(f"expected a (C, T) segment score, got shape {seg.shape}", video=video, field="cas")
    if not np.isfinite(seg).all():
        raise TadkitError("segment scores contain NaN or infinite values", video=video, field="cas")
    n = meta.get("num_features")
    n = seg.shape[1] if n is None else int(n)
    if n < 1:
        raise TadkitError(f"num_features must be positive, got {n}", video=video, field="num_features")
    scores = seg.T  # (T', C)
    if scores.shape[0] == 1:  # interp1d needs 2 points; one segment = a constant score
        scores = np.repeat(scores, 2, axis=0)
    fps, rate = time_mapping(opts, meta, video)
    frames = revert_frame(scores, max(1, int(round(rate * n))))
    if opts.clip:
        frames = np.clip(frames, 0.0, 1.0)
    try:
        return proposals_from_frame_scores(frames, act, replace(opts, fps=fps), t0=float(meta.get("t0") or 0.0))
    except TadkitError as error:
        raise TadkitError(error.message, video=video, field=error.field) from None


def drop_ambiguous(segments: np.ndarray, ambiguous: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop every prediction overlapping (positive intersection) any Ambiguous segment of its video,
    whatever its class (the official ``filter_results``, after D2-Net).

    ``segments`` (K, 2) s; ``ambiguous`` (M, 2) s of the same video; ``arrays`` (scores, labels...) are
    filtered alike. Returns ``(segments, *arrays)`` with the kept rows, order unchanged.
    """
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    amb = np.asarray(ambiguous, dtype=np.float64).reshape(-1, 2)
    if amb.size:
        overlap = np.maximum(amb[None, :, 0], seg[:, None, 0]) < np.minimum(amb[None, :, 1], seg[:, None, 1])
        keep = ~overlap.any(axis=1)
    else:
        keep = np.ones(seg.shape[0], dtype=bool)
    return (seg[keep], *(np.asarray(a)[keep] for a in arrays))


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


localize.options_type = ACRNetLocalizeOptions  # lets the pipeline resolve test.cas (e.g. to explain an empty result)
