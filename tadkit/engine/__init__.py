"""tadkit.engine: the training engine every method shares.

* :mod:`~tadkit.engine.config` — YAML run configs (``load_config``, ``save_resolved``, ``Config``);
* :mod:`~tadkit.engine.trainer` — ``train(config, out_dir, resume, build_datasets_fn, evaluate_fn)``;
* :mod:`~tadkit.engine.checkpoint` — atomic, weights_only-safe checkpoints, ``load_checkpoint_model``;
* :mod:`~tadkit.engine.distributed` — DDP via ``torchrun`` (gloo on CPU, NCCL on CUDA), AMP;
* :mod:`~tadkit.engine.inference` — ``predict_windows`` (sharded under DDP, gathered without duplicates);
* :mod:`~tadkit.engine.run` — argument parsing for ``tadkit train CONFIG [--set k=v] [--out DIR] [--resume]``.
"""

import importlib
from typing import Any

# name -> submodule; imported on first attribute access (PEP 562) so that `tadkit train --help`
# and config validation do not import torch
_EXPORTS = {
    "CheckpointManager": "checkpoint", "load_checkpoint": "checkpoint", "load_checkpoint_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Config": "config", "DataConfig": "config", "ModelConfig": "config", "TestConfig": "config",
    "TrainConfig": "config", "load_config": "config", "save_resolved": "config",
    "DistContext": "distributed", "current_context": "distributed", "init_distributed": "distributed",
    "WindowPrediction": "inference", "group_by_video": "inference", "predict_windows": "inference",
    "TrainData": "data", "TrainResult": "trainer", "train": "trainer",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tadkit.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tadkit.engine.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CheckpointManager",
    "Config",
    "DataConfig",
    "DistContext",
    "ModelConfig",
    "TestConfig",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "WindowPrediction",
    "current_context",
    "group_by_video",
    "init_distributed",
    "load_checkpoint",
    "load_checkpoint_model",
    "load_config",
    "predict_windows",
    "save_checkpoint",
    "save_resolved",
    "train",
]
