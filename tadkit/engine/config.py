"""Run configuration: YAML -> nested, validated dataclasses.

A config file has five top-level keys; ``model.name`` (a registered method, see
:mod:`tadkit.methods`) is required, every other key has a generic default (a method's own configs
in ``configs/<method>/`` set its official values)::

    _base_: ../base.yaml       # optional: merge this file over another one (or a list of them)
    data:  {...}               # DataConfig
    model: {name: a2net, kwargs: {...}}
    train: {...}               # TrainConfig
    test:  {...}               # TestConfig
    out_dir: runs/a2net        # where `tadkit train` writes (``--out`` wins)

Rules:

* unknown keys, wrong types and bad values raise :class:`TadkitError` naming the file and the dotted
  key (``train.lr``); a near-miss key gets a "did you mean" hint;
* relative paths (``data.annotations``, ``data.features``, ``data.video_info``,
  ``test.blocked_videos``, ``test.video_classifier``, each entry of ``test.fuse``, ``out_dir``) resolve against the directory of the file that sets them;
  paths given with ``--set`` resolve against the current directory;
* ``--set train.lr=1e-4`` overrides any key; the value is parsed with ``yaml.safe_load`` so it
  keeps its YAML type (``[30, 40]`` is a list, ``null`` is None);
* float fields also accept strings such as ``1e-4``: YAML 1.1 (PyYAML) reads an exponent without a
  dot as a string, and that is the usual way to write a learning rate.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from tadkit.errors import TadkitError
from tadkit.utils.io import write_text

BASE_KEY = "_base_"

# Choice lists shared with tadkit.data / tadkit.evaluation come from torch-free modules.
from tadkit.data.choices import CLIP_PLANS, FPS_TABLES, PROTOCOLS, RESAMPLE_MODES  # noqa: E402
DATA_MODES = ("sliding", "resample", "video")
PAD_MODES = ("repeat", "zero")
START_GRIDS = ("features", "frames")
TIME_BASES = ("duration", "features")
OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("multistep", "cosine")
SCHEDULER_UNITS = ("epoch", "iteration")
DEVICES = ("auto", "cpu", "cuda")
ZERO_LENGTH = ("keep", "drop", "error")
SNAPSHOT_STATES = ("weights", "full")
WEIGHT_DECAY_PARAMS = ("all", "weights")



# --------------------------------------------------------------------------------------------------
# Field declarations: type hints give the type, metadata gives choices / range checks / path-ness.
# --------------------------------------------------------------------------------------------------

Check = tuple[Callable[[Any], bool], str]


def _opt(default: Any, *, choices: Sequence[Any] | None = None, check: Check | None = None, path: bool = False,
         doc: str = "") -> Any:
    """A dataclass field with validation metadata; list/dict defaults are copied per instance."""
    meta = {"choices": tuple(choices) if choices else None, "check": check, "path": path, "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


POSITIVE: Check = (lambda v: v > 0, "must be > 0")
NON_NEGATIVE: Check = (lambda v: v >= 0, "must be >= 0")
UNIT_INTERVAL: Check = (lambda v: 0 <= v <= 1, "must be in [0, 1]")
OPEN_UNIT_LEFT: Check = (lambda v: 0 < v <= 1, "must be in (0, 1]")
OPEN_UNIT: Check = (lambda v: 0 < v < 1, "must be in (0, 1)")
ALL_POSITIVE: Check = (lambda v: all(x > 0 for x in v), "every entry must be > 0")
INCREASING_POSITIVE: Check = (
    lambda v: all(x > 0 for x in v) and all(a < b for a, b in zip(v, v[1:])),
    "must be positive and strictly increasing",
)
TIOUS: Check = (lambda v: len(v) > 0 and all(0 < x <= 1 for x in v), "must be a non-empty list of values in (0, 1]")


@dataclass
class DataConfig:
    """Where the data are and how videos become windows (lengths in feature steps)."""

    annotations: str | None = _opt(None, path=True, doc="annotation file or directory (any tadkit format)")
    annotation_format: str | None = _opt(None, doc="reader name; null = detect")
    video_info: str | None = _opt(None, path=True, doc="video-info CSV for formats without durations/fps")
    zero_length: str = _opt("keep", choices=ZERO_LENGTH, doc="policy for start == end segments")
    features: str | None = _opt(None, path=True, doc="feature directory (with features.json)")
    fps_table: str | None = _opt(None, choices=FPS_TABLES, doc="per-video fps table, e.g. a2net_thumos")
    subset_train: str | list[str] = _opt("validation", doc="subset(s) to train on (THUMOS14: validation)")
    subset_test: str | list[str] = _opt("test", doc="subset(s) to evaluate on")
    val_fraction: float | None = _opt(None, check=OPEN_UNIT, doc="hold out this fraction of the training videos (seeded by val_seed, never a test video) as a validation split; evaluations then score it too (val_* metrics)")
    val_seed: int = _opt(0, check=NON_NEGATIVE, doc="seed of the val_fraction split (fixed across training seeds)")
    mode: str = _opt("sliding", choices=DATA_MODES, doc="sliding windows | resample (whole video to resample_length) | video (whole video at its own rate; training cuts at most window features, ActionFormer's truncate_feats)")
    window: int = _opt(128, check=POSITIVE, doc="sliding window length in features (mode video: the longest training sample, max_seq_len)")
    trunc_thresh: float = _opt(0.5, check=UNIT_INTERVAL, doc="mode video, training: a random cut is accepted when a segment keeps this share of its length")
    crop_ratio: list[float] | None = _opt(None, check=(lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1, "must be [lo, hi] with 0 < lo <= hi <= 1"), doc="mode video, training: also cut videos shorter than window to a random share in [lo, hi] (ActionFormer [0.9, 1.0]); null = off")
    stride_train: int | None = _opt(None, check=POSITIVE, doc="null = window // 4 (A2Net)")
    stride_test: int | None = _opt(None, check=POSITIVE, doc="null = window // 2 (A2Net)")
    min_gt_coverage: float | None = _opt(None, check=UNIT_INTERVAL, doc="null = 0.9 sliding / 0 resample")
    coverage_inclusive: bool = _opt(False, doc="keep GT with coverage >= min instead of > min")
    drop_empty: bool = _opt(True, doc="training: drop windows without a kept GT")
    require_full_gt: bool = _opt(False, doc="training: keep a window only if a GT lies wholly inside (AFSD)")
    pad: str = _opt("repeat", choices=PAD_MODES)
    start_grid: str = _opt("features", choices=START_GRIDS)
    official_quirks: bool = _opt(False, doc="reproduce A2Net's window-count quirks")
    resample_length: int | None = _opt(None, check=POSITIVE, doc="resample mode: L; null = own length (mode video: every video linearly resampled to L, ActionFormer's force_upsampling)")
    resample_mode: str = _opt("interpolate", choices=RESAMPLE_MODES)
    time_base: str = _opt("duration", choices=TIME_BASES)
    min_features: int = _opt(1, check=POSITIVE, doc="skip videos with fewer features")
    class_agnostic: bool = _opt(False, doc="training: collapse every label to one class 'action' (proposal models; label with test.video_classifier)")
    feature_subsample: int = _opt(1, check=POSITIVE, doc="keep every k-th feature (OpenTAD sample_stride; AFSD 3): stride_frames x k")
    # end-to-end methods (data kind "frames"): window / stride_train / stride_test count frames there
    frames: str | None = _opt(None, path=True, doc="frame directory written by `tadkit data frames` (end-to-end methods)")
    stream: str = _opt("rgb", choices=("rgb", "flow", "rgb+flow"), doc="frames: which stored stream(s) the model reads (rgb+flow: channels concatenated, for test.fuse)")
    crop_size: int = _opt(96, check=POSITIVE, doc="frames: random (train) / centre (test) crop, pixels")
    contrastive: bool = _opt(True, doc="frames, training: build the boundary-contrastive copy of each clip (AFSD)")
    clip_plan: str = _opt("thumos14", choices=CLIP_PLANS, doc="frames, training: official THUMOS14 clips (sliding, GTs clipped, ioa rule) or ActivityNet's (one clip at offset 0, every GT, pad -> 0; AFSD anet_dataset.py)")
    frame_fps: float = _opt(10.0, check=POSITIVE, doc="frames: the store's frame rate (tadkit detect decodes a video to it)")
    frame_size: int = _opt(112, check=POSITIVE, doc="frames: the store's square frame side, pixels (likewise)")
    frame_max_frames: int | None = _opt(None, check=POSITIVE, doc="frames: the store was made with `tadkit data frames --max-frames N` (ActivityNet: each video at its own rate, <= N frames); frame_fps is then not used")

    def window_dataset_kwargs(self, training: bool) -> dict[str, Any]:
        """Keyword arguments for :class:`tadkit.data.dataset.WindowDataset` (annotations/store excluded)."""
        sliding = self.mode == "sliding"
        return {
            "mode": self.mode,
            "window": self.window if self.mode in ("sliding", "video") else self.resample_length,
            "stride": (self.stride_train if training else self.stride_test) if sliding else None,
            "subset": self.subset_train if training else self.subset_test,
            "training": training,
            "min_gt_coverage": self.min_gt_coverage,
            "coverage_inclusive": self.coverage_inclusive,
            "drop_empty": self.drop_empty,
            "require_full_gt": self.require_full_gt,
            "pad": self.pad,
            "start_grid": self.start_grid,
            "official_quirks": self.official_quirks,
            "resample_mode": self.resample_mode,
            "time_base": self.time_base,
            "min_features": self.min_features,
            "feature_subsample": self.feature_subsample,
            "trunc_thresh": self.trunc_thresh,
            "video_length": self.resample_length if self.mode == "video" else None,
            "crop_ratio": None if self.crop_ratio is None else tuple(self.crop_ratio),
        }


@dataclass
class ModelConfig:
    """``build_model(name, **kwargs)``; kwargs are checked by the model itself."""

    name: str | None = _opt(None, doc="registered method (tadkit.methods) or 'package.module:SPEC'")
    kwargs: dict[str, Any] = _opt({})


@dataclass
class TrainConfig:
    """Optimisation: optimizer, parameter groups, LR schedule, epoch- or iteration-based runs.

    Generic defaults (Adam 1e-4, batch 48, 40 epochs, x0.1 after 30); each method's configs set its own.
    """

    epochs: int = _opt(40, check=POSITIVE, doc="epochs (ignored when iterations is set)")
    iterations: int | None = _opt(None, check=POSITIVE, doc="iteration-based run: optimizer steps in all; null = epochs")
    optimizer: str = _opt("adam", choices=OPTIMIZERS)
    betas: list[float] = _opt([0.9, 0.999], check=(lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "must be two values in [0, 1)"))
    param_groups: list[dict[str, Any]] = _opt([], doc="[{params: REGEX on parameter names, lr | lr_scale, weight_decay}] first match wins")
    scheduler: str = _opt("multistep", choices=SCHEDULERS)
    scheduler_unit: str = _opt("epoch", choices=SCHEDULER_UNITS, doc="step the LR schedule per epoch or per iteration")
    warmup: int = _opt(0, check=NON_NEGATIVE, doc="linear warm-up length in scheduler units")
    warmup_epochs: int | None = _opt(None, check=NON_NEGATIVE, doc="warm-up length in epochs (x steps per epoch in a per-iteration schedule); overrides warmup")
    warmup_from_zero: bool = _opt(False, doc="warm-up lr = lr x step / (warmup - 1): 0 at the first step, lr from step warmup - 1 on (ActionFormer's LinearWarmupCosineAnnealingLR); false = lr x (step + 1) / (warmup + 1)")
    min_lr_factor: float = _opt(0.0, check=UNIT_INTERVAL, doc="cosine: final lr = lr x this")
    lr_decay_iterations: list[int] = _opt([], check=ALL_POSITIVE, doc="multistep per iteration: lr *= lr_gamma after these steps")
    batch_size: int = _opt(48, check=POSITIVE, doc="GLOBAL batch: split evenly over DDP processes")
    lr: float = _opt(1e-4, check=POSITIVE)
    weight_decay: float = _opt(0.0, check=NON_NEGATIVE)
    weight_decay_params: str = _opt("all", choices=WEIGHT_DECAY_PARAMS, doc="which parameters weight decay applies to: all, or weights = only the weight of Linear / Conv layers (no decay on biases, norms, scales: ActionFormer's make_optimizer)")
    model_ema_decay: float | None = _opt(None, check=OPEN_UNIT, doc="keep an exponential moving average of the weights (updated after every optimizer step, ActionFormer 0.999); evaluation, best.pt, tadkit test / detect use it; null = off")
    lr_decay_epochs: list[int] = _opt([30], check=INCREASING_POSITIVE, doc="lr *= lr_gamma after these epochs")
    lr_gamma: float = _opt(0.1, check=OPEN_UNIT_LEFT)
    seed: int = _opt(1, check=NON_NEGATIVE)
    deterministic: bool = _opt(True)
    num_workers: int = _opt(0, check=NON_NEGATIVE)
    shuffle: bool = _opt(True)
    drop_last: bool = _opt(False)
    eval_every: int = _opt(0, check=NON_NEGATIVE, doc="evaluate every N epochs (iterations in an iteration-based run) and at the end; 0 = off")
    checkpoint_every: int | None = _opt(None, check=POSITIVE, doc="iteration-based runs: checkpoint every N steps; null = eval_every or 100")
    eval_epochs: list[int] = _opt([], check=ALL_POSITIVE, doc="also evaluate after these epochs")
    best_metric: str | None = _opt(None, doc="metric (higher = better) that selects best.pt")
    amp: bool = _opt(False, doc="mixed precision; CUDA only (ignored with a note on CPU)")
    grad_clip: float | None = _opt(None, check=POSITIVE, doc="max global grad norm; null = off")
    log_every: int = _opt(10, check=NON_NEGATIVE, doc="steps between step-level logs; 0 = off")
    keep_checkpoints: int | None = _opt(0, check=NON_NEGATIVE, doc="epoch_XXX.pt (step_XXXXXX.pt) snapshots kept besides last.pt and best.pt, newest first; 0 = none, null = all")
    keep_epochs: list[int] = _opt([], check=ALL_POSITIVE, doc="epochs (steps) whose snapshot is always kept")
    snapshot_state: str = _opt("weights", choices=SNAPSHOT_STATES, doc="what epoch snapshots hold: weights (model + config, like best.pt) or full (also optimizer, scheduler, RNG: a run can restart from one)")
    device: str = _opt("auto", choices=DEVICES)
    find_unused_parameters: bool = _opt(True, doc="DDP: tolerate parameters without gradient")
    tensorboard: bool = _opt(True)


@dataclass
class TestConfig:
    """Inference, post-processing and evaluation protocol."""

    __test__ = False  # not a pytest test class despite the name

    protocol: str = _opt("thumos14", choices=PROTOCOLS)
    tiou_thresholds: list[float] | None = _opt(None, check=TIOUS, doc="null = protocol default")
    batch_size: int = _opt(1, check=POSITIVE)
    nms: dict[str, Any] | None = _opt(None, doc="tadkit.postprocess.nms.NMSConfig mapping (preset + overrides); null = the method's default")
    cas: dict[str, Any] = _opt({}, doc="options of the method's CAS -> segments step (cas methods)")
    drop_reversed: bool = _opt(True, doc="drop detections with end < start before NMS (they can never match)")
    clip_after_nms: bool = _opt(False, doc="clip times to the video AFTER the NMS and drop segments with end <= start (AFSD's ActivityNet test loop); default: clipped when the windows are merged")
    duplicate_cliffdiving: bool = _opt(False, doc="copy CliffDiving detections as Diving (A2Net)")
    drop_ambiguous: bool = _opt(False, doc="delete detections overlapping the GT's Ambiguous segments (ACRNet protocol)")
    blocked_videos: str | None = _opt(None, path=True, doc="ActivityNet blocked-video list to drop")
    video_classifier: str | None = _opt(None, path=True, doc="video-level class scores (CUHK JSON layout or a weak model's video_scores.json): label class-agnostic proposals with the top-k classes, score x class score (docs/postprocess.md)")
    video_classifier_topk: int = _opt(1, check=POSITIVE, doc="classes per video for test.video_classifier (AFSD official: 1)")
    fuse: list[str] = _opt([], path=True, doc="more checkpoints whose raw outputs are averaged with --checkpoint's (RGB + flow)")
    fuse_streams: list[list[int]] | None = _opt(None, doc="per fused model [lo, hi] input channels, --checkpoint first (e.g. [[0, 1024], [1024, 2048]]); null = whole input")

    def thresholds(self) -> list[float]:
        from tadkit.evaluation.detection import default_tiou

        return list(self.tiou_thresholds) if self.tiou_thresholds is not None else default_tiou(self.protocol)

    def nms_config(self, file: str | None = None, default: Mapping[str, Any] | None = None):
        """The :class:`tadkit.postprocess.nms.NMSConfig` this section describes (``default``: the
        method's, when ``nms`` is null); None when neither sets one."""
        from tadkit.postprocess.nms import NMSConfig

        mapping = self.nms if self.nms is not None else default
        if mapping is None:
            return None
        try:
            return NMSConfig.from_dict(dict(mapping), file=file)
        except TadkitError as error:
            raise TadkitError(error.message, file=file, field=f"test.{error.field or 'nms'}") from None


@dataclass
class Config:
    """A whole run. ``source`` (the YAML it came from) is bookkeeping, not part of the config."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    out_dir: str | None = _opt(None, path=True)
    source: str | None = field(default=None, compare=False, repr=False, metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (str/int/float/bool/None/list/dict) — YAML- and weights_only-safe."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], file: str | os.PathLike | None = None, strict: bool = True,
                  from_data: bool = False) -> "Config":
        """Validate a plain dict (e.g. the one stored in a checkpoint); paths are taken as they are.

        ``strict=False`` drops unknown keys instead of failing (a checkpoint from another tadkit version).
        ``from_data=True``: the dict was read from a data file (a checkpoint), so its ``model.name`` may
        name a built-in, registered or already loaded method but never a module to import.
        """
        if not isinstance(data, Mapping):
            raise TadkitError(f"a config must be a mapping, got {type(data).__name__}", file=file)
        config = _build(cls, dict(data), "", _ErrorContext(file, strict=strict))
        config.source = None if file is None else str(file)
        _cross_validate(config, _ErrorContext(file, from_data=from_data))
        return config

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, width=100)


# --------------------------------------------------------------------------------------------------
# Validation machinery
# --------------------------------------------------------------------------------------------------


@dataclass
class _ErrorContext:
    file: str | os.PathLike | None
    overrides: frozenset[str] = frozenset()
    strict: bool = True  # False: unknown keys are dropped (configs stored by other tadkit versions)
    from_data: bool = False  # True: read from a data file (checkpoint): model.name may not import a module

    def error(self, key: str, message: str) -> TadkitError:
        where = " (from --set)" if key in self.overrides or any(key.startswith(k + ".") for k in self.overrides) else ""
        return TadkitError(message + where, file=None if self.file is None else str(self.file), field=key or None)


def _schema_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


# keys of earlier tadkit versions -> their new names (a saved run config names the old key)
RENAMED_KEYS = {"train.keep_last": "train.keep_checkpoints (0 = only last.pt and best.pt; null = every snapshot)"}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _build(cls: type, data: dict[str, Any], prefix: str, ctx: _ErrorContext) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in _schema_fields(cls)}
    for key in list(data):
        if key not in known and not ctx.strict:
            del data[key]
        elif key not in known:
            dotted = _join(prefix, str(key))
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            suggestion = f"; did you mean {_join(prefix, hint[0])!r}?" if hint else ""
            if dotted in RENAMED_KEYS:
                suggestion = f"; renamed {RENAMED_KEYS[dotted]!r}"
            raise ctx.error(dotted, f"unknown key (valid keys here: {', '.join(known)}){suggestion}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in data:
            continue
        dotted = _join(prefix, name)
        value = _coerce(data[name], hints[name], dotted, ctx)
        values[name] = _check_field(value, f, dotted, ctx)
    return cls(**values)


def _check_field(value: Any, f: dataclasses.Field, key: str, ctx: _ErrorContext) -> Any:
    if value is None:
        return value
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ctx.error(key, f"{value!r} is not one of {', '.join(map(str, choices))}{suggestion}")
    check = f.metadata.get("check")
    if check is not None:
        predicate, message = check
        if not predicate(value):
            raise ctx.error(key, f"{message}, got {value!r}")
    return value


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is not None:
        return str(hint).replace("typing.", "")
    if dataclasses.is_dataclass(hint):
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str, ctx: _ErrorContext) -> Any:
    """Check ``value`` against a type hint, converting only where it is lossless (int -> float, '1e-4')."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise ctx.error(key, f"must not be null (expected {_type_name(hint)})")
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, ctx)
            except TadkitError:
                continue
        raise ctx.error(key, f"expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    if dataclasses.is_dataclass(hint):
        if value is None:
            return hint()
        if not isinstance(value, Mapping):
            raise ctx.error(key, f"expected a mapping of {hint.__name__} keys, got {type(value).__name__}")
        return _build(hint, dict(value), key, ctx)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ctx.error(key, f"expected a list, got {value!r} ({type(value).__name__})")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{key}[{i}]", ctx) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ctx.error(key, f"expected a mapping with string keys, got {type(value).__name__}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ctx.error(key, f"expected true or false, got {value!r} ({type(value).__name__})")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ctx.error(key, f"expected an integer, got {value!r} ({type(value).__name__})")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            number = float(value)  # '1e-4': PyYAML reads exponents without a dot as strings
        else:
            raise ctx.error(key, f"expected a number, got {value!r} ({type(value).__name__})")
        if not math.isfinite(number):
            raise ctx.error(key, f"must be finite, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise ctx.error(key, f"expected a string, got {value!r} ({type(value).__name__})")
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # schema bug, not user input


def _cross_validate(config: Config, ctx: _ErrorContext) -> None:
    """Rules that involve more than one key."""
    config.test.nms_config(None if ctx.file is None else str(ctx.file))  # validates test.nms early
    if config.model.name:  # optional in a partial (base) config; required where a model is built
        from tadkit.methods import get_method

        get_method(config.model.name, file=None if ctx.file is None else str(ctx.file),  # unknown names fail here
                   allow_import=not ctx.from_data)
    for i, group in enumerate(config.train.param_groups):
        _check_param_group(group, f"train.param_groups[{i}]", ctx)
    if config.train.best_metric is not None and config.train.eval_every == 0 and not config.train.eval_epochs:
        raise ctx.error("train.best_metric", "needs evaluation: set train.eval_every or train.eval_epochs")


PARAM_GROUP_KEYS = {"params", "lr", "lr_scale", "weight_decay"}


def _check_param_group(group: Mapping[str, Any], key: str, ctx: _ErrorContext) -> None:
    unknown = sorted(set(group) - PARAM_GROUP_KEYS)
    if unknown:
        raise ctx.error(f"{key}.{unknown[0]}", f"unknown key (valid: {', '.join(sorted(PARAM_GROUP_KEYS))})")
    pattern = group.get("params")
    if not isinstance(pattern, str) or not pattern:
        raise ctx.error(f"{key}.params", "must be a regular expression matched against parameter names")
    try:
        re.compile(pattern)
    except re.error as error:
        raise ctx.error(f"{key}.params", f"invalid regular expression: {error}") from None
    if "lr" in group and "lr_scale" in group:
        raise ctx.error(f"{key}.lr", "set lr or lr_scale, not both")
    for name in ("lr", "lr_scale", "weight_decay"):
        value = group.get(name)
        if value is None:
            continue
        try:  # YAML may give '1e-5' as a string
            number = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise ctx.error(f"{key}.{name}", f"expected a non-negative number, got {value!r}")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in _schema_fields(type(obj))}
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def path_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Dotted keys of every path-valued field (resolved against the config file's directory)."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in _schema_fields(cls):
        dotted = _join(prefix, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(path_keys(hints[f.name], dotted))
        elif f.metadata.get("path"):
            keys.append(dotted)
    return keys


# --------------------------------------------------------------------------------------------------
# Loading: files, _base_ merge, path resolution, --set overrides
# --------------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TadkitError("config file not found" if not path.exists() else "config path is not a file", file=str(path))
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise TadkitError(f"invalid YAML{where}: {problem}", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise TadkitError(f"cannot read config: {error}", file=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TadkitError(f"a config must be a mapping of sections, got {type(data).__name__}", file=str(path))
    return data


def _resolve_path_value(value: Any, base_dir: Path) -> Any:
    if isinstance(value, list):  # list-of-paths fields (test.fuse)
        return [_resolve_path_value(v, base_dir) for v in value]
    if not isinstance(value, str) or not value:
        return value  # wrong types are reported by validation with the right key
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else Path(os.path.normpath(base_dir / path)))


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative path values in ``raw`` -> absolute, against ``base_dir`` (the file that set them)."""
    for dotted in path_keys():
        node: Any = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = _resolve_path_value(node[leaf], base_dir)
    return raw


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` wins; mappings merge key by key, everything else (lists too) is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_raw(path: Path, stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One file with its ``_base_`` chain merged in, every path already absolute."""
    path = Path(os.path.normpath(path.absolute()))
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise TadkitError(f"_base_ cycle: {chain}", file=str(path), field=BASE_KEY)
    raw = _read_yaml(path)
    bases = raw.pop(BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise TadkitError("_base_ must be a file name or a list of file names", file=str(path), field=BASE_KEY)
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = Path(_resolve_path_value(base, path.parent))
        merged = _deep_merge(merged, _load_raw(base_path, (*stack, path)))
    return _deep_merge(merged, _resolve_paths(raw, path.parent))


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=1e-4"`` -> ``("train.lr", "1e-4")`` with the value parsed by ``yaml.safe_load``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise TadkitError(f"--set expects KEY=VALUE with a dotted key such as train.lr=1e-4, got {text!r}", field=key or None)
    if key == BASE_KEY or key.startswith(BASE_KEY + "."):
        raise TadkitError("_base_ cannot be overridden with --set", field=key)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise TadkitError(f"--set value {value!r} is not valid YAML: {str(error).splitlines()[0]}", field=key) from None
    return key, parsed


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str], base_dir: Path | None = None) -> tuple[dict, set[str]]:
    """Set dotted keys in ``raw`` (paths resolved against ``base_dir``, default the current directory)."""
    base_dir = Path.cwd() if base_dir is None else base_dir
    paths = set(path_keys())
    keys: set[str] = set()
    for text in overrides:
        key, value = parse_override(text)
        if key in paths:
            value = _resolve_path_value(value, base_dir)
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise TadkitError(f"cannot set {key}: {prefix} is a {type(child).__name__}, not a section", field=key)
            node = child
        node[parts[-1]] = value
        keys.add(key)
    return raw, keys


PACKAGED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def find_config(path: str | os.PathLike) -> Path:
    """``path`` as given, else a config shipped with tadkit: ``a2net/thumos14`` or ``a2net/thumos14.yaml``
    finds ``tadkit/configs/a2net/thumos14.yaml`` (so a non-editable install has every config)."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    for candidate in (PACKAGED_CONFIGS / given, PACKAGED_CONFIGS / given.with_suffix(".yaml"),
                      PACKAGED_CONFIGS / Path(*given.parts[1:]) if given.parts[:1] == ("configs",) else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return given


def packaged_configs() -> list[str]:
    """Names of the configs shipped with tadkit (``method/name``)."""
    return sorted(str(p.relative_to(PACKAGED_CONFIGS).with_suffix("")) for p in PACKAGED_CONFIGS.glob("*/*.yaml"))


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``None`` = defaults only), merge ``_base_`` files, apply ``--set`` overrides.

    ``path`` may name a shipped config (``a2net/thumos14``, see :func:`find_config`).
    """
    if path is not None:
        path = find_config(path)
    raw = _load_raw(Path(path)) if path is not None else {}
    raw, keys = apply_overrides(raw, overrides)
    ctx = _ErrorContext(path, frozenset(keys))
    config = _build(Config, raw, "", ctx)
    config.source = None if path is None else str(Path(path).absolute())
    _cross_validate(config, ctx)
    return config


def save_resolved(config: Config, path: str | os.PathLike) -> Path:
    """Write the fully resolved config (absolute paths, every default spelled out) atomically."""
    header = "# Resolved tadkit config"
    if config.source:
        header += f" (from {config.source})"
    text = f"{header}; `tadkit train` reads it back unchanged.\n{config.to_yaml()}"
    write_text(path, text)
    return Path(path)


__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "TestConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_override",
    "path_keys",
    "save_resolved",
]
