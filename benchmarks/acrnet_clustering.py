"""ACRNet clustering + refining: straightforward loop ports of the official functions vs the
vectorised versions, at official training sizes (THUMOS14: 32 videos x 750 steps x 20 classes;
ActivityNet: 128 x 80 x 100 / 200), in one process.

Run: ``OMP_NUM_THREADS=1 python benchmarks/acrnet_clustering.py [--quick]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_of  # noqa: E402

from tadkit.methods.acrnet.clustering import (  # noqa: E402
    mask_refining,
    mask_refining_loop,
    temporal_clustering_loop,
    temporal_clustering_stats,
)
from tadkit.methods.acrnet.sampling import acrnet_sample_indices  # noqa: E402


def segment_scores(n: int, t: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-like inputs; half the videos are short (n < T) and upsampled by repetition, as the
    official training sampler does, so exact ties appear."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    cas = torch.randn(n, t, c, generator=g) * 3
    aas = torch.sigmoid(torch.randn(n, t, 1, generator=g) * 2)
    for b in range(0, n, 2):
        idx = torch.from_numpy(acrnet_sample_indices(max(2, t // 3), t, True, rng))
        cas[b], aas[b] = cas[b, idx], aas[b, idx]
    return (torch.softmax(cas, dim=-1) + aas) / 2, cas


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [("THUMOS14", 32, 750, 20), ("ActivityNet1.2", 128, 80, 100), ("ActivityNet1.3", 128, 80, 200)]
    if args.quick:
        sizes = [("THUMOS14/4", 8, 188, 20), ("ActivityNet/4", 32, 80, 50)]
    print(f"{'sizes':<16} {'N x T x C':>16} {'loop ms':>10} {'vectorised ms':>14} {'speed-up':>9} {'rounds':>7} equal")
    for name, n, t, c in sizes:
        seg, cas = segment_scores(n, t, c, 0)

        def loop():
            return mask_refining_loop(seg, temporal_clustering_loop(seg), cas)

        def fast():
            return mask_refining(seg, temporal_clustering_stats(seg)[0], cas)

        equal = torch.equal(loop(), fast())
        rounds = temporal_clustering_stats(seg)[1]
        t_loop = best_of(loop, 2)
        t_fast = best_of(fast, 3)
        print(f"{name:<16} {f'{n} x {t} x {c}':>16} {t_loop * 1e3:>10.1f} {t_fast * 1e3:>14.1f} "
              f"{t_loop / t_fast:>8.1f}x {rounds:>7d} {equal}")


if __name__ == "__main__":
    main()
