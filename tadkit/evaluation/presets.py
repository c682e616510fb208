"""Each paper's THUMOS14 protocol as a named preset, and the named video lists they use.

The four papers tadkit reproduces score THUMOS14 test four different ways. A preset fixes everything
that changes a number: the evaluator, the tIoU values (as the official code writes them), the video
list and what happens to the ``Ambiguous`` segments. ``evaluate_preset(gt, dets, name)`` runs one,
``evaluate_all_presets`` runs them all on the same detections. The GT is the THUMOS14 evalkit
directory (213 test videos with their 99 Ambiguous segments): every other list is derived from it.

============  ==========================================  ============  ============================  ====================================
preset        evaluator                                   tIoU          videos scored                 Ambiguous
============  ==========================================  ============  ============================  ====================================
``a2net``     TH14evalDet.m (MATLAB, non-interpolated AP)  0.1:0.1:0.7   213 (evalkit)                 ignored: unmatched detections over
                                                                                                      one are removed (MATLAB rule)
``afsd``      ActivityNet eval_detection.py (interp. AP)   0.3..0.7      210 (thumos_gt.json); AFSD    not in the GT: detections over them
                                                                         infers on 212, its evaluator  are false positives
                                                                         drops predictions on videos
                                                                         without GT
``ecm``       ActivityNet eval_detection.py                0.1..0.9      210 (gt.json); predictions    not in the GT: false positives
                                                                         on other videos are FPs
``acrnet``    mmaction2 ActivityNetLocalization (same      0.1:0.7       evalkit minus 270, 1292,      every prediction overlapping one
              semantics, stable score sort)                (linspace)    1496 (210)                    (> 0 s, any class) is deleted first
============  ==========================================  ============  ============================  ====================================

Sources (commits of the official repositories):

* A2Net: LeYangNwpu/A2Net @ 3d8186d6c99f3bf06327ed2c8d0b04ae32f4ca9b,
  ``lib/Evaluation/THUMOS14_evalkit_20150930/eval_score_single.m`` (``for i=0.1:0.1:0.7``,
  ``TH14evalDet(..., 'annotation', 'test', i)``), annotation = the evalkit test files.
* AFSD: TencentYoutuResearch/ActionDetection-AFSD @ ed86a0df91e58baa7d78c796ed29cff82b1f3fa6,
  ``AFSD/thumos14/eval.py`` (tious ``[0.3, 0.4, 0.5, 0.6, 0.7]``, subset ``test``,
  ``thumos_annotations/thumos_gt.json``: 210 test videos = evalkit minus 270, 1292, 1496, no
  Ambiguous), ``AFSD/evaluation/eval_detection.py`` (``_import_prediction`` skips videos not in the
  GT: ``if videoid not in self.video_lst: continue``), ``thumos_annotations/test_video_info.csv``
  (the 212 videos AFSD runs on: evalkit minus 1292).
* ECM: VividLe/Equivalent-Classification-Mapping @ bc89606c8228943f595088f5ece22b0ac918fdcf,
  ``experiments/THUMOS14.yaml`` (``IOU_TH: [0.1, ..., 0.9]``, ``VAL_SPLIT: 'test'``),
  ``lib/dataset/materials_THUMOS14/gt.json`` (same blob as AFSD's thumos_gt.json),
  ``lib/Evaluation/ActivityNet/eval_detection.py`` (official: predictions on videos without GT
  are false positives).
* ACRNet: leftthomas/ACRNet @ 5718240, ``dataset.py`` (test videos 0000270, 0001292, 0001496
  skipped), ``utils.py filter_results`` + ``result/ambiguous.txt`` (the evalkit's 99 Ambiguous
  segments; a prediction is deleted when ``max(s_a, s_p) < min(e_a, e_p)``), ``main.py``
  (``np.linspace(0.1, 0.7, 7)``, mmaction2 ``ActivityNetLocalization``: prediction-driven greedy
  matching and interpolated AP as eval_detection.py, score sort by Python's stable ``sort``).

Each paper's ActivityNet protocol is a preset too (``a2net-anet``, ``afsd-anet``, ``ecm-anet``,
``acrnet-anet``): the same evaluator code of that repository on the ``validation`` subset at tIoU
0.5:0.05:0.95 (``np.linspace(0.5, 0.95, 10)``; ``../shared/methods/<method>.md`` §Evaluation), the
predictions on videos outside the GT treated as that repository's evaluator treats them (as in its
THUMOS14 preset), no Ambiguous segments. Their video list is the GT you pass (each repository ships
its own copy of the ActivityNet annotations for the videos its features cover; pass ``--blocked`` for
the official blocked-video list).

One rule decides which presets fit a ground truth: a preset scores the dataset it was written for.
Ground truth whose annotated classes are all THUMOS14 class names is THUMOS14 (the evalkit directory,
AFSD's/ECM's ``thumos_gt.json``, tadkit's THUMOS-like synthetic data); any other is ActivityNet-like.
A preset of the other dataset is refused with the name of the one to use, and ``--all-presets`` runs
the presets of the ground truth's dataset.

What a preset cannot see (documented, not guessed): ACRNet also drops videos with <= 10 features
(none of THUMOS14 test with its features); every repo evaluates only the videos its own model ran
on, so pass detections of the videos the paper ran on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from tadkit.data.records import AnnotationSet, DetectionSet
from tadkit.errors import TadkitError
from tadkit.evaluation.detection import EvalResult, evaluate
from tadkit.evaluation.ids import VideoIdResolver
from tadkit.evaluation.matching import pairs_by_key


def matlab_colon(start: float, step: float, stop: float) -> list[float]:
    """The values MATLAB's ``start:step:stop`` holds, bit for bit.

    MATLAB fills the range from both ends (``start + k*step`` for the first half, ``stop - k*step``
    for the second) and puts ``(start + stop) / 2`` in the middle when the count of steps is even
    (the algorithm MathWorks published, C. Moler, "The colon operator", 2011). So ``0.1:0.1:0.7``
    holds 0.30000000000000004 and 0.49999999999999994, which decides tIoU values that equal 0.5
    exactly under TH14evalDet's strict ``>``.
    """
    if not step > 0 or stop < start:
        raise TadkitError(f"bad range {start}:{step}:{stop}", field="tiou")
    n = int(math.floor((stop - start) / step + 1e-10))  # number of steps (7 values for 0.1:0.1:0.7)
    end = start + n * step
    if abs(end - stop) <= 1e-10 * max(1.0, abs(stop)):  # the range reaches stop: it ends exactly there
        end = stop
    values = [0.0] * (n + 1)
    for k in range(n // 2 + 1):
        values[k] = start + k * step
        values[n - k] = end - k * step
    if n % 2 == 0:
        values[n // 2] = (start + end) / 2
    return values


# ----------------------------------------------------------------------------------------------
# named video lists
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoList:
    """A test list defined by the videos it removes from the THUMOS14 evalkit's 213."""

    name: str
    exclude: tuple[str, ...]
    size: int  # videos left of the evalkit's 213
    source: str


