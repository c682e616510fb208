"""ActionFormer training and inference speed: tadkit vs the OFFICIAL code, same sizes, same inputs, one process.

A training iteration is what the official ``train_one_epoch`` does per batch minus the scheduler and the
model-EMA update: forward of a batch of whole videos (each code pads it its own way), the losses,
backward, gradient clipping (``clip_grad_l2norm``) and an AdamW step (weight decay on conv/linear weights
only, as the official ``make_optimizer``; the same parameter names in both groups). tadkit's side is the
engine protocol of :class:`tadkit.methods.actionformer.method.ActionFormerMethod` (``forward(batch)`` +
``loss``) with the optimizer of ``tadkit.engine.trainer.build_optimizer``; the engine's own bookkeeping
is measured separately by ``benchmarks/train_throughput.py``.

Like for like: the official ``LocPointTransformer`` is built from the same config (official key names),
tadkit's model loads its state dict through ``from_official_state_dict``, and before any timing the
two must give the same three losses on the same batch (droppath off for that check; float32 on both
sides, so ``--loss-rtol`` 1e-4 is rounding headroom, while a wrong padding, mask or target rule moves
a loss by 1e-2 or more). Then ``--repeats`` rounds each time ``--iters`` iterations of both codes,
alternating which goes first; the report is seconds per 100 iterations (median over rounds) and the
median of the per-round ratios tadkit / official (< 1: tadkit is faster). Inference: seconds per video
for ``model.eval()`` forward + decoding with the multiclass soft-NMS and voting (official: its C++ op;
tadkit: ``decode`` + the official steps -> seconds conversion), median over videos and rounds.

Default sizes are the official THUMOS14 I3D config (``configs/thumos_i3d.yaml``): input 2048, embd
512, 4 heads, window 19, max_seq_len 2304, 20 classes, batch 2, droppath 0.1; video lengths are drawn
uniformly in [max_seq_len / 2, max_seq_len] (the official training crop caps them at max_seq_len).
``--small`` is a quick preset (input 256, embd 128, max_seq_len 576).

    python benchmarks/actionformer_speed.py --official /tmp/actionformer_release
    python benchmarks/actionformer_speed.py --official /tmp/actionformer_release --small
    python benchmarks/actionformer_speed.py --tadkit-only --small      # no official checkout needed

Preparing an official checkout on CPU (nothing of it is copied into tadkit; the checkout is not modified):

1. ``git clone https://github.com/happyharrycn/actionformer_release /tmp/actionformer_release``
   (measured at commit 61ea7eb).
2. Build its 1D NMS op (C++, CPU): ``cd /tmp/actionformer_release/libs/utils && python setup.py
   build_ext --inplace`` puts ``nms_1d_cpu*.so`` next to ``nms.py``, where this script looks for it
   (also in ``<checkout>/build``). It needs a C++ compiler and torch's headers; with torch >= 2.x
   the build takes a few minutes.
3. CPU workarounds, applied by this script at import time:

   * ``libs/utils/__init__.py`` imports the official evaluator (pandas, joblib) and the training
     utilities; only ``libs/utils/nms.py`` is needed here, so the script registers ``libs.utils``
     as a bare package holding ``batched_nms`` instead of running that ``__init__`` (alternatively
     ``pip install pandas joblib``).
   * ``nms_1d_cpu`` is imported by its bare name, so the build directory goes on ``sys.path``.
   * Window 3 is refused with ``--official``: the official sliding-chunk attention fails on it (tadkit's
     does not); 5 and up work.
   * Nothing else: the model code follows its parameters' device (no ``.cuda()`` on the model path);
     DataParallel, the data loaders and the config files are not used.

Timings depend on the machine's load; run it on an idle machine (``--threads`` sets torch's threads).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import statistics
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from tadkit.errors import TadkitError

# the official THUMOS14 I3D recipe (configs/thumos_i3d.yaml) and the quick preset
DEFAULT_SIZES = {"input_dim": 2048, "embd_dim": 512, "n_head": 4, "window": 19, "max_seq_len": 2304,
                 "batch": 2, "num_classes": 20}
SMALL_SIZES = {"input_dim": 256, "embd_dim": 128, "n_head": 4, "window": 19, "max_seq_len": 576,
               "batch": 2, "num_classes": 20}
LEARNING_RATE, WEIGHT_DECAY = 1e-4, 0.05  # configs/thumos_i3d.yaml
# official feature timing of THUMOS14 I3D (fps 30, stride 4, 16-frame clips): only the seconds conversion reads it
FPS, FEAT_STRIDE, FEAT_NUM_FRAMES = 30.0, 4, 16
MISSING_CHECKOUT = """\
{problem}
Prepare an official ActionFormer checkout (see this script's docstring):
  git clone https://github.com/happyharrycn/actionformer_release /tmp/actionformer_release
  cd /tmp/actionformer_release/libs/utils && python setup.py build_ext --inplace
then pass --official /tmp/actionformer_release (or --tadkit-only for tadkit's half alone)."""


# ----------------------------------------------------------------------------------------- inputs


@dataclass
class Video:
    """One random whole video: features (C, T) float32, segments (N, 2) on the feature grid, labels (N,)."""

    video_id: str
    feats: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.feats.shape[1])

    @property
    def duration(self) -> float:
        return (self.length * FEAT_STRIDE + FEAT_NUM_FRAMES) / FPS


def random_videos(count: int, input_dim: int, max_seq_len: int, num_classes: int, seed: int) -> list[Video]:
    """``count`` videos of lengths uniform in [max_seq_len / 2, max_seq_len], 2-8 actions each."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(count):
        length = int(rng.integers(max_seq_len // 2, max_seq_len + 1))
        n = int(rng.integers(2, 9))
        starts = rng.uniform(0, length - 10, n)
        ends = np.minimum(starts + rng.uniform(2, min(200, length / 4), n), length - 1)
        videos.append(Video(
            f"video_{i:04d}",
            torch.from_numpy(rng.standard_normal((input_dim, length), dtype=np.float32)),
            torch.from_numpy(np.stack([starts, ends], 1).astype(np.float32)),
            torch.from_numpy(rng.integers(0, num_classes, n).astype(np.int64)),
        ))
    return videos


def tadkit_batch(videos: Sequence[Video]) -> dict[str, Any]:
    """The batch layout of tadkit's collate (features (B, C, T) zero-padded to the longest video)."""
    longest = max(v.length for v in videos)
    features = torch.zeros(len(videos), videos[0].feats.shape[0], longest)
    for i, v in enumerate(videos):
        features[i, :, : v.length] = v.feats
    return {
        "features": features,
        "meta": [{"video_id": v.video_id, "valid_length": v.length, "t0": 0.0, "step": FEAT_STRIDE / FPS}
                 for v in videos],
        "targets": [{"segments": v.segments, "labels": v.labels} for v in videos],
    }


def official_video_list(videos: Sequence[Video]) -> list[dict[str, Any]]:
    """The video dicts the official datasets yield (what ``LocPointTransformer.forward`` reads)."""
    return [{"video_id": v.video_id, "feats": v.feats, "segments": v.segments, "labels": v.labels,
             "fps": FPS, "duration": v.duration, "feat_stride": FEAT_STRIDE, "feat_num_frames": FEAT_NUM_FRAMES}
            for v in videos]


# ----------------------------------------------------------------------------------------- models


def model_config(sizes: dict[str, int], droppath: float) -> dict[str, Any]:
    """The official ``model`` config (every key) at these sizes, through tadkit's config (which checks it)."""
    from tadkit.methods.actionformer.model import ActionFormerConfig

    config = ActionFormerConfig(
        input_dim=sizes["input_dim"], embd_dim=sizes["embd_dim"], fpn_dim=sizes["embd_dim"],
        head_dim=sizes["embd_dim"], n_head=sizes["n_head"], n_mha_win_size=sizes["window"],
        max_seq_len=sizes["max_seq_len"], num_classes=sizes["num_classes"],
        train_cfg={"droppath": droppath},
    )
    return config.to_dict()


def tadkit_optimizer(model: torch.nn.Module, official: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW with the official groups, built by tadkit's engine (``weight_decay_params: weights``)."""
    from tadkit.engine import Config
    from tadkit.engine.trainer import build_optimizer

    config = Config.from_dict({
        "model": {"name": "actionformer", "kwargs": official},
        "train": {"optimizer": "adamw", "lr": LEARNING_RATE, "weight_decay": WEIGHT_DECAY,
                  "weight_decay_params": "weights", "device": "cpu"},
    })
    return build_optimizer(model, config)


def same_groups_optimizer(model: torch.nn.Module, like: torch.optim.Optimizer,
                          names_of: dict[int, str]) -> torch.optim.Optimizer:
    """AdamW on ``model`` with ``like``'s groups, matched by parameter name (the two models share names)."""
    params = dict(model.named_parameters())
    groups = [{"params": [params[names_of[id(p)]] for p in g["params"]], "weight_decay": g["weight_decay"]}
              for g in like.param_groups]
    covered = sum(len(g["params"]) for g in groups)
    if covered != len(params):
        raise TadkitError(f"the optimizer groups cover {covered} of the official model's {len(params)} parameters",
                          field="optimizer")
    return torch.optim.AdamW(groups, lr=LEARNING_RATE)


def set_droppath(model: torch.nn.Module, prob: float) -> None:
    """Set every stochastic-depth module's drop probability (both codes name it ``drop_prob``)."""
    for module in model.modules():
        if type(module).__name__ == "AffineDropPath":
            module.drop_prob = prob


# ----------------------------------------------------------------------------------------- official code


def find_nms_build(checkout: Path) -> Path | None:
    """The directory holding the compiled ``nms_1d_cpu`` op of the checkout, if built."""
    for directory in (checkout / "libs" / "utils", checkout / "build"):
        if any(directory.glob("nms_1d_cpu*.so")) or any(directory.glob("nms_1d_cpu*.pyd")):
            return directory
    return None


def import_official(checkout: Path) -> Callable[..., torch.nn.Module]:
    """``make_meta_arch`` of the official checkout (workarounds in the module docstring). Raises
    FileNotFoundError with what to do when the checkout or its NMS build is missing."""
    if not (checkout / "libs" / "modeling" / "meta_archs.py").is_file():
        raise FileNotFoundError(f"{checkout} is not an ActionFormer checkout (no libs/modeling/meta_archs.py)")
    build = find_nms_build(checkout)
    if build is None:
        raise FileNotFoundError(f"{checkout}: the nms_1d_cpu op is not built (no nms_1d_cpu*.so in libs/utils "
                                "or build/)")
    for name in [m for m in sys.modules if m == "libs" or m.startswith("libs.")]:
        del sys.modules[name]  # another checkout's (or project's) `libs` must not answer
    sys.path[:0] = [str(checkout), str(build)]
    utils = types.ModuleType("libs.utils")  # a bare package: its __init__ would import the evaluator
    utils.__path__ = [str(checkout / "libs" / "utils")]
    sys.modules["libs.utils"] = utils
    importlib.import_module("libs")
    utils.batched_nms = importlib.import_module("libs.utils.nms").batched_nms
    return importlib.import_module("libs.modeling").make_meta_arch


# ----------------------------------------------------------------------------------------- steps


def official_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, videos: list[dict], clip: float
                        ) -> float:
    losses = model(videos)
    optimizer.zero_grad(set_to_none=True)
    losses["final_loss"].backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(losses["final_loss"].detach())


def tadkit_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, clip: float) -> float:
    loss = model.loss(model(batch), batch)["total"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def official_detect(model: torch.nn.Module, video: dict) -> int:
    """One video through the official eval path (forward, decoding, C++ soft-NMS + voting, seconds)."""
    return int(model([video])[0]["scores"].numel())


@torch.no_grad()
def tadkit_detect(model: torch.nn.Module, batch: dict, video: Video) -> int:
    """One video through tadkit's ``forward`` + ``decode`` and the official steps -> seconds."""
    from tadkit.methods.actionformer.inference import feature_steps_to_seconds

    detections = model.decode(model(batch), batch)[0]
    feature_steps_to_seconds(detections.segments, FPS, FEAT_STRIDE, FEAT_NUM_FRAMES, video.duration)
    return int(detections.scores.numel())


def seconds(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------- the benchmark


@dataclass
class Side:
    """One code's model, optimizer and step functions over the shared inputs."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_step: Callable[[int], float]  # batch index -> loss
    detect: Callable[[int], int]  # video index -> number of detections
    train_seconds: list[float] = field(default_factory=list)
    infer_seconds: list[float] = field(default_factory=list)


def compare_losses(official: torch.nn.Module, tadkit: torch.nn.Module, videos: Sequence[Video], rtol: float
                   ) -> dict[str, dict[str, float]]:
    """Both models' losses on one batch (droppath off); raises if any differs by more than ``rtol``."""
    models = (official, tadkit)
    for model in models:
        model.train()
        set_droppath(model, 0.0)
    with torch.no_grad():
        theirs = official(official_video_list(videos))
        batch = tadkit_batch(videos)
        ours = tadkit.loss(tadkit(batch), batch)
    result = {"official": {k: float(theirs[k]) for k in ("cls_loss", "reg_loss", "final_loss")},
              "tadkit": {"cls_loss": float(ours["cls"]), "reg_loss": float(ours["reg"]),
                         "final_loss": float(ours["total"])}}
    for key, expected in result["official"].items():
        got = result["tadkit"][key]
        if not abs(got - expected) <= rtol * abs(expected):
            raise TadkitError(f"tadkit {got!r} vs official {expected!r} (rtol {rtol}): not the same model, "
                              "so the timings would not compare", field=key)
    return result


def run_rounds(sides: Sequence[Side], batches: int, iters: int, repeats: int, videos: int) -> None:
    """``repeats`` rounds; each times ``iters`` training iterations then ``videos`` detections per side,
    the side order alternating between rounds."""
    for side in sides:  # warm-up (allocator, lazy imports, one-time buffers): not timed
        side.model.train()
        side.train_step(0)
        side.model.eval()
        side.detect(0)
    for r in range(repeats):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for side in order:
            side.model.train()
            side.train_seconds.append(seconds(lambda: [side.train_step(i % batches) for i in range(iters)]) / iters)
            side.model.eval()
            side.infer_seconds.append(seconds(lambda: [side.detect(v) for v in range(videos)]) / videos)
            print(f"round {r + 1}/{repeats} {side.name}: {side.train_seconds[-1]:.2f} s / training iteration, "
                  f"{side.infer_seconds[-1]:.3f} s / video", file=sys.stderr, flush=True)  # progress of long runs


def summary(sides: Sequence[Side]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in sides:
        out[side.name] = {"train_s_per_100_iters": 100 * statistics.median(side.train_seconds),
                          "infer_s_per_video": statistics.median(side.infer_seconds),
                          "rounds_train_s_per_iter": side.train_seconds, "rounds_infer_s_per_video": side.infer_seconds}
    if len(sides) == 2:
        official, tadkit = sides
        out["train_ratio_tadkit_over_official"] = statistics.median(
            t / o for t, o in zip(tadkit.train_seconds, official.train_seconds))
        out["infer_ratio_tadkit_over_official"] = statistics.median(
            t / o for t, o in zip(tadkit.infer_seconds, official.infer_seconds))
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--official", type=Path, metavar="DIR", help="an official actionformer_release checkout "
                       "with its NMS op built (see the docstring)")
    where.add_argument("--tadkit-only", action="store_true", help="time tadkit alone (no comparison)")
    parser.add_argument("--small", action="store_true", help="quick preset: " + json.dumps(SMALL_SIZES))
    for key in DEFAULT_SIZES:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"default {DEFAULT_SIZES[key]}")
    parser.add_argument("--droppath", type=float, default=0.1, help="train_cfg.droppath (official 0.1)")
    parser.add_argument("--iters", type=int, default=5, help="timed training iterations per round")
    parser.add_argument("--videos", type=int, default=2, help="timed inference videos per round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (medians over them)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss-rtol", type=float, default=1e-4, help="loss agreement required before timing")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    for name in ("iters", "videos", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if not 0.0 <= args.droppath < 1.0:
        parser.error("--droppath must be in [0, 1)")
    if args.official is not None and args.window == 3:
        parser.error("--window 3 breaks the official local attention (a 1-step window overlap; it fails in "
                     "_sliding_chunks_query_key_matmul): use 5 or more")
    preset = SMALL_SIZES if args.small else DEFAULT_SIZES
    args.sizes = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in preset.items()}
    bad = [k for k, v in args.sizes.items() if v < 1]
    if bad:
        parser.error(f"--{bad[0].replace('_', '-')} must be >= 1")
    return args


def build_sides(args: argparse.Namespace, videos: list[Video]) -> tuple[list[Side], dict[str, Any]]:
    """The timed sides (official first when compared) and the loss check's figures."""
    from tadkit.methods.actionformer.method import build_actionformer_method, from_official_state_dict

    official_cfg = model_config(args.sizes, args.droppath)
    clip = float(official_cfg["train_cfg"]["clip_grad_l2norm"])
    batch_size = args.sizes["batch"]
    batched = [videos[i: i + batch_size] for i in range(0, len(videos), batch_size)]
    tadkit_batches = [tadkit_batch(b) for b in batched]
    official_batches = [official_video_list(b) for b in batched]
    single = [tadkit_batch([v]) for v in videos]
    official_single = official_video_list(videos)
    torch.manual_seed(args.seed)
    checks: dict[str, Any] = {}
    if args.official is not None:
        make_meta_arch = import_official(args.official)
        official = make_meta_arch("LocPointTransformer", **copy.deepcopy(official_cfg))
        tadkit = from_official_state_dict(official.state_dict(), **copy.deepcopy(official_cfg))
        checks["losses"] = compare_losses(official, tadkit, batched[0], args.loss_rtol)
        for model in (official, tadkit):
            set_droppath(model, args.droppath)
    else:
        tadkit = build_actionformer_method(**copy.deepcopy(official_cfg))
    tadkit_opt = tadkit_optimizer(tadkit, official_cfg)
    tadkit.train()
    checks["padded_length"] = {"tadkit": [int(tadkit.pad_batch(b)[0].shape[-1]) for b in tadkit_batches]}
    sides = [Side("tadkit", tadkit, tadkit_opt,
                  lambda i: tadkit_train_step(tadkit, tadkit_opt, tadkit_batches[i], clip),
                  lambda v: tadkit_detect(tadkit, single[v], videos[v]))]
    if args.official is not None:
        names_of = {id(p): n for n, p in tadkit.named_parameters()}
        official_opt = same_groups_optimizer(official, tadkit_opt, names_of)
        checks["padded_length"]["official"] = [args.sizes["max_seq_len"]] * len(batched)  # its preprocessing
        sides.insert(0, Side("official", official, official_opt,
                             lambda i: official_train_step(official, official_opt, official_batches[i], clip),
                             lambda v: official_detect(official, official_single[v])))
    return sides, checks


def report(args: argparse.Namespace, videos: list[Video], checks: dict[str, Any], result: dict[str, Any]) -> str:
    s = args.sizes
    lines = [
        f"sizes: input {s['input_dim']}, embd {s['embd_dim']}, heads {s['n_head']}, window {s['window']}, "
        f"max_seq_len {s['max_seq_len']}, batch {s['batch']}, classes {s['num_classes']}, droppath {args.droppath}; "
        f"video lengths {[v.length for v in videos]}; {args.threads} thread(s), {args.repeats} rounds",
        f"padded batch lengths: {checks['padded_length']}",
    ]
    if "losses" in checks:
        lines.append("same weights, same batch, losses: " + "; ".join(
            f"{k} official {checks['losses']['official'][k]:.6f} tadkit {checks['losses']['tadkit'][k]:.6f}"
            for k in ("cls_loss", "reg_loss", "final_loss")))
    for name in ("official", "tadkit"):
        if name in result:
            lines.append(f"{name:>8}: {result[name]['train_s_per_100_iters']:.1f} s / 100 training iterations, "
                         f"{result[name]['infer_s_per_video']:.3f} s / video inference incl. NMS")
    if "train_ratio_tadkit_over_official" in result:
        lines.append(f"ratio tadkit / official (median of per-round ratios): training "
                     f"{result['train_ratio_tadkit_over_official']:.3f}, inference "
                     f"{result['infer_ratio_tadkit_over_official']:.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    count = max(args.sizes["batch"] * min(args.iters, 4), args.videos)  # up to 4 distinct batches, reused
    videos = random_videos(count, args.sizes["input_dim"], args.sizes["max_seq_len"], args.sizes["num_classes"],
                           args.seed)
    try:
        sides, checks = build_sides(args, videos)
    except FileNotFoundError as error:
        print(MISSING_CHECKOUT.format(problem=error), file=sys.stderr)
        return 2
    except TadkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_rounds(sides, len(checks["padded_length"]["tadkit"]), args.iters, args.repeats, args.videos)
    result = summary(sides)
    print(report(args, videos, checks, result))
    if args.json is not None:
        from tadkit.utils.io import write_json

        write_json(args.json, {"sizes": args.sizes, "droppath": args.droppath, "threads": args.threads,
                               "lengths": [v.length for v in videos], **checks, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
