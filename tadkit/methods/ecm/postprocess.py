"""ECM CAS -> segments in seconds (spec ``methods/ecm.md`` §5; official ``lib/post_process/functions.py``
``evaluate_score`` -> ``localize_actions`` -> ``get_localization`` and ``lib/post_process/nms.py``).

Per video:

1. min-max normalisation of the raw CAS per class (ReLU'd max / min, range 1 when <= 0); idempotent,
   so an already normalised CAS (the fixture's ``cas_norm``) gives the same result;
2. classes with video score (softmax of s_pre) >= ``class_threshold``, ascending; no fallback;
3. each selected row stretched from T to ``meta["frame_num"]`` samples with OpenCV ``INTER_LINEAR``
   pixel-centre semantics (NumPy re-statement, :func:`tadkit.postprocess.cas.resize_linear_centers`);
4. for every threshold in ``arange(thresh_min, thresh_max, thresh_step)``: values < thr set to 0,
   maximal runs of positive values are proposals; outer-inner contrast on the thresholded sequence
   (outer margin ``int(lambda * L)`` each side, right end exclusive at ``frame_num``) + ``gamma`` x
   video score; all thresholds x classes at once (:func:`tadkit.postprocess.cas.cas_proposals`);
5. seconds: ``time_base="fps"`` (THUMOS) ``[s / fps, (e + 1) / fps]``; ``"duration"`` (ActivityNet)
   ``[s / frame_num * duration, (e + 1) / frame_num * duration]``;
6. per class, hard NMS over the pooled proposals (a proposal is dropped when its IoU with a kept one
   is >= ``nms_threshold``), one vectorized kernel for all classes; output ordered as the official
   function returns it: classes ascending, NMS (score-descending) order within a class.

Quirks of the official code, reproduced by default, each with an option that fixes it:

* Q1 ``nms_plus_one`` (default True): the NMS IoU adds 1 to every length and intersection although
  the times are in seconds (a +1 s bias that merges short segments); ``False`` = plain tIoU.
* Q2 ``skip_only_first`` (default True): ``if any(position)`` skips a threshold whose only positive
  index is 0 (a non-empty proposal at the very first frame); ``False`` keeps it.
* Tie order: the official NMS walks ``argsort(scores)[::-1]``; equal scores are visited latest-first
  (exact for numpy's stable small-array sort; for larger tied sets numpy's order is arbitrary).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Mapping

import numpy as np

from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.postprocess.cas import (
    CASProposalConfig,
    cas_proposals,
    check_flags,
    check_numbers,
    check_threshold_range,
    minmax_normalize,
    resize_linear_centers,
)
from tadkit.postprocess.nms import batched_nms_numpy


@dataclass(frozen=True)
class ECMLocalizeOptions:
    """The ``test.cas`` mapping of an ECM config. Defaults = official THUMOS14 (``experiments/THUMOS14.yaml``)."""

    class_threshold: float = 0.25  # CLS_SCORE_TH on softmax(s_pre)
    thresh_min: float = 0.01  # ACT_THRESH_MIN
    thresh_max: float = 0.2  # ACT_THRESH_MAX (exclusive, np.arange)
    thresh_step: float = 0.025  # ACT_THRESH_STEP
    outer_lambda: float = 0.4  # OUTER_LAMBDA
    gamma: float = 0.15  # CONF_GAMMA
    nms_threshold: float = 0.6  # NMS_THRESHOLD
    time_base: Literal["fps", "duration"] = "fps"  # THUMOS: index / fps; ActivityNet: index / frame_num * duration
    normalize: bool = True  # min-max normalise the CAS first (idempotent)
    nms_plus_one: bool = True  # Q1: official "+1" on lengths in seconds
    skip_only_first: bool = True  # Q2: official `any(position)` skip

    def __post_init__(self) -> None:
        check_numbers(self, ("class_threshold", "thresh_min", "thresh_max", "thresh_step", "outer_lambda", "gamma",
                      "nms_threshold"), "test.cas.")
        check_threshold_range(self.thresh_min, self.thresh_max, self.thresh_step, "test.cas.thresh_step")
        if self.outer_lambda < 0:
            raise TadkitError(f"must be >= 0, got {self.outer_lambda}", field="test.cas.outer_lambda")
        if not 0 < self.nms_threshold <= 1:
            raise TadkitError(f"must be in (0, 1], got {self.nms_threshold}", field="test.cas.nms_threshold")
        if self.time_base not in ("fps", "duration"):
            raise TadkitError(f"must be 'fps' or 'duration', got {self.time_base!r}", field="test.cas.time_base")
        check_flags(self, ("normalize", "nms_plus_one", "skip_only_first"), "test.cas.")

    @property
    def thresholds(self) -> np.ndarray:
        return np.arange(self.thresh_min, self.thresh_max, self.thresh_step)

    def proposal_config(self) -> CASProposalConfig:
        return CASProposalConfig(
            thresholds=tuple(self.thresholds), rule="zero_below", min_length=1, outer_lambda=self.outer_lambda,
            outer_right_inclusive=False, contrast_on="thresholded", gamma=self.gamma,
            skip_if_only_first=self.skip_only_first, start_offset=0.0, end_offset=1.0,
        )

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | "ECMLocalizeOptions" | None,
                     *, file: str | None = None) -> "ECMLocalizeOptions":
        """``preset: thumos14|anet12|anet13`` starts from :data:`ECM_LOCALIZE_PRESETS`; other keys override."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if not isinstance(options, Mapping):
            raise TadkitError(f"expected a mapping, got {type(options).__name__}", file=file, field="test.cas")
        data = dict(options)
        base = cls()
        if "preset" in data:
            name = data.pop("preset")
            if name not in ECM_LOCALIZE_PRESETS:
                raise TadkitError(f"unknown ECM preset {name!r}; choose one of {sorted(ECM_LOCALIZE_PRESETS)}",
                                  file=file, field="test.cas.preset")
            base = ECM_LOCALIZE_PRESETS[name]
        reject_unknown_fields(cls, data, "ECM localization option(s)", field="test.cas", file=file, known="declared")
        try:
            return replace(base, **data)
        except TadkitError as error:
            raise TadkitError(error.message, file=file, field=error.field) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ECM_LOCALIZE_PRESETS: dict[str, ECMLocalizeOptions] = {
    "thumos14": ECMLocalizeOptions(),
    # experiments/ActivityNet1.2.yaml and 1.3.yaml: same except the class threshold.
    "anet12": ECMLocalizeOptions(class_threshold=0.12, thresh_min=0.0, thresh_max=0.175, thresh_step=0.025,
                                 outer_lambda=0.5, gamma=0.45, nms_threshold=0.7, time_base="duration"),
    "anet13": ECMLocalizeOptions(class_threshold=0.05, thresh_min=0.0, thresh_max=0.175, thresh_step=0.025,
                                 outer_lambda=0.5, gamma=0.45, nms_threshold=0.7, time_base="duration"),
}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _meta_number(meta: Mapping[str, Any], key: str, video: str, *, integer: bool = False) -> float:
    value = meta.get(key) if isinstance(meta, Mapping) else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TadkitError(f"ECM localization needs the video's {key} in the sample meta, got {value!r}",
                          video=video, field=key) from None
    if not math.isfinite(number) or number <= 0 or (integer and number != int(number)):
        raise TadkitError(f"must be a positive {'integer' if integer else 'number'}, got {value!r}",
                          video=video, field=key)
    return number