THUMOS14_TEST_EXCLUDED = ("video_test_0000270", "video_test_0001292", "video_test_0001496")

VIDEO_LISTS: dict[str, VideoList] = {
    v.name: v
    for v in (
        VideoList("thumos14-test-evalkit", (), 213, "THUMOS14 evalkit 2015-09-30 test annotation (A2Net)"),
        VideoList("thumos14-test-212", ("video_test_0001292",), 212,
                  "AFSD thumos_annotations/test_video_info.csv; ActionFormer thumos14.json (1292 has only Ambiguous)"),
        VideoList("thumos14-test-211", ("video_test_0000270", "video_test_0001292"), 211,
                  "OpenTAD THUMOS14 annotations (per ../shared/methods/evaluation.md)"),
        VideoList("thumos14-test-210", THUMOS14_TEST_EXCLUDED, 210,
                  "AFSD thumos_gt.json / ECM gt.json test subset; ACRNet dataset.py (the 3 excluded videos)"),
    )
}


def video_list(name: str) -> VideoList:
    if name not in VIDEO_LISTS:
        raise TadkitError(f"unknown video list {name!r}; choose one of {', '.join(VIDEO_LISTS)}", field="video_list")
    return VIDEO_LISTS[name]


def exclude_videos(gt: AnnotationSet, videos: Iterable[str]) -> AnnotationSet:
    """``gt`` without the given videos (any spelling the id resolver accepts)."""
    drop = set(videos)
    if not drop:
        return gt
    resolver = VideoIdResolver(drop)
    return gt.with_videos({k: v for k, v in gt.videos.items() if resolver.resolve(k) is None})


