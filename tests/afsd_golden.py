"""Comparison helpers shared by the AFSD golden-fixture tests (THUMOS14 head: tests/test_afsd_official.py,
ActivityNet head: tests/test_afsd_anet_official.py).

Where a GroupNorm group normalises only a few values (the coarsest level of a small fixture), the official
float32 outputs are ill-conditioned, so those levels are compared with tadkit in float64 under a tolerance
scaled by the level's conditioning; every other level keeps 1e-5 relative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

RAW = ("loc", "conf", "prop_loc", "prop_conf", "center")  # per point of every level, levels concatenated
WELL_CONDITIONED_VALUES = 4  # a group normalising more values than this keeps the plain 1e-5 tolerance


def close(ours: torch.Tensor | np.ndarray, official: np.ndarray, tol: float, name: str) -> None:
    """``|ours - official| <= tol * max(1, |official|)`` everywhere, same shape."""
    ours = ours.detach().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    assert ours.shape == official.shape, f"{name}: {ours.shape} vs {official.shape}"
    err = np.abs(ours.astype(np.float64) - official.astype(np.float64))
    bound = tol * np.maximum(1.0, np.abs(official.astype(np.float64)))
    worst = float((err / bound).max()) if err.size else 0.0
    assert worst <= 1.0, f"{name}: max |diff| {err.max():.3g} exceeds {tol:g} * max(1, |official|)"


def float64_with_conditioning(model64: nn.Module, mixed_4f: np.ndarray | None, mixed_5c: np.ndarray):
    """tadkit's forward in float64, and per sequence length the largest ``max|x_g| / sqrt(var_g + eps)``
    over the GroupNorm inputs and groups seen at that length (a level's length identifies its layers).
    ``mixed_4f`` is None for a Mixed_5c-only head (ActivityNet)."""
    kappa: dict[int, float] = {}

    def record(module: nn.GroupNorm, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        x = inputs[0]
        groups = x.reshape(x.shape[0], module.num_groups, -1)
        ratio = groups.abs().amax(-1) / (groups.var(-1, unbiased=False) + module.eps).sqrt()
        kappa[x.shape[2]] = max(kappa.get(x.shape[2], 1.0), float(ratio.max()))

    hooks = [m.register_forward_hook(record) for m in model64.modules() if isinstance(m, nn.GroupNorm)]
    taps_4f = None if mixed_4f is None else torch.from_numpy(mixed_4f).double()
    try:
        with torch.no_grad():
            out = model64.forward_taps(taps_4f, torch.from_numpy(mixed_5c).double())
    finally:
        for hook in hooks:
            hook.remove()
    return out, kappa


def compare_levels(golden: dict[str, Any], ours: dict[str, torch.Tensor], official: dict[str, np.ndarray],
                   mixed_4f: np.ndarray | None, mixed_5c: np.ndarray, name: str) -> None:
    """Per-point outputs level by level: 1e-5 where GroupNorm is well conditioned, else the float64 bound."""
    cfg = golden["model"].config
    lengths = [int(n) for n in golden["meta"]["level_lengths"]]
    per_group = cfg.width // cfg.gn_groups
    ill = [i for i, n in enumerate(lengths) if per_group * n <= WELL_CONDITIONED_VALUES]
    out64, kappa = float64_with_conditioning(golden["model64"], mixed_4f, mixed_5c) if ill else ({}, {})
    edges = np.cumsum([0] + lengths)
    for key in RAW:
        for i in range(len(lengths)):
            part = slice(int(edges[i]), int(edges[i + 1]))
            label = f"{name}{key} level {i}"
            if i not in ill:
                close(ours[key][:, part], official[key][:, part], 1e-5, label)
                continue
            tol = 1e-5 * max(1.0, kappa[lengths[i]])
            reference = out64[key][:, part].numpy()
            close(reference, official[key][:, part], tol, f"{label} (official float32 vs tadkit float64)")
            close(ours[key][:, part], reference, tol, f"{label} (tadkit float32 vs float64)")
