"""`tadkit extract` on one process vs two torchrun ranks (gloo, CPU), with and without worker decoding.

The same synthetic videos (``tadkit data synth --video``) and the same random-weight I3D (same cost as
the Kinetics weights) go through four runs, each rank with one torch thread:

    1 process x 1 thread          --workers 0 (decode between forward passes)
    2 ranks   x 1 thread          --workers 0
    1 process x 1 thread          --workers 1 (decode in a DataLoader worker while the network runs)
    2 ranks   x 1 thread          --workers 1

It prints the wall-time ratio of two ranks to one process (target <= 0.6 on a 2-core machine), frames/s
per rank, the share of each rank's time spent decoding and in the network, and the largest difference
between the features of each run and the first (the outputs must be the same).

    python benchmarks/extract_scaling.py [--videos 6] [--duration 20] [--size 64] [--stack 16] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RANK_LINE = re.compile(r"rank (\d+): (\d+) videos, (\d+) frames in ([\d.]+) s \(([\d.]+) frames/s\); "
                       r"decoding ([\d.]+) s, network ([\d.]+) s")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    out["OMP_NUM_THREADS"] = "1"
    return out


def prepare(work: Path, videos: int, duration: float, size: int) -> tuple[Path, Path]:
    import torch

    from tadkit.data.synthetic_video import VideoSynthConfig, generate_video_dataset
    from tadkit.utils.io import torch_save
    from tadkit.video.i3d import I3D

    synth = work / "synth"
    if not (synth / "annotations.json").exists():
        generate_video_dataset(synth, VideoSynthConfig(seed=0, videos=videos, subsets=("validation",), size=size,
                                                       duration=duration), progress=False)
    weights = work / "rgb.pt"
    if not weights.exists():
        torch.manual_seed(0)
        torch_save({"state_dict": I3D().state_dict(), "source": "random"}, weights)
    return synth / "videos", weights


def run(ranks: int, workers: int, videos: Path, weights: Path, out: Path, stack: int) -> tuple[float, list[dict]]:
    launcher = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    command = [*launcher, "-m", "tadkit.cli", "extract", str(videos), "--out", str(out), "--weights", str(weights),
               "--stack", str(stack), "--step", str(stack), "--threads", "1", "--workers", str(workers),
               "--overwrite", "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    per_rank = []
    for match in RANK_LINE.finditer(done.stdout):
        rank, count, frames, seconds, fps, decode, network = match.groups()
        per_rank.append({"rank": int(rank), "videos": int(count), "frames": int(frames), "seconds": float(seconds),
                         "fps": float(fps), "decode": float(decode), "network": float(network)})
    return wall, per_rank


def max_difference(a: Path, b: Path) -> float:
    names = sorted(p.name for p in a.glob("*.npy"))
    if names != sorted(p.name for p in b.glob("*.npy")):
        return float("inf")
    return max(float(np.abs(np.load(a / n) - np.load(b / n)).max()) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--duration", type=float, default=20.0, help="typical video length in seconds (10 fps)")
    parser.add_argument("--size", type=int, default=64, help="synthetic frame side (upscaled to 224 by extraction)")
    parser.add_argument("--stack", type=int, default=16)
    parser.add_argument("--work", type=Path, default=None, help="keep videos and outputs here (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        videos, weights = prepare(work, args.videos, args.duration, args.size)
        print(f"{len(list(videos.glob('*.mp4')))} synthetic videos, stack {args.stack}, os.cpu_count() = {os.cpu_count()}")
        runs = [(1, 0), (2, 0), (1, 1), (2, 1)]
        results = {}
        for ranks, workers in runs:
            out = work / f"out_{ranks}x1_w{workers}"
            results[(ranks, workers)] = (*run(ranks, workers, videos, weights, out, args.stack), out)
        base_wall, _, base_out = results[(1, 0)]
        print(f"\n{'run':<34}{'wall s':>8}{'ratio':>8}  per rank: frames/s, decode / network share of its time")
        for (ranks, workers), (wall, per_rank, out) in results.items():
            label = f"{ranks} process{'es' if ranks > 1 else ''} x 1 thread, --workers {workers}"
            shares = "; ".join(f"r{r['rank']} {r['fps']:.1f} f/s, {100 * r['decode'] / r['seconds']:.0f}% / "
                               f"{100 * r['network'] / r['seconds']:.0f}%" for r in per_rank)
            print(f"{label:<34}{wall:>8.1f}{wall / base_wall:>8.2f}  {shares}")
        for (ranks, workers), (_, _, out) in results.items():
            print(f"max |features - 1 process, --workers 0| for {ranks} x --workers {workers}: "
                  f"{max_difference(out, base_out):.2e}")
        ratio = results[(2, 0)][0] / base_wall
        print(f"\n2 ranks / 1 process wall time (workers 0): {ratio:.2f} (target <= 0.6)")
        print("decode share with --workers 1 is time spent in the worker, overlapping the network; "
              "the shares can then add up to more than 100%")


if __name__ == "__main__":
    main()