def drop_ambiguous_overlaps(
    gt: AnnotationSet, dets: DetectionSet, subset: str | Iterable[str] | None = None
) -> tuple[DetectionSet, int]:
    """Delete every detection that overlaps an ``Ambiguous`` segment of its video, any class.

    ACRNet's ``filter_results`` (after D2-Net): deleted when ``max(s_a, s_p) < min(e_a, e_p)``,
    i.e. a positive intersection; touching ends do not count. Returns the kept detections (input
    order) and how many were deleted. Detection ids are matched to GT ids with the usual resolver
    (exact spelling first, see :mod:`tadkit.evaluation.ids`).
    """
    sub = gt.subset(subset) if subset is not None else gt
    amb_vid, amb_s, amb_e = [], [], []
    names = [v for v, ann in sub.videos.items() if ann.ambiguous]
    code = {v: i for i, v in enumerate(names)}
    for v in names:
        for s, e in sub.videos[v].ambiguous:
            amb_vid.append(code[v])
            amb_s.append(s)
            amb_e.append(e)
    n = len(dets)
    if n == 0 or not amb_vid:
        return dets, 0
    resolver = VideoIdResolver(names)
    uniq, inverse = np.unique(dets.video.astype(str), return_inverse=True)
    u_code = np.array([code.get(resolver.resolve(str(u)) or "", -1) for u in uniq], dtype=np.int64)
    d_code = u_code[inverse]
    di, ai = pairs_by_key(d_code, np.asarray(amb_vid, dtype=np.int64))
    keep_pair = d_code[di] >= 0
    di, ai = di[keep_pair], ai[keep_pair]
    a_s, a_e = np.asarray(amb_s)[ai], np.asarray(amb_e)[ai]
    hit = np.maximum(a_s, dets.start[di]) < np.minimum(a_e, dets.end[di])
    gone = np.zeros(n, dtype=bool)
    gone[di[hit]] = True
    return dets.select(~gone), int(gone.sum())


# ----------------------------------------------------------------------------------------------
# protocol presets
# ----------------------------------------------------------------------------------------------
AMBIGUOUS_RULES = {
    "matlab": "unmatched detections overlapping them are removed (TH14evalDet)",
    "false-positive": "not in the GT: detections on them are false positives",
    "drop-overlapping": "every prediction overlapping one is deleted before scoring (ACRNet)",
}


@dataclass(frozen=True)
class ProtocolPreset:
    """Everything one paper's official code scores THUMOS14 test with."""

    name: str
    paper: str
    evaluator: str  # tadkit protocol: "thumos14" or "activitynet"
    evaluator_code: str
    tiou: tuple[float, ...]
    tiou_text: str
    video_list: str  # key of VIDEO_LISTS: the GT videos scored
    outside_videos: str  # predictions on videos outside the list: "fp" or "drop"
    ambiguous: str  # key of AMBIGUOUS_RULES
    source: str
    subset: str = "test"
    dataset: str = "thumos14"  # the ground truth it was written for: "thumos14" or "activitynet"

    def describe(self) -> str:
        outside = "false positives" if self.outside_videos == "fp" else "dropped"
        if self.video_list:
            vl = VIDEO_LISTS[self.video_list]
            videos = f"{vl.size} videos ({self.video_list}; predictions on other videos: {outside})"
        else:
            videos = f"the GT's {self.subset} videos (predictions on other videos: {outside})"
        ambiguous = f", Ambiguous: {AMBIGUOUS_RULES[self.ambiguous]}" if self.ambiguous else ""
        return (f"preset {self.name} ({self.paper}): {self.evaluator_code}, tIoU {self.tiou_text}, "
                f"{videos}{ambiguous}")


