"""External video-level labels for class-agnostic proposals, and RGB + flow output fusion.

**Video-level classifier fusion** (AFSD ActivityNet, ``AFSD/anet/test.py``; A2Net's ActivityNet ablation
evaluates its ``*_cuhk_label.json`` files the same way). A binary (class-agnostic) proposal model finds
*where* actions are; a video classifier says *what* the video shows. For each video with class scores
``s`` (one per class) and each proposal with score ``p``::

    for the k highest-scoring classes c_1..c_k of s (ties: the lower class index first):
        emit (start, end, label = classes[c_j], score = p * s[c_j])

AFSD's official rule is k = 1 (``cuhk_class_1 = class[argmax(s)]``, ``score = p * max(s)``), applied
after the class-agnostic soft-NMS; tadkit applies it at the same place (``test.video_classifier_topk``
sets k; BSN/BMN-style pipelines use k = 2). The proposal's own label is discarded.

**Scores file** (the CUHK ActivityNet 2017 classifier file ``cuhk_val_simp_share.json`` layout)::

    {"results": {"<video id>": [s_0, ..., s_{C-1}], ...},   # one score per class, in "class" order
     "class":   ["<name 0>", ..., "<name C-1>"],
     ...}                                                   # other keys (e.g. "version") ignored

CUHK keys its videos without ActivityNet's ``v_`` prefix (the official test looks up
``video_name[2:]``); tadkit looks a video up under its own id first, then without / with ``v_``.
`tadkit test` of a weakly supervised (``cas``) method writes ``video_scores.json`` in this layout, so
its video-level scores can label a proposal model without any external file.

**Output fusion** (:class:`FusedModel`): AFSD's two-stream test averages the raw outputs of an RGB and a
flow model before decoding. The wrapper feeds model i the channel slice ``streams[i]`` of the input
(``[[0, 1024], [1024, 2048]]`` for I3D rgb|flow features) and averages every floating-point output.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError

VIDEO_SCORES_FILE = "video_scores.json"


@dataclass
class VideoScores:
    """Video-level class scores: ``scores[video]`` is a (C,) float64 array in ``classes`` order."""

    classes: list[str]
    scores: dict[str, np.ndarray]
    source: str = ""

    def lookup(self, video_id: str) -> np.ndarray | None:
        """The scores of a video under its own id, without ``v_`` (CUHK keys) or with it."""
        for key in (video_id, video_id[2:] if video_id.startswith("v_") else None, "v_" + video_id):
            if key is not None and key in self.scores:
                return self.scores[key]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"results": {k: [float(x) for x in v] for k, v in self.scores.items()}, "class": list(self.classes)}


def load_video_scores(path: str | os.PathLike) -> VideoScores:
    """Read a CUHK-layout scores file (see the module doc); errors name the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TadkitError(f"unreadable video-classifier file: {error}", file=str(path), field="json") from None
    if not isinstance(data, Mapping) or "results" not in data or "class" not in data:
        raise TadkitError('expected {"results": {video: [score per class]}, "class": [names]}', file=str(path),
                          field="results" if isinstance(data, Mapping) and "class" in data else "class")
    classes = data["class"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise TadkitError("must be a non-empty list of class names", file=str(path), field="class")
    if len(set(classes)) != len(classes):
        raise TadkitError("class names must be unique", file=str(path), field="class")
    results = data["results"]
    if not isinstance(results, Mapping):
        raise TadkitError("must map video ids to score lists", file=str(path), field="results")
    scores: dict[str, np.ndarray] = {}
    for video, values in results.items():
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            array = np.zeros(0)
        if array.shape != (len(classes),) or not np.all(np.isfinite(array)):
            raise TadkitError(f"expected {len(classes)} finite scores (one per class), got {np.shape(values)}",
                              file=str(path), video=str(video), field=f"results.{video}")
        scores[str(video)] = array
    return VideoScores(classes=list(classes), scores=scores, source=str(path))


def write_video_scores(path: str | os.PathLike, scores: VideoScores | Mapping[str, Any],
                       classes: Sequence[str] | None = None) -> Path:
    """Write ``{"results": ..., "class": ...}``; ``scores`` is a :class:`VideoScores` or ``{video: (C,)}``
    with ``classes``."""
    if not isinstance(scores, VideoScores):
        if classes is None:
            raise TadkitError("write_video_scores needs the class names", field="class")
        scores = VideoScores(list(classes), {str(k): np.asarray(v, dtype=np.float64).reshape(-1) for k, v in scores.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores.to_dict()))
    return path


def fuse_video_labels(dets: DetectionSet, scores: VideoScores, topk: int = 1, *,
                      missing: str = "error") -> DetectionSet:
    """Label class-agnostic proposals with each video's top-k classes (module doc; AFSD: k = 1).

    Output rows: per input row, k rows (rank 1 first) with ``score = proposal score x class score``.
    ``missing``: what to do with a video absent from ``scores`` — ``"error"`` (default) or ``"drop"``.
    """
    if topk < 1:
        raise TadkitError(f"must be >= 1, got {topk}", field="test.video_classifier_topk")
    k = min(int(topk), len(scores.classes))
    if len(dets) == 0:
        return DetectionSet.empty()
    videos, inverse = np.unique(dets.video.astype(str), return_inverse=True)
    table = np.full((len(videos), len(scores.classes)), np.nan)
    for i, video in enumerate(videos):
        row = scores.lookup(str(video))
        if row is None:
            if missing == "error":
                raise TadkitError(f"video {video!r} has no scores in the video-classifier file "
                                  f"({len(scores.scores)} videos there)", file=scores.source or None, video=str(video),
                                  field="results")
            continue
        table[i] = row
    keep = ~np.isnan(table[inverse, 0])
    # top-k classes per video: stable sort of -score puts the lower index first on ties (np.argmax's pick)
    order = np.argsort(-np.nan_to_num(table, nan=-np.inf), axis=1, kind="stable")[:, :k]  # (V, k)
    top_scores = np.take_along_axis(table, order, axis=1)  # (V, k)
    rows = np.flatnonzero(keep)
    names = np.asarray(scores.classes, dtype=object)
    cls = order[inverse[rows]]  # (N, k)
    return DetectionSet(
        video=np.repeat(dets.video[rows], k),
        start=np.repeat(dets.start[rows], k),
        end=np.repeat(dets.end[rows], k),
        label=names[cls.reshape(-1)],
        score=(dets.score[rows, None] * top_scores[inverse[rows]]).reshape(-1),
    )


def video_scores_from_predictions(predictions: Sequence[Any], classes: Sequence[str]) -> VideoScores:
    """``cas`` predictions (``detections.video_scores`` (C,)) -> :class:`VideoScores`; a video split over
    several samples gets the mean of its samples' scores."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for pred in predictions:
        value = getattr(pred.detections, "video_scores", None)
        if value is None:
            raise TadkitError("the method's decoded outputs carry no video_scores", video=str(pred.video_id),
                              field="video_scores")
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().double().numpy()
        array = np.asarray(value, dtype=np.float64).reshape(-1)
        if array.shape != (len(classes),):
            raise TadkitError(f"{array.size} video scores for {len(classes)} classes", video=str(pred.video_id),
                              field="video_scores")
        vid = str(pred.video_id)
        sums[vid] = sums.get(vid, 0.0) + array
        counts[vid] = counts.get(vid, 0) + 1
    return VideoScores(list(classes), {v: sums[v] / counts[v] for v in sums})


# --------------------------------------------------------------------------------------------------
# RGB + flow: average the raw outputs of several models of one method
# --------------------------------------------------------------------------------------------------


def _mean_outputs(outputs: Sequence[Any]) -> Any:
    first = outputs[0]
    if isinstance(first, Mapping):
        return {key: _mean_outputs([o[key] for o in outputs]) for key in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_mean_outputs(list(parts)) for parts in zip(*outputs, strict=True))
    if isinstance(first, torch.Tensor) and first.is_floating_point():
        return torch.stack(list(outputs)).mean(0)
    return first  # integer tensors (indices), priors, ...: the first model's


class FusedModel(nn.Module):
    """Averages the raw outputs of models of one method (AFSD's RGB + flow test).

    ``streams[i] = [lo, hi]``: model i reads channels ``lo:hi`` (dim 1) of ``batch[key]``; None feeds
    every model the whole input. Decoding (and ``config_dict``, ``localize``...) is the first
    model's, applied to the averaged outputs. Inference only: there is no fused loss.
    """

    def __init__(self, models: Sequence[nn.Module], streams: Sequence[Sequence[int]] | None = None,
                 key: str = "features") -> None:
        super().__init__()
        if len(models) < 1:
            raise TadkitError("fusion needs at least one model", field="test.fuse")
        if streams is not None and len(streams) != len(models):
            raise TadkitError(f"{len(streams)} streams for {len(models)} models", field="test.fuse_streams")
        for s in streams or []:
            if len(s) != 2 or not 0 <= int(s[0]) < int(s[1]):
                raise TadkitError(f"a stream is [lo, hi] with 0 <= lo < hi, got {list(s)}", field="test.fuse_streams")
        self.models = nn.ModuleList(models)
        self.streams = None if streams is None else [(int(a), int(b)) for a, b in streams]
        self.key = key

    def _inputs(self, batch: Any, index: int) -> Any:
        if self.streams is None:
            return batch
        lo, hi = self.streams[index]
        tensor = batch[self.key] if isinstance(batch, Mapping) else batch
        if tensor.shape[1] < hi:
            raise TadkitError(f"stream [{lo}, {hi}] but the input has {tensor.shape[1]} channels",
                              field="test.fuse_streams")
        part = tensor[:, lo:hi]
        return {**batch, self.key: part} if isinstance(batch, Mapping) else part

    def forward(self, batch: Any) -> Any:
        return _mean_outputs([model(self._inputs(batch, i)) for i, model in enumerate(self.models)])

    def decode(self, outputs: Any, batch: Any) -> Any:
        return self.models[0].decode(outputs, batch)

    def config_dict(self) -> dict[str, Any]:
        getter = getattr(self.models[0], "config_dict", None)
        config = dict(getter()) if callable(getter) else {}
        if self.streams is not None and "in_dim" in config:
            config["in_dim"] = max(hi for _, hi in self.streams)  # the full input the wrapper reads
        return config

    def loss(self, *args: Any, **kwargs: Any) -> Any:
        raise TadkitError("a fused model is for inference only; train each stream's model", field="test.fuse")
