"""Boundary max pooling speed: tadkit's vectorised sparse-table version vs loop ports, same process.

    OMP_NUM_THREADS=1 python benchmarks/boundary_pooling.py [--seed 0] [--loop-channels 8]

Sizes are AFSD's official ones: 512 / 1024 channels, 256 frames, 126 proposals (all pyramid points
of a 256-frame clip), batch 1 and 8. A "region" is one proposal pooled over all channels (start half
and end half), so regions/s = batch * 126 / seconds.

Baselines:
* "loop port": the literal Python port of ``boundary_max_pooling_kernel.cu`` (one output element at a
  time, ``boundary_max_pool_loop``). It is far too slow to run on all channels, so it is timed on
  ``--loop-channels`` channels and its rate scaled to the full channel count (its cost is linear in
  channels);
* "per-region torch": a Python loop over (sample, proposal) that slices the two ranges and takes a
  torch max over all channels at once (how a quick CPU port of the op is usually written).
Every case first checks that all implementations give the same values.
"""

from __future__ import annotations

import argparse

import torch

from _timing import best_of
from tadkit.methods.afsd.boundary_pooling import boundary_max_pool, boundary_max_pool_loop, region_bounds


def make_regions(batch: int, k: int, t: int, gen: torch.Generator) -> torch.Tensor:
    """Proposal-like regions: random segments inside the clip, boundary windows of 1/4 and 1/10 length."""
    centre = torch.rand(batch, k, generator=gen) * t
    length = torch.rand(batch, k, generator=gen) * t * 0.6 + 2
    s, e = centre - length / 2, centre + length / 2
    w = e - s + 1
    inner, outer = (w / 4).clamp(min=1), (w / 10).clamp(min=1)
    return torch.stack([s - outer, s + inner, e - inner, e + outer], -1).round()


def per_region_torch(x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    n, c, t = x.shape
    lo, hi = region_bounds(regions, t)
    half = c // 2
    out = x.new_empty(n, c, regions.shape[1])
    for b in range(n):
        for k in range(regions.shape[1]):
            s0, s1, e0, e1 = int(lo[b, k, 0]), int(hi[b, k, 0]), int(lo[b, k, 1]), int(hi[b, k, 1])
            out[b, :half, k] = x[b, :half, s0 : s1 + 1].amax(-1)
            out[b, half:, k] = x[b, half:, e0 : e1 + 1].amax(-1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop-channels", type=int, default=8)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(args.seed)
    t, k = 256, 126
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; T={t}, K={k}")
    header = (f"{'batch':>5} {'chan':>5} {'no-grad r/s':>12} {'train r/s':>10} {'per-region r/s':>15} {'loop port r/s':>14}"
              f" {'x per-region':>13} {'x loop':>8}   (ratios: no-grad / train path vs baseline)")
    print(header)
    for batch in (1, 8):
        for channels in (512, 1024):
            x = torch.randn(batch, channels, t, generator=gen)
            regions = make_regions(batch, k, t, gen)
            fast = boundary_max_pool(x, regions)
            assert torch.equal(fast, per_region_torch(x, regions))
            sub = torch.cat([x[:, : args.loop_channels // 2], x[:, -(args.loop_channels // 2) :]], 1)
            loop_val, _ = boundary_max_pool_loop(sub, regions)
            assert torch.equal(loop_val, torch.cat([fast[:, : args.loop_channels // 2], fast[:, -(args.loop_channels // 2) :]], 1))
            num = batch * k
            t_fast = best_of(lambda: boundary_max_pool(x, regions), repeat=5)
            xg = x.clone().requires_grad_(True)
            assert torch.equal(boundary_max_pool(xg, regions).detach(), fast)
            t_train = best_of(lambda: boundary_max_pool(xg, regions), repeat=5)
            t_region = best_of(lambda: per_region_torch(x, regions), repeat=2)
            t_loop_sub = best_of(lambda: boundary_max_pool_loop(sub, regions), repeat=1)
            t_loop = t_loop_sub * channels / sub.shape[1]
            print(
                f"{batch:>5} {channels:>5} {num / t_fast:>12,.0f} {num / t_train:>10,.0f} {num / t_region:>15,.0f}"
                f" {num / t_loop:>14,.1f} {t_region / t_fast:>6,.1f}/{t_region / t_train:<5,.1f}"
                f" {t_loop / t_fast:>5,.0f}/{t_loop / t_train:<5,.0f}"
            )


if __name__ == "__main__":
    main()