PROTOCOL_PRESETS: dict[str, ProtocolPreset] = {
    p.name: p
    for p in (
        ProtocolPreset(
            name="a2net", paper="A2Net, IEEE TIP 2020", evaluator="thumos14",
            evaluator_code="TH14evalDet.m (non-interpolated AP, GT-driven matching, tIoU > t)",
            tiou=tuple(matlab_colon(0.1, 0.1, 0.7)), tiou_text="0.1:0.1:0.7 (MATLAB colon values)",
            video_list="thumos14-test-evalkit", outside_videos="fp", ambiguous="matlab",
            source="LeYangNwpu/A2Net@3d8186d lib/Evaluation/THUMOS14_evalkit_20150930/eval_score_single.m",
        ),
        ProtocolPreset(
            name="afsd", paper="AFSD, CVPR 2021", evaluator="activitynet",
            evaluator_code="AFSD/evaluation/eval_detection.py (ActivityNet, interpolated AP, tIoU >= t)",
            tiou=(0.3, 0.4, 0.5, 0.6, 0.7), tiou_text="[0.3, 0.4, 0.5, 0.6, 0.7]",
            video_list="thumos14-test-210", outside_videos="drop", ambiguous="false-positive",
            source="TencentYoutuResearch/ActionDetection-AFSD@ed86a0d AFSD/thumos14/eval.py, thumos_gt.json",
        ),
        ProtocolPreset(
            name="ecm", paper="ECM (Equivalent Classification Mapping)", evaluator="activitynet",
            evaluator_code="lib/Evaluation/ActivityNet/eval_detection.py (official ActivityNet)",
            tiou=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), tiou_text="[0.1, ..., 0.9]",
            video_list="thumos14-test-210", outside_videos="fp", ambiguous="false-positive",
            source="VividLe/Equivalent-Classification-Mapping@bc89606 experiments/THUMOS14.yaml, gt.json",
        ),
        ProtocolPreset(
            name="acrnet", paper="ACRNet", evaluator="activitynet",
            evaluator_code="mmaction2 ActivityNetLocalization (ActivityNet semantics, interpolated AP)",
            tiou=tuple(float(v) for v in np.linspace(0.1, 0.7, 7)), tiou_text="np.linspace(0.1, 0.7, 7)",
            video_list="thumos14-test-210", outside_videos="drop", ambiguous="drop-overlapping",
            source="leftthomas/ACRNet@5718240 dataset.py, utils.py filter_results, result/ambiguous.txt",
        ),
    )
}


ANET_TIOU = tuple(float(v) for v in np.linspace(0.5, 0.95, 10))


def _activitynet_preset(thumos: ProtocolPreset, source: str) -> ProtocolPreset:
    """The same paper's ActivityNet protocol: its evaluator on ``validation``, tIoU 0.5:0.05:0.95."""
    return ProtocolPreset(
        name=f"{thumos.name}-anet", paper=thumos.paper, evaluator="activitynet",
        evaluator_code=thumos.evaluator_code if thumos.evaluator == "activitynet"
        else "the ActivityNet eval_detection.py (interpolated AP, tIoU >= t)",
        tiou=ANET_TIOU, tiou_text="np.linspace(0.5, 0.95, 10)", video_list="", outside_videos=thumos.outside_videos,
        ambiguous="", source=source, subset="validation", dataset="activitynet",
    )


