"""A2Net cost per 128-feature window at the official THUMOS14 widths: MACs/FLOPs, parameters, CPU latency.

    python benchmarks/a2net_cost.py [--repeats 20] [--threads N]

Counting: multiply-accumulates (MACs) of every Conv1d, computed analytically as
C_out * C_in * k * L_out, cross-checked with ``torch.utils.flop_counter.FlopCounterMode`` (which
reports FLOPs = 2 x MACs for convolutions). Bias adds, ReLU and max-pool are not counted.
The paper's Table VI "1.24 GFLOPs" comes from fvcore in the authors' script
(Ablation-Comparison-Experiments/FLOPS-Counter/A2Net.py), which counts one MAC as one "flop".

Latency: forward pass (eval, no_grad) of the whole network on CPU, batch 1 and 16, median of
``--repeats`` runs after warm-up (baseline and ours alternate), also reported per window. The
baseline row runs the shared anchor-free head level by level (the official loop); ours packs the six
levels into one call per layer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tadkit.models.a2net import A2Net, A2NetConfig

PAPER_GFLOPS = 1.24  # Table VI
AUTHORS_FVCORE_COUNT = 1_239_018_496  # printed by the authors' FLOPs script (fvcore)
AUTHORS_PARAMS = 65_527_534  # same script, fvcore parameter count


def conv_macs(model: A2Net, window: int) -> dict[str, int]:
    """Analytic conv MACs per window, grouped by module, from hooks recording each conv's output length."""
    macs: dict[str, int] = {}
    hooks = []

    def record(name: str):
        def hook(module: nn.Conv1d, _inputs, output: torch.Tensor) -> None:
            per_window = module.out_channels * (module.in_channels // module.groups) * module.kernel_size[0]
            group = ".".join(name.split(".")[:2])
            macs[group] = macs.get(group, 0) + per_window * output.shape[-1]

        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv1d):
            hooks.append(module.register_forward_hook(record(name)))
    model.af.packed = False  # per-level calls: output lengths are the true level lengths
    with torch.no_grad():
        model(torch.zeros(1, model.config.in_dim, window))
    for hook in hooks:
        hook.remove()
    return macs


def flop_counter_flops(model: A2Net, window: int, packed: bool) -> int:
    model.af.packed = packed
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, model.config.in_dim, window))
    return counter.get_total_flops()


def paired_latency_ms(model: A2Net, batch: int, repeats: int) -> tuple[float, float]:
    """Median forward time (ms per batch) of the per-level AF head and of the packed one, timed
    alternately so that load changes on the machine hit both the same way."""
    x = torch.randn(batch, model.config.in_dim, model.config.window)
    times: dict[bool, list[float]] = {False: [], True: []}
    with torch.no_grad():
        for packed in (False, True):
            model.af.packed = packed
            for _ in range(2):
                model(x)
        for _ in range(repeats):
            for packed in (False, True):
                model.af.packed = packed
                start = time.perf_counter()
                model(x)
                times[packed].append(time.perf_counter() - start)
    return statistics.median(times[False]) * 1000.0, statistics.median(times[True]) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = A2NetConfig()
    model = A2Net(config).eval()
    params = sum(p.numel() for p in model.parameters())

    groups = conv_macs(model, config.window)
    total_macs = sum(groups.values())
    counted_flops = flop_counter_flops(model, config.window, packed=False)
    packed_flops = flop_counter_flops(model, config.window, packed=True)

    print(f"A2Net, official THUMOS14 widths, input (B, {config.in_dim}, {config.window})")
    print()
    print(f"{'module':<28}{'conv MACs':>16}")
    for name, value in groups.items():
        print(f"{name:<28}{value:>16,}")
    print(f"{'total':<28}{total_macs:>16,}")
    print()
    print(f"{'quantity':<52}{'value':>18}")
    print(f"{'conv MACs per window (analytic)':<52}{total_macs / 1e9:>16.4f} G")
    print(f"{'FLOPs per window (FlopCounterMode, 2 x MACs)':<52}{counted_flops / 1e9:>16.4f} G")
    print(f"{'  executed by our packed AF head (separator columns)':<52}{packed_flops / 1e9:>16.4f} G")
    print(f"{'paper Table VI (fvcore: 1 MAC counted as 1 flop)':<52}{PAPER_GFLOPS:>16.2f} G")
    print(f"{'authors script, fvcore count':<52}{AUTHORS_FVCORE_COUNT / 1e9:>16.4f} G")
    print(f"{'our MACs == authors fvcore count':<52}{str(total_macs == AUTHORS_FVCORE_COUNT):>18}")
    print(f"{'FlopCounterMode / (2 x analytic MACs)':<52}{counted_flops / (2 * total_macs):>18.4f}")
    print(f"{'parameters':<52}{params:>18,}")
    print(f"{'parameters == authors script':<52}{str(params == AUTHORS_PARAMS):>18}")
    print()
    print(f"CPU latency (torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats})")
    print(f"{'batch':>6}{'AF head':>16}{'ms / batch':>14}{'ms / window':>14}{'speed-up':>10}")
    for batch in (1, 16):
        base, ours = paired_latency_ms(model, batch, args.repeats)
        print(f"{batch:>6}{'per-level loop':>16}{base:>14.2f}{base / batch:>14.2f}{1.0:>10.2f}")
        print(f"{batch:>6}{'packed (ours)':>16}{ours:>14.2f}{ours / batch:>14.2f}{base / ours:>10.2f}")


if __name__ == "__main__":
    main()
