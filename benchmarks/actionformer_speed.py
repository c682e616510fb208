"""ActionFormer training speed, tadkit vs the official code, same sizes, same weights, same batches, one run.

Both models train on the same random whole-video batches (THUMOS14-like lengths, ``--length-min`` ..
``max_seq_len`` features, a few actions each) with AdamW: the official ``LocPointTransformer`` through its
own ``forward(video_list)`` (padding, label assignment, losses), tadkit's through the engine protocol
(``forward(batch)`` + ``loss``). The official model is built from its repository's DEFAULTS merged with
``configs/thumos_i3d.yaml`` and the sizes given here; tadkit's loads its weights
(``from_official_state_dict``). Rounds alternate (``--steps`` steps of one, then of the other) so that a
changing machine load hits both alike; the result is seconds per 100 optimizer steps of each and their
ratio (median over rounds). Inference is not timed (the official NMS is a C++ extension this script does
not build: a stub module stands in for it, training never calls it, nor the evaluator, also stood in for).

The official code is read from a checkout given with ``--official`` (nothing is downloaded), e.g. from
the mirror: ``mkdir -p /tmp/af_official && git --git-dir /work/.mirror/happyharrycn+actionformer_release/repo
archive HEAD | tar -x -C /tmp/af_official``.

    OMP_NUM_THREADS=2 python benchmarks/actionformer_speed.py --official /tmp/af_official
        [--embd-dim 512] [--input-dim 2048] [--max-seq-len 2304] [--batch 2] [--steps 5] [--rounds 4]

Report what it prints, with the machine's load.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="checkout of happyharrycn/actionformer_release")
    parser.add_argument("--input-dim", type=int, default=2048)
    parser.add_argument("--embd-dim", type=int, default=512, help="embd_dim = fpn_dim = head_dim (official 512)")
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument("--max-seq-len", type=int, default=2304)
    parser.add_argument("--length-min", type=int, default=None, help="shortest video (default max_seq_len / 2)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per round and side")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def official_modules(root: Path) -> tuple[Any, dict[str, Any]]:
    """``make_meta_arch`` and the resolved THUMOS14 I3D config of the official checkout at ``root``."""
    import yaml

    if not (root / "libs" / "modeling" / "meta_archs.py").is_file():
        raise SystemExit(f"{root} is not an actionformer_release checkout (libs/modeling/meta_archs.py missing)")
    sys.modules.setdefault("nms_1d_cpu", types.ModuleType("nms_1d_cpu"))  # the C++ NMS: inference only
    # the official evaluator (libs/utils/metrics.py: pandas, joblib) is never used in training: a stand-in
    evaluator = types.ModuleType("libs.utils.metrics")
    evaluator.ANETdetection = evaluator.remove_duplicate_annotations = None
    sys.modules.setdefault("libs.utils.metrics", evaluator)
    sys.path.insert(0, str(root))
    from libs.core.config import DEFAULTS, _merge  # noqa: PLC0415 - the official code
    from libs.modeling import make_meta_arch  # noqa: PLC0415

    config = yaml.safe_load((root / "configs" / "thumos_i3d.yaml").read_text())
    _merge(copy.deepcopy(DEFAULTS), config)
    return make_meta_arch, config


def sized_config(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    config["dataset"].update(input_dim=args.input_dim, num_classes=args.num_classes, max_seq_len=args.max_seq_len)
    config["model"].update(embd_dim=args.embd_dim, fpn_dim=args.embd_dim, head_dim=args.embd_dim)
    from libs.core.config import _update_config  # noqa: PLC0415

    return _update_config(config)["model"]


def random_videos(args: argparse.Namespace, generator: torch.Generator) -> list[dict[str, Any]]:
    """One batch of whole videos (features C x T, segments on the feature grid, labels)."""
    low = args.length_min or args.max_seq_len // 2
    videos = []
    for index in range(args.batch):
        length = int(torch.randint(low, args.max_seq_len + 1, (1,), generator=generator))
        count = int(torch.randint(1, 6, (1,), generator=generator))
        starts = torch.rand(count, generator=generator) * (length - 40)
        segments = torch.stack([starts, starts + 4 + torch.rand(count, generator=generator) * 36], 1)
        videos.append({"video_id": f"v{index}", "feats": torch.randn(args.input_dim, length, generator=generator),
                       "segments": segments, "labels": torch.randint(0, args.num_classes, (count,), generator=generator),
                       "fps": 30.0, "duration": length * 4 / 30.0, "feat_stride": 4, "feat_num_frames": 16})
    return videos


def tadkit_batch(videos: list[dict[str, Any]]) -> dict[str, Any]:
    longest = max(v["feats"].shape[1] for v in videos)
    features = torch.zeros(len(videos), videos[0]["feats"].shape[0], longest)
    for i, v in enumerate(videos):
        features[i, :, : v["feats"].shape[1]] = v["feats"]
    return {"features": features,
            "meta": [{"video_id": v["video_id"], "t0": 0.0, "step": 4 / 30.0, "valid_length": v["feats"].shape[1]}
                     for v in videos],
            "targets": [{"segments": v["segments"], "labels": v["labels"]} for v in videos]}


def timed_steps(step, batches: list[Any]) -> float:
    started = time.perf_counter()
    for batch in batches:
        step(batch)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    make_meta_arch, config = official_modules(Path(args.official).resolve())
    model_config = sized_config(config, args)
    official = make_meta_arch(config["model_name"], **model_config).train()
    from tadkit.methods.actionformer.method import from_official_state_dict

    ours = from_official_state_dict(official.state_dict(), **{k: v for k, v in model_config.items()
                                                               if k not in ("backbone_type",)}).train()
    lr = config["opt"]["learning_rate"]
    official_opt = torch.optim.AdamW(official.parameters(), lr=lr)
    ours_opt = torch.optim.AdamW(ours.parameters(), lr=lr)

    def official_step(videos):
        official_opt.zero_grad(set_to_none=True)
        official(videos)["final_loss"].backward()
        official_opt.step()

    def ours_step(batch):
        ours_opt.zero_grad(set_to_none=True)
        ours.loss(ours(batch), batch)["total"].backward()
        ours_opt.step()

    generator = torch.Generator().manual_seed(args.seed)
    rounds: list[tuple[float, float]] = []
    for round_index in range(args.rounds + 1):  # round 0 warms up both (allocator, first-call costs)
        videos = [random_videos(args, generator) for _ in range(args.steps)]
        first = timed_steps(official_step, videos)
        second = timed_steps(ours_step, [tadkit_batch(v) for v in videos])
        if round_index:
            rounds.append((first, second))
            print(f"round {round_index}: official {100 * first / args.steps:.1f} s / 100 steps, "
                  f"tadkit {100 * second / args.steps:.1f} s / 100 steps", flush=True)
    official_s = statistics.median(r[0] for r in rounds) * 100 / args.steps
    ours_s = statistics.median(r[1] for r in rounds) * 100 / args.steps
    print(f"ActionFormer training, embd {args.embd_dim}, input {args.input_dim}, max_seq_len {args.max_seq_len}, "
          f"batch {args.batch}, {torch.get_num_threads()} threads: official {official_s:.1f} s / 100 steps, "
          f"tadkit {ours_s:.1f} s / 100 steps, ratio tadkit / official {ours_s / official_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