PROTOCOL_PRESETS.update({
    p.name: p
    for p in (
        _activitynet_preset(PROTOCOL_PRESETS["a2net"], "LeYangNwpu/A2Net Ablation-Comparison-Experiments/ActivityNetv1.3 "
                            "lib/Evaluation/anet_evaluate.py (../shared/methods/a2net.md §7)"),
        _activitynet_preset(PROTOCOL_PRESETS["afsd"], "AFSD/anet test + AFSD/evaluation/eval_detection.py "
                            "(../shared/methods/afsd.md §7)"),
        _activitynet_preset(PROTOCOL_PRESETS["ecm"], "ECM experiments/ActivityNet1.{2,3}.yaml, "
                            "lib/Evaluation/ActivityNet/eval_detection.py (../shared/methods/ecm.md §6)"),
        _activitynet_preset(PROTOCOL_PRESETS["acrnet"], "ACRNet main.py with mmaction2 ActivityNetLocalization "
                            "(../shared/methods/acrnet.md §6)"),
    )
})

DATASET_NAMES = {"thumos14": "THUMOS14", "activitynet": "ActivityNet"}


def ground_truth_dataset(gt: AnnotationSet) -> str:
    """``thumos14`` when every annotated class is a THUMOS14 class name, else ``activitynet``."""
    from tadkit.data.synthetic import THUMOS14_CLASSES

    labels = {seg.label for video in gt.videos.values() for seg in video.segments}
    return "thumos14" if labels and labels <= set(THUMOS14_CLASSES) else "activitynet"


def check_preset_fits(preset: ProtocolPreset, gt: AnnotationSet) -> None:
    """The one rule: a preset scores the dataset it was written for (module doc)."""
    kind = ground_truth_dataset(gt)
    if preset.dataset == kind:
        return
    other = preset.name.removesuffix("-anet") if preset.dataset == "activitynet" else f"{preset.name}-anet"
    raise TadkitError(
        f"preset {preset.name} is {preset.paper}'s {DATASET_NAMES[preset.dataset]} protocol, and this ground truth is "
        f"{DATASET_NAMES[kind]}-like ({len(gt.classes)} classes); use --preset {other} (--all-presets picks the "
        "ground truth's own)", file=gt.source or None, field="preset")


def protocol_preset(name: str) -> ProtocolPreset:
    if name not in PROTOCOL_PRESETS:
        raise TadkitError(f"unknown protocol preset {name!r}; choose one of {', '.join(PROTOCOL_PRESETS)}",
                          field="preset")
    return PROTOCOL_PRESETS[name]


@dataclass
class PresetResult:
    """An :class:`EvalResult` plus the preset that produced it (every report names it)."""

    preset: str
    description: str
    result: EvalResult
    ambiguous_deleted: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def mAP(self) -> list[float]:
        return self.result.mAP

    @property
    def average_mAP(self) -> float:
        return self.result.average_mAP

    def to_dict(self) -> dict:
        out = self.result.to_dict()
        out.update(preset=self.preset, preset_description=self.description,
                   ambiguous_deleted=self.ambiguous_deleted, preset_notes=list(self.notes))
        return out

    def format_table(self) -> str:
        lines = [self.description]
        if self.ambiguous_deleted:
            lines.append(f"note: {self.ambiguous_deleted} predictions overlapping Ambiguous segments deleted")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines + [self.result.format_table()])


