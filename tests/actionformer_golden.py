"""Loader of the ActionFormer golden fixture (official code run unchanged at reduced sizes).

``$TADKIT_ACTIONFORMER_FIXTURE`` names the .npz (default ``<shared>/fixtures/actionformer_official_small.npz``),
with its .json beside it (same stem); every size and setting comes from the .json's ``model`` section.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from conftest import shared_path
from tadkit.methods.actionformer.points import make_points, pyramid_strides


@dataclass
class Golden:
    path: Path
    arrays: dict[str, np.ndarray]
    model: dict[str, Any]  # the official resolved model config (train_cfg, test_cfg inside)
    videos: list[dict[str, Any]]

    @property
    def strides(self) -> list[int]:
        m = self.model
        return pyramid_strides(int(m["scale_factor"]), int(m["backbone_arch"][-1]), int(m.get("fpn_start_level", 0)))

    def points(self, level_lengths: list[int]) -> list[Tensor]:
        return make_points(level_lengths, self.strides, [tuple(r) for r in self.model["regression_range"]])

    def eval_outputs(self, b: int) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Video ``b``'s raw eval head outputs per level: logits (T_l, C), offsets (T_l, 2), mask (T_l,)."""
        levels = range(len(self.strides))
        get = self.arrays.__getitem__
        cls = [torch.from_numpy(get(f"eval/v{b}/cls_logits/l{l}")[0].T.copy()) for l in levels]
        off = [torch.from_numpy(get(f"eval/v{b}/offsets/l{l}")[0].T.copy()) for l in levels]
        mask = [torch.from_numpy(get(f"eval/v{b}/mask/l{l}")[0, 0].copy()) for l in levels]
        return cls, off, mask


def fixture_path() -> Path:
    env = os.environ.get("TADKIT_ACTIONFORMER_FIXTURE")
    if env:
        path = Path(env)
        if not path.exists():
            pytest.skip(f"needs {path} (TADKIT_ACTIONFORMER_FIXTURE)")
        return path
    return shared_path("fixtures", "actionformer_official_small.npz")


def load_golden() -> Golden:
    path = fixture_path()
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        pytest.skip(f"needs {meta_path} (the fixture's .json with the same stem)")
    meta = json.loads(meta_path.read_text())
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return Golden(path, arrays, meta["model"], meta["videos"])