def localize(activation: Any, meta: Mapping[str, Any], options: Mapping[str, Any] | ECMLocalizeOptions | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One video's :class:`~tadkit.methods.base.ClassActivation` -> ``(segments (K, 2) seconds float64,
    scores (K,) float64, labels (K,) int64)`` in the official order (classes ascending, NMS order).

    ``meta`` needs ``frame_num`` and ``fps`` (``time_base="fps"``) or ``duration`` (``"duration"``);
    ``options`` is the config's ``test.cas`` mapping (see :class:`ECMLocalizeOptions`).
    """
    opts = ECMLocalizeOptions.from_mapping(options)
    video = str(meta.get("video_id", "")) if isinstance(meta, Mapping) else ""
    cas = _to_numpy(activation.cas)
    scores = _to_numpy(activation.video_scores).reshape(-1)
    if cas.ndim != 2 or cas.shape[1] == 0 or cas.shape[0] != scores.shape[0]:
        raise TadkitError(f"expected a (C, T) CAS and (C,) video scores, got {cas.shape} and {scores.shape}",
                          video=video, field="cas")
    if not np.isfinite(cas).all():
        bad = np.argwhere(~np.isfinite(cas))[0]
        raise TadkitError(f"the class activation sequence has NaN/Inf (class {bad[0]}, step {bad[1]}); "
                          "check the features and the checkpoint", video=video, field="cas")
    if not np.isfinite(scores).all():
        raise TadkitError("video-level class scores have NaN/Inf", video=video, field="video_scores")
    frame_num = int(_meta_number(meta, "frame_num", video, integer=True))
    if opts.time_base == "fps":
        fps = _meta_number(meta, "fps", video)
    else:
        duration = _meta_number(meta, "duration", video)

    empty = (np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64))
    classes = np.flatnonzero(scores >= opts.class_threshold)
    if classes.size == 0:
        return empty
    norm = minmax_normalize(cas[classes]) if opts.normalize else cas[classes]
    stretched = resize_linear_centers(norm, frame_num)  # (C', frame_num)
    props = cas_proposals(stretched, opts.proposal_config(), class_scores=scores[classes])
    if len(props) == 0:
        return empty
    labels = classes[props.label]
    if opts.time_base == "fps":
        start, end = props.start / fps, (props.end + 1) / fps
    else:
        start, end = props.start / frame_num * duration, (props.end + 1) / frame_num * duration
    segments = np.stack([start, end], axis=1)

    # Official NMS order: per class argsort(scores)[::-1] -> score desc, ties latest-first. Put the
    # candidates in that order so the kernel's "ties by index" rule reproduces it; the kernel keeps
    # IoU <= thr, the official code IoU < thr: use the next float below thr.
    pooled = np.arange(len(props))
    order = np.lexsort((-pooled, -props.score, labels))
    segments, score, labels = segments[order], props.score[order], labels[order]
    keep = batched_nms_numpy(segments, score, labels, float(np.nextafter(opts.nms_threshold, -np.inf)),
                             length_offset=1.0 if opts.nms_plus_one else 0.0)
    keep = keep[np.argsort(labels[keep], kind="stable")]  # classes ascending, NMS order inside
    return segments[keep], score[keep], labels[keep].astype(np.int64)


__all__ = ["ECMLocalizeOptions", "ECM_LOCALIZE_PRESETS", "localize"]


localize.options_type = ECMLocalizeOptions  # lets the pipeline resolve test.cas (e.g. to explain an empty result)