def evaluate_preset(
    gt: AnnotationSet,
    dets: DetectionSet,
    name: str,
    subset: str | None = None,
    strict: bool = False,
    blocked: str | os.PathLike | Iterable[str] | None = None,
) -> PresetResult:
    """Score ``dets`` exactly as the official code of preset ``name`` does (see the module doc).

    ``gt``: THUMOS14 test with its Ambiguous segments (the evalkit directory); the preset removes
    the videos its list excludes. ``subset`` defaults to the preset's (``test``).
    """
    preset = protocol_preset(name)
    check_preset_fits(preset, gt)
    subset = preset.subset if subset is None else subset
    sub = gt.subset(subset)
    if not sub.videos:
        raise TadkitError(f"no ground-truth video in subset {subset!r}", file=gt.source or None, field="subset")
    num_amb = sum(len(v.ambiguous) for v in sub.videos.values())
    if preset.ambiguous in ("matlab", "drop-overlapping") and num_amb == 0:
        raise TadkitError(
            f"preset {name} needs the THUMOS14 Ambiguous segments, and this ground truth has none "
            "(pass the evalkit directory, e.g. ../shared/data/thumos14/evalkit/test)",
            file=gt.source or None, field="ambiguous")
    deleted = 0
    if preset.ambiguous == "drop-overlapping":
        dets, deleted = drop_ambiguous_overlaps(sub, dets)
    notes = []
    kept = sub
    if preset.video_list:
        vl = VIDEO_LISTS[preset.video_list]
        kept = exclude_videos(sub, vl.exclude)
        if len(kept.videos) != vl.size:
            notes.append(f"the preset scores {vl.size} videos ({vl.source}); this GT gives {len(kept.videos)}")
    result = evaluate(kept, dets, preset.evaluator, tiou_thresholds=list(preset.tiou), subset=subset,
                      blocked=blocked, strict=strict, unknown_videos=preset.outside_videos)
    return PresetResult(preset=name, description=preset.describe(), result=result,
                        ambiguous_deleted=deleted, notes=notes)


def evaluate_all_presets(
    gt: AnnotationSet, dets: DetectionSet, names: Sequence[str] | None = None, subset: str | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
) -> list[PresetResult]:
    """The same detections under every preset of the ground truth's dataset (``names``: a subset, in that order)."""
    kind = ground_truth_dataset(gt)
    names = names or [n for n, p in PROTOCOL_PRESETS.items() if p.dataset == kind]
    return [evaluate_preset(gt, dets, n, subset=subset, blocked=blocked) for n in names]


def format_presets_table(results: Sequence[PresetResult]) -> str:
    """One table: a row per preset, a column per tIoU used by any of them (mAP %), the average."""
    columns = sorted({round(t, 6) for r in results for t in r.result.tiou})
    head = f"{'preset':<12} {'evaluator':<12} {'videos':>6} " + " ".join(f"{t:>6.2f}" for t in columns) + \
        f" {'avg':>7}  avg over"
    datasets = sorted({DATASET_NAMES[PROTOCOL_PRESETS[r.preset].dataset] for r in results})
    lines = [f"the same detections under each paper's {' / '.join(datasets)} protocol (mAP %)", head]
    for r in results:
        by_t = {round(t, 6): m for t, m in zip(r.result.tiou, r.result.mAP)}
        cells = " ".join(f"{100 * by_t[t]:>6.2f}" if t in by_t else f"{'-':>6}" for t in columns)
        span = f"{min(r.result.tiou):g}-{max(r.result.tiou):g}"
        lines.append(f"{r.preset:<12} {PROTOCOL_PRESETS[r.preset].evaluator:<12} "
                     f"{r.result.counts.get('num_videos', 0):>6} {cells} {100 * r.average_mAP:>7.2f}  {span}")
    lines.append("")
    lines += [r.description + (f" [{r.ambiguous_deleted} predictions deleted]" if r.ambiguous_deleted else "")
              for r in results]
    return "\n".join(lines)


def presets_to_dict(results: Sequence[PresetResult]) -> dict:
    return {"presets": {r.preset: r.to_dict() for r in results}}


__all__ = [
    "AMBIGUOUS_RULES",
    "PROTOCOL_PRESETS",
    "THUMOS14_TEST_EXCLUDED",
    "VIDEO_LISTS",
    "PresetResult",
    "ProtocolPreset",
    "VideoList",
    "drop_ambiguous_overlaps",
    "evaluate_all_presets",
    "evaluate_preset",
    "check_preset_fits",
    "exclude_videos",
    "ground_truth_dataset",
    "format_presets_table",
    "matlab_colon",
    "presets_to_dict",
    "protocol_preset",
    "video_list",
]
