"""AFSD inference (spec ``methods/afsd.md`` §6; official ``thumos14/test.py`` and ``softnms_v2``).

* :func:`decode_window` — refined segments of one window in clip frames (clamped to ``[0, L]``) and
  per-class scores ``(softmax(conf) + softmax(prop_conf)) / 2 * sigmoid(center)``;
* :func:`window_candidates` — the (class, segment, score) candidates above ``conf_thresh``, class-major
  then point order, as the official loop collects them;
* :func:`soft_nms` — Gaussian soft-NMS without IoU gate, exactly ``softnms_v2`` in float32 (kept
  candidates returned in input order with the score they had when picked); ``keep_last=False``
  reproduces the official loop, which stops while ONE candidate is still pending and so never emits it;
* :func:`detect_video` — all windows of a video -> seconds -> per-class soft-NMS -> the official
  result list order (class 1..C, then kept candidates in window/point order);
* :func:`clip_to_duration` — the ActivityNet loop's last step (``anet/test.py``): after soft-NMS, times
  clipped to ``[0, duration]`` and segments with ``end <= start`` dropped (then the video classifier labels
  them: :func:`tadkit.postprocess.video_classifier.fuse_video_labels`);
* :func:`fuse_outputs` — RGB + flow fusion by averaging raw outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch.nn import functional as F

RAW_KEYS = ("loc", "conf", "prop_loc", "prop_conf", "center")


def decode_window(
    loc: torch.Tensor,
    conf: torch.Tensor,
    prop_loc: torch.Tensor,
    prop_conf: torch.Tensor,
    center: torch.Tensor,
    priors: torch.Tensor,
    clip_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One window (no batch axis): loc/prop_loc (P, 2), conf/prop_conf (P, C+1), center (P, 1),
    priors (P, 1) -> segments (P, 2) in clip frames, scores (P, C+1) (column 0 = background)."""
    pre_w = loc[:, :1] + loc[:, 1:]
    refined = 0.5 * pre_w * prop_loc + loc
    segments = torch.cat([priors[:, :1] * clip_length - refined[:, :1], priors[:, :1] * clip_length + refined[:, 1:]], -1)
    segments = segments.clamp(min=0, max=clip_length)
    scores = (F.softmax(conf, dim=-1) + F.softmax(prop_conf, dim=-1)) / 2.0
    scores = scores * center.sigmoid()
    return segments, scores


