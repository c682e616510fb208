"""ActionFormer on tadkit's spine: the engine's ``forward(batch)`` / ``loss`` / ``decode`` around the
network of :mod:`.model`, the points of :mod:`.points`, the targets of :mod:`.targets`, the losses of
:mod:`.losses` and the per-video decoding of :mod:`.inference`.

A sample is a whole video (``data.mode: video``: randomly cut to at most ``max_seq_len`` features in
training, :mod:`tadkit.data.truncate`); ``forward`` zero-pads the batch to its longest sample rounded
up to the largest level-stride x window (``max_div_factor``) and masks the padding.

Deviations from the official code (numbered; docs/actionformer.md repeats them):

1. ``decode`` returns each video's post-NMS segments on the feature grid and the engine maps them to
   seconds with the sample's ``t0 + x * step`` in float64 (``t0`` = the store's time of feature 0,
   the clip centre for ``offset_frames: centre`` features, ``step`` = stride / fps) and clips them to
   the video duration: the official ``(x * feat_stride + 0.5 * num_frames) / fps`` in float32, the
   same numbers to float32 rounding when the features declare clip-centre timing.
2. Test batches may hold several videos (``test.batch_size``; the configs keep the official 1). A video
   then keeps its batch-of-one outputs unless it has no padding alone (its length is itself a padded
   length) or, with ``use_abs_pe``, the batch is longer than ``max_seq_len`` (the position table is
   stretched to it): see :meth:`.model.ActionFormer.padded_length`. The official code allows batch 1
   only.
3. Under DDP each process updates the loss normaliser with its own share of the batch (the official
   code trains with DataParallel: one normaliser for the whole batch).
4. Padding: the official ``preprocessing`` pads every training batch to ``max_seq_len`` and every test
   video to at least ``max_seq_len``; here the batch's longest sample decides: :func:`compact_length`
   keeps just the padded steps the official padding puts next to the real ones (at most a kernel
   half-width per level; the rest is never seen by a real step: masked convolutions, attention over
   unmasked keys, the position table sliced by position), rounded up to ``max_div_factor``. Every
   sample's outputs on its real steps, and the losses, are the official ones (a shorter sample has at
   least as many padded steps after it as the longest; tests/test_actionformer_official_spine.py
   compares both paddings); a short video costs its own length instead of ``max_seq_len``. Training
   still refuses a sample longer than ``max_seq_len``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from tadkit.errors import TadkitError
from tadkit.methods.actionformer.inference import decode_feature_grid
from tadkit.methods.actionformer.losses import LossNormaliser, actionformer_losses
from tadkit.methods.actionformer.model import ActionFormer, ActionFormerConfig, ActionFormerHeads
from tadkit.methods.actionformer.points import make_points
from tadkit.methods.actionformer.targets import assign_targets
from tadkit.models.base import WindowDetections


def compact_length(longest: int, official: int, multiple: int, strides: Sequence[int], reach: int) -> int:
    """The shortest padded length (a multiple of ``multiple``, at least ``longest``) that leaves the longest
    sample's real steps the outputs of the ``official`` padded length (deviation 4).

    Padded steps are not neutral next to the last real step: a channel LayerNorm turns a zeroed padded
    step into its bias, which a convolution's zero padding at the sequence end does not reproduce. What
    a real step sees is the ``reach`` (largest kernel half-width) steps after it, so at every level we
    keep ``min(official padded steps, reach)`` padded steps after the longest sample's real ones (a
    shorter sample has more after its own, as many as officially up to ``reach``).
    """
    padded = max(int(longest), 1)
    for stride in strides:
        real = -(-int(longest) // stride)
        official_padding = official // stride - real
        padded = max(padded, (real + min(official_padding, reach)) * stride)
    return -(-padded // int(multiple)) * int(multiple)


def batch_mask(lengths: Tensor, padded: int) -> Tensor:
    """(B, padded) bool: True on the first ``lengths[b]`` steps of sample b."""
    return torch.arange(padded, device=lengths.device)[None, :] < lengths[:, None]


class ActionFormerMethod(ActionFormer):
    """:class:`.model.ActionFormer` with the engine protocol and the loss normaliser (a buffer, so it is
    in checkpoints and a resumed run continues with the same value)."""

    def __init__(self, config: ActionFormerConfig) -> None:
        super().__init__(config)
        self.loss_normaliser = LossNormaliser(config.train_cfg.init_loss_norm)

    # ---- forward -------------------------------------------------------------------------------

    def pad_batch(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """The batch's features zero-padded to :func:`compact_length` (deviation 4), and their (B, T) mask."""
        feats = batch["features"]
        lengths = torch.as_tensor([int(m["valid_length"]) for m in batch["meta"]], device=feats.device)
        longest = int(lengths.max())
        if self.training and longest > self.config.max_seq_len:
            video = batch["meta"][int(lengths.argmax())]["video_id"]
            raise TadkitError(
                f"a training sample of {longest} features is longer than max_seq_len {self.config.max_seq_len}: "
                "train with data.mode video and data.window <= model.kwargs.max_seq_len",
                video=str(video), field="data.window",
            )
        config = self.config
        official = self.padded_length(longest, self.training)
        all_strides = [config.scale_factor**level for level in range(config.backbone_arch[2] + 1)]
        reach = max(config.embd_kernel_size, config.head_kernel_size, 3) // 2  # 3: the blocks' depthwise convs / pools
        padded = compact_length(longest, official, config.max_div_factor, all_strides, reach)
        mask = batch_mask(lengths, padded)
        feats = F.pad(feats[..., :longest], (0, padded - longest))
        # steps past a sample's own length are zero, whatever the collate put there (official padding 0)
        return feats * mask[:, None, :].to(feats.dtype), mask

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        feats, mask = self.pad_batch(batch)
        heads = self.forward_heads(feats, mask)
        return {"cls_logits": heads.cls_logits, "offsets": heads.offsets, "masks": heads.masks}

    def points_for(self, outputs: Mapping[str, Any]) -> list[Tensor]:
        """The official point layout for these outputs' level lengths."""
        levels: Sequence[Tensor] = outputs["cls_logits"]
        return make_points([int(x.shape[1]) for x in levels], self.fpn_strides, self.config.regression_range,
                           dtype=levels[0].dtype, device=levels[0].device)

    # ---- training --------------------------------------------------------------------------------

    def loss(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        points = self.points_for(outputs)
        train_cfg = self.config.train_cfg
        targets = batch["targets"]
        cls_targets, reg_targets = assign_targets(
            points, [t["segments"] for t in targets], [t["labels"] for t in targets], self.config.num_classes,
            train_cfg.center_sample, train_cfg.center_sample_radius,
        )
        heads = ActionFormerHeads(list(outputs["cls_logits"]), list(outputs["offsets"]), list(outputs["masks"]))
        losses = actionformer_losses(heads, points, cls_targets, reg_targets, self.loss_normaliser, train_cfg)
        return {"total": losses["final_loss"], "cls": losses["cls_loss"], "reg": losses["reg_loss"]}

    # ---- inference -------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, outputs: Mapping[str, Any], batch: Mapping[str, Any] | None = None) -> list[WindowDetections]:
        """Per video: :func:`.inference.decode_feature_grid` (the official candidates per level, soft-NMS +
        voting, the cap), on the feature grid; the pipeline maps them to seconds (deviation 1)."""
        points = self.points_for(outputs)
        detections = []
        for b in range(int(outputs["cls_logits"][0].shape[0])):
            segments, scores, labels = decode_feature_grid(
                points, [x[b] for x in outputs["cls_logits"]], [x[b] for x in outputs["offsets"]],
                [x[b] for x in outputs["masks"]], self.config.test_cfg)
            detections.append(WindowDetections(segments, scores, labels.long()))
        return detections


def build_actionformer_method(**kwargs: Any) -> ActionFormerMethod:
    """Registry builder (``model.kwargs`` = the official ``model`` keys, :class:`.model.ActionFormerConfig`)."""
    return ActionFormerMethod(ActionFormerConfig.from_dict(kwargs))


def from_official_state_dict(state_dict: Mapping[str, Any], source: str | None = None, weights: str = "ema",
                             **overrides: Any) -> ActionFormerMethod:
    """The authors' checkpoint (:func:`.official.from_official_state_dict`: the whole file's
    ``state_dict_ema`` by default, as their eval.py, or ``weights="model"``; ``module.`` prefix) as the
    engine's model, the loss normaliser at its initial value."""
    from tadkit.methods.actionformer.official import from_official_state_dict as load_official

    network = load_official(state_dict, source=source, weights=weights, **overrides)
    model = ActionFormerMethod(network.config)
    result = model.load_state_dict(network.state_dict(), strict=False)
    if result.unexpected_keys or any(not k.startswith("loss_normaliser.") for k in result.missing_keys):
        raise TadkitError(f"the imported network does not fit the method: {result}", field="model")
    return model


# `tadkit convert actionformer-official` passes the file's state dicts by name (state_dict, state_dict_ema)
from_official_state_dict.reads_whole_checkpoint = True  # type: ignore[attr-defined]


__all__ = ["ActionFormerMethod", "batch_mask", "compact_length", "build_actionformer_method", "from_official_state_dict"]
