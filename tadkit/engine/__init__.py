"""tadkit.engine: the training engine every method shares.

* :mod:`~tadkit.engine.config` — YAML run configs (``load_config``, ``save_resolved``, ``Config``);
* :mod:`~tadkit.engine.trainer` — ``train(config, out_dir, resume, build_datasets_fn, evaluate_fn)``;
* :mod:`~tadkit.engine.checkpoint` — atomic, weights_only-safe checkpoints, ``load_checkpoint_model``;
* :mod:`~tadkit.engine.distributed` — DDP via ``torchrun`` (gloo on CPU, NCCL on CUDA), AMP;
* :mod:`~tadkit.engine.inference` — ``predict_windows`` (sharded under DDP, gathered without duplicates);
* :mod:`~tadkit.engine.run` — argument parsing for ``tadkit train CONFIG [--set k=v] [--out DIR] [--resume]``.
"""

from tadkit.engine.checkpoint import CheckpointManager, load_checkpoint, load_checkpoint_model, save_checkpoint
from tadkit.engine.config import Config, DataConfig, ModelConfig, TestConfig, TrainConfig, load_config, save_resolved
from tadkit.engine.distributed import DistContext, current_context, init_distributed
from tadkit.engine.inference import WindowPrediction, group_by_video, predict_windows
from tadkit.engine.trainer import TrainData, TrainResult, train

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