def window_candidates(
    segments: torch.Tensor, scores: torch.Tensor, conf_thresh: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates with score > conf_thresh of every action class: (segments (K, 2), scores (K,),
    classes (K,) 1-based), sorted by class then point as the official per-class loop."""
    by_class = scores[:, 1:].t()  # (C, P)
    cls, point = torch.nonzero(by_class > conf_thresh, as_tuple=True)  # row-major = class-major
    return segments[point], by_class[cls, point], cls + 1


def soft_nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    sigma: float = 0.5,
    top_k: int = 5000,
    score_threshold: float = 0.001,
    keep_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian soft-NMS of one class (official ``softnms_v2``, float32 arithmetic).

    Returns the kept indices (into the input, ascending = the official output order) and their scores
    at the time they were picked. Each pick is one vectorised step over the pending candidates.
    """
    start = segments[:, 0].float().cpu()
    end = segments[:, 1].float().cpu()
    score = scores.float().cpu().clone()
    n = score.shape[0]
    done = torch.zeros(n, dtype=torch.bool)
    pending = score >= score_threshold
    stop_at = 0 if keep_last else 1
    picked = 0
    while int(pending.sum()) > stop_at and picked < top_k:
        candidates = pending.nonzero()[:, 0]
        idx = int(candidates[score[candidates].argmax()])
        pending[idx] = False
        done[idx] = True
        picked += 1
        rest = pending.nonzero()[:, 0]
        if rest.numel() == 0:
            continue
        top_start, top_end = start[idx], end[idx]
        s, e = start[rest], end[rest]
        inter = torch.clamp(e.clamp(max=top_end) - s.clamp(min=top_start), min=0)
        width = torch.clamp(top_end - top_start, min=1e-5)
        iou = inter / (width + (e - s) - inter)
        score[rest] = score[rest] * torch.exp(-iou**2 / sigma)
        pending[rest[score[rest] < score_threshold]] = False
    kept = done.nonzero()[:, 0]
    return kept, score[kept]


@dataclass
class VideoDetections:
    """Detections of one video in the official result order."""

    segments: torch.Tensor  # (K, 2) seconds
    scores: torch.Tensor  # (K,)
    classes: torch.Tensor  # (K,) int64, 1-based (0 = background is never output)


def detect_video(
    window_outputs: Sequence[Mapping[str, torch.Tensor]],
    offsets: Sequence[int],
    fps: float,
    priors: torch.Tensor,
    clip_length: int,
    num_classes: int,
    conf_thresh: float = 0.01,
    sigma: float = 0.5,
    top_k: int = 5000,
    keep_last: bool = False,
    score_threshold: float = 0.001,
) -> VideoDetections:
    """The official test loop for one video from per-window raw outputs (``loc``, ``conf``, ``prop_loc``,
    ``prop_conf``, ``center``; with or without a batch axis of 1). ``offsets`` in frames, ``fps`` the
    sampled frame rate; ``num_classes`` action classes (background excluded). ``score_threshold`` is
    soft-NMS's (THUMOS14 loop: the ``softnms_v2`` default 0.001; ActivityNet loop: 1e-9, with
    ``conf_thresh`` 1e-9 too, its candidate mask)."""
    priors = priors.reshape(-1, 1)
    segs, scs, cls = [], [], []
    for out, offset in zip(window_outputs, offsets):
        raw = [out[k][0] if out[k].dim() == 3 else out[k] for k in RAW_KEYS]
        segments, scores = decode_window(*raw, priors=priors.to(raw[0]), clip_length=clip_length)
        s, sc, c = window_candidates(segments, scores, conf_thresh)
        segs.append((s + offset) / fps)
        scs.append(sc)
        cls.append(c)
    all_segs = torch.cat(segs) if segs else torch.zeros(0, 2)
    all_scores = torch.cat(scs) if scs else torch.zeros(0)
    all_cls = torch.cat(cls) if cls else torch.zeros(0, dtype=torch.long)
    out_segs, out_scores, out_cls = [], [], []
    for c in range(1, num_classes + 1):
        # the official loop concatenates each class's candidates window after window
        idx = (all_cls == c).nonzero()[:, 0]
        if idx.numel() == 0:
            continue
        kept, kept_scores = soft_nms(all_segs[idx], all_scores[idx], sigma, top_k, score_threshold, keep_last=keep_last)
        positive = kept_scores > 0
        out_segs.append(all_segs[idx][kept][positive].cpu())
        out_scores.append(kept_scores[positive])
        out_cls.append(torch.full((int(positive.sum()),), c, dtype=torch.long))
    if not out_segs:
        return VideoDetections(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return VideoDetections(torch.cat(out_segs), torch.cat(out_scores), torch.cat(out_cls))


def clip_to_duration(detections: VideoDetections, duration: float) -> VideoDetections:
    """Times clipped to ``[0, duration]`` (seconds), rows with ``end <= start`` dropped, order kept (the
    official ActivityNet loop does this after soft-NMS; ``tadkit test``: ``test.clip_after_nms``)."""
    segments = detections.segments.double()  # official: Python floats
    start = segments[:, 0].clamp(min=0.0)
    end = segments[:, 1].clamp(max=float(duration))
    keep = end > start
    segments = torch.stack([start, end], -1)[keep]
    return VideoDetections(segments, detections.scores[keep], detections.classes[keep])


def fuse_outputs(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RGB + flow fusion (§6.5): average the raw outputs (distances, offsets, logits), not probabilities."""
    fused = {k: (a[k] + b[k]) / 2.0 for k in RAW_KEYS}
    for k, v in a.items():
        fused.setdefault(k, v)
    return fused


def window_offsets(num_frames: int, clip_length: int, stride: int) -> list[int]:
    """Official window offsets (test loop): the same rule as the training clips,
    :func:`tadkit.data.frames.clip_offsets`."""
    from tadkit.data.frames import clip_offsets

    return clip_offsets(num_frames, clip_length, stride)


__all__ = [
    "RAW_KEYS",
    "VideoDetections",
    "clip_to_duration",
    "decode_window",
    "detect_video",
    "fuse_outputs",
    "soft_nms",
    "window_candidates",
    "window_offsets",
]
