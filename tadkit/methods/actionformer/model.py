"""ActionFormer (Zhang, Wu, Li, ECCV 2022): the network, as the authors' ``LocPointTransformer``
(happyharrycn/actionformer_release @ 61ea7eb) with the ``convTransformer`` backbone and identity neck.

Features (B, C, T) and a validity mask (B, T) go through a masked conv embedding, a stem of local-window
transformer blocks and a branch of blocks that halve the length (one pyramid level each), a LayerNorm per
level, and two conv heads shared by all levels (class logits; ReLU(Scale_l * offsets) to both boundaries).
:meth:`ActionFormer.forward_heads` returns the heads in the official permuted layout (``ActionFormerHeads``).
Module and parameter names are the official ones, so the authors' checkpoints load with unchanged keys
(:mod:`tadkit.methods.actionformer.official`). Option names are the official config's ``model`` keys.

Deviations from the official code (each is also in docs/actionformer.md):

1. Local attention is computed block-wise: queries in blocks of ``w = window // 2`` against the 3w keys around
   the block (two batched matmuls), scores outside each query's band ``[t - w, t + w]`` set to -inf. The band,
   the -inf beyond the sequence ends, the -1e4 added for padded keys, the zeroed rows of padded queries and
   ``rel_pe`` are the official sliding-chunk semantics; results equal it up to float rounding.
2. Local attention accepts any length (padded internally to a multiple of w); the official code asserts a
   multiple of ``2w`` at every level. Its padding rule (:meth:`ActionFormer.padded_length`) still gives one.
3. ``ext_score_file`` (external classification scores, a pickle) is refused: score fusion is not supported.
4. Multi-feature inputs (a list ``input_dim``, the Ego4D configs), the ``conv`` backbone and the ``fpn`` neck
   are refused with a clear error; the issue scope is ``convTransformer`` + identity neck.
5. The window size must be odd (or <= 1 for global attention), as the official comment requires; the
   official code only checks ``> 1`` and breaks on an even window with ``use_rel_pe``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.models.blocks import Scale

# state-dict prefixes of the official network; anything else on the model is tadkit state
OFFICIAL_PREFIXES = ("backbone.", "neck.", "cls_head.", "reg_head.")
# the official local attention adds this to the scores of padded keys (not -inf)
PADDED_KEY_SCORE = -1e4
# cls_head bias of a class listed in head_empty_cls: the logit of probability 1e-6
EMPTY_CLASS_PRIOR = 1e-6


# --------------------------------------------------------------------------------------------------
# Config (official names; defaults = the official DEFAULTS merged with configs/thumos_i3d.yaml)
# --------------------------------------------------------------------------------------------------


@dataclass
class ActionFormerTrainConfig:
    """The official ``train_cfg``."""

    center_sample: str = "radius"  # "radius" | "none"
    center_sample_radius: float = 1.5
    loss_weight: float = 1.0  # on the regression loss; < 0: weight = cls_loss / reg_loss (detached)
    cls_prior_prob: float = 0.01
    init_loss_norm: float = 100.0
    clip_grad_l2norm: float = 1.0  # < 0: no clipping
    head_empty_cls: tuple[int, ...] = ()
    dropout: float = 0.0
    droppath: float = 0.1
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        self.head_empty_cls = tuple(int(c) for c in self.head_empty_cls)
        if self.center_sample not in ("radius", "none"):
            raise TadkitError(f"must be 'radius' or 'none', got {self.center_sample!r}", field="train_cfg.center_sample")
        for name in ("dropout", "droppath", "label_smoothing"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise TadkitError(f"must be in [0, 1), got {getattr(self, name)!r}", field=f"train_cfg.{name}")
        if not 0.0 <= float(self.cls_prior_prob) < 1.0:
            raise TadkitError(f"must be in [0, 1), got {self.cls_prior_prob!r}", field="train_cfg.cls_prior_prob")


@dataclass
class ActionFormerTestConfig:
    """The official ``test_cfg``."""

    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    iou_threshold: float = 0.1
    min_score: float = 0.001
    max_seg_num: int = 200
    nms_method: str = "soft"  # "soft" | "hard" | "none"
    nms_sigma: float = 0.5
    duration_thresh: float = 0.05
    multiclass_nms: bool = True
    ext_score_file: str | None = None
    voting_thresh: float = 0.7

    def __post_init__(self) -> None:
        if self.nms_method not in ("soft", "hard", "none"):
            raise TadkitError(f"must be 'soft', 'hard' or 'none', got {self.nms_method!r}", field="test_cfg.nms_method")
        if self.ext_score_file is not None:
            raise TadkitError("external score fusion is not supported; leave it null", field="test_cfg.ext_score_file")
        for name in ("pre_nms_topk", "max_seg_num"):
            if int(getattr(self, name)) < 1:
                raise TadkitError(f"must be a positive integer, got {getattr(self, name)!r}", field=f"test_cfg.{name}")


def _sub_config(cls: type, value: Any, name: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TadkitError(f"must be a mapping, got {type(value).__name__}", field=name)
    reject_unknown_fields(cls, value, f"{name} key(s)", field=name)
    return cls(**dict(value))


@dataclass
class ActionFormerConfig:
    """The official ``model`` config of ``LocPointTransformer`` (the THUMOS14 I3D recipe by default)."""

    backbone_type: str = "convTransformer"
    fpn_type: str = "identity"
    backbone_arch: tuple[int, int, int] = (2, 2, 5)  # (#embedding convs, #stem blocks, #branch blocks)
    scale_factor: int = 2  # length ratio between consecutive levels
    input_dim: int = 2048
    max_seq_len: int = 2304
    max_buffer_len_factor: float = 6.0
    n_head: int = 4
    n_mha_win_size: int | tuple[int, ...] = 19  # one value, or one per level; <= 1: global attention
    embd_kernel_size: int = 3
    embd_dim: int = 512
    embd_with_ln: bool = True
    fpn_dim: int = 512
    fpn_with_ln: bool = True
    fpn_start_level: int = 0
    head_dim: int = 512
    regression_range: tuple[tuple[float, float], ...] = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))
    head_num_layers: int = 3
    head_kernel_size: int = 3
    head_with_ln: bool = True
    use_abs_pe: bool = False
    use_rel_pe: bool = False
    num_classes: int = 20
    train_cfg: ActionFormerTrainConfig = field(default_factory=ActionFormerTrainConfig)
    test_cfg: ActionFormerTestConfig = field(default_factory=ActionFormerTestConfig)

    def __post_init__(self) -> None:
        self.train_cfg = _sub_config(ActionFormerTrainConfig, self.train_cfg, "train_cfg")
        self.test_cfg = _sub_config(ActionFormerTestConfig, self.test_cfg, "test_cfg")
        if self.backbone_type != "convTransformer":
            raise TadkitError(f"only 'convTransformer' is supported, got {self.backbone_type!r}", field="backbone_type")
        if self.fpn_type != "identity":
            raise TadkitError(f"only the 'identity' neck is supported, got {self.fpn_type!r}", field="fpn_type")
        if isinstance(self.input_dim, (list, tuple)) or isinstance(self.embd_dim, (list, tuple)):
            raise TadkitError("multi-feature inputs (a list of dims) are not supported", field="input_dim")
        self.backbone_arch = tuple(int(a) for a in self.backbone_arch)
        if len(self.backbone_arch) != 3 or min(self.backbone_arch) < 0 or self.backbone_arch[0] < 1:
            raise TadkitError(f"must be 3 counts (>= 1 embedding conv), got {self.backbone_arch!r}", field="backbone_arch")
        for name in ("input_dim", "max_seq_len", "n_head", "embd_dim", "fpn_dim", "head_dim", "num_classes",
                     "head_num_layers", "scale_factor"):
            if int(getattr(self, name)) < 1:
                raise TadkitError(f"must be a positive integer, got {getattr(self, name)!r}", field=name)
        if self.scale_factor != 1 and self.scale_factor % 2 != 0:
            raise TadkitError(f"must be 1 or even, got {self.scale_factor}", field="scale_factor")
        for name in ("embd_kernel_size", "head_kernel_size"):
            if int(getattr(self, name)) % 2 != 1:
                raise TadkitError(f"must be odd, got {getattr(self, name)!r}", field=name)
        if self.embd_dim % self.n_head != 0:
            raise TadkitError(f"embd_dim {self.embd_dim} is not a multiple of n_head {self.n_head}", field="n_head")
        if self.fpn_dim != self.embd_dim:
            raise TadkitError(f"the identity neck needs fpn_dim == embd_dim ({self.embd_dim})", field="fpn_dim")
        if not 0 <= self.fpn_start_level <= self.backbone_arch[2]:
            raise TadkitError(f"must be in [0, {self.backbone_arch[2]}]", field="fpn_start_level")
        windows = self.n_mha_win_size
        if isinstance(windows, (list, tuple)):
            windows = tuple(int(w) for w in windows)
            if len(windows) != self.backbone_arch[2] + 1:
                raise TadkitError(f"needs {self.backbone_arch[2] + 1} values (one per level)", field="n_mha_win_size")
        else:
            windows = int(windows)
        self.n_mha_win_size = windows
        if any(w > 1 and w % 2 == 0 for w in self.window_sizes):
            raise TadkitError(f"window sizes must be odd (or <= 1: global), got {windows!r}", field="n_mha_win_size")
        self.regression_range = tuple((float(lo), float(hi)) for lo, hi in self.regression_range)
        if len(self.regression_range) != len(self.fpn_strides):
            raise TadkitError(
                f"{len(self.regression_range)} ranges for {len(self.fpn_strides)} pyramid levels", field="regression_range"
            )
        for stride in self.divisors:
            if self.max_seq_len % stride != 0:
                raise TadkitError(
                    f"max_seq_len {self.max_seq_len} must be divisible by {stride} (level stride x window)",
                    field="max_seq_len",
                )
        bad = [c for c in self.train_cfg.head_empty_cls if not 0 <= c < self.num_classes]
        if bad:
            raise TadkitError(f"classes {bad} out of [0, {self.num_classes})", field="train_cfg.head_empty_cls")

    @property
    def window_sizes(self) -> list[int]:
        """Attention window of every backbone level (stem, then each branch block)."""
        w = self.n_mha_win_size
        return list(w) if isinstance(w, tuple) else [w] * (self.backbone_arch[2] + 1)

    @property
    def fpn_strides(self) -> list[int]:
        """Stride (in input steps) of every output level."""
        return [self.scale_factor**i for i in range(self.fpn_start_level, self.backbone_arch[2] + 1)]

    @property
    def divisors(self) -> list[int]:
        """What the official code requires ``max_seq_len`` (and pads test inputs) to be a multiple of: per output
        level, stride x 2 (window // 2). As there, output level l is paired with backbone level l's window
        (the two differ only when ``fpn_start_level`` > 0)."""
        return [s * (w // 2) * 2 if w > 1 else s for s, w in zip(self.fpn_strides, self.window_sizes)]

    @property
    def max_div_factor(self) -> int:
        return max(self.divisors + [1])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["backbone_arch"] = list(self.backbone_arch)
        out["regression_range"] = [list(r) for r in self.regression_range]
        if isinstance(self.n_mha_win_size, tuple):
            out["n_mha_win_size"] = list(self.n_mha_win_size)
        out["train_cfg"]["head_empty_cls"] = list(self.train_cfg.head_empty_cls)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ActionFormerConfig":
        reject_unknown_fields(cls, values, "ActionFormer config key(s)")
        return cls(**dict(values))


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


class MaskedConv1D(nn.Module):
    """Conv1d (odd kernel, ``k // 2`` padding, bias zeroed) whose output is multiplied by the mask; a strided
    conv keeps every ``stride``-th mask step (the official nearest-neighbour resize on divisible lengths)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] % self.stride != 0:
            raise ValueError(f"length {x.shape[-1]} is not a multiple of the conv stride {self.stride}")
        out_mask = mask[..., :: self.stride] if self.stride > 1 else mask
        return self.conv(x) * out_mask.to(x.dtype), out_mask


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of (B, C, T), the official formula (biased variance, eps 1e-5)."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        variance = centred.pow(2).mean(dim=1, keepdim=True)
        return centred / torch.sqrt(variance + self.eps) * self.weight + self.bias


class ScalarScale(Scale):
    """:class:`Scale` with a 0-d parameter: the official layout of ``reg_head.scale.{level}.scale``."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__(init_value)
        self.scale = nn.Parameter(torch.tensor(float(init_value)))


class AffineDropPath(nn.Module):
    """Per-channel learnable scale (init 1e-4), then stochastic depth per sample while training."""

    def __init__(self, num_channels: int, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale = nn.Parameter(1e-4 * torch.ones(1, num_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale * x
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x / keep * torch.floor(keep + torch.rand(shape, dtype=x.dtype, device=x.device))


def local_window_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor, half_window: int,
    rel_pe: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every query ``t`` attends to the keys ``t - w .. t + w`` that exist (deviation 1 of the module docstring).

    ``query`` (already scaled), ``key``, ``value``: (B, H, T, D); ``key_mask``: (B, T) bool, True on real steps;
    ``rel_pe``: (H, 2w + 1) bias per relative offset or None. Padded keys get -1e4, rows of padded queries are
    zero, as the official code. Returns (B, H, T, D).
    """
    batch, heads, length, dim = query.shape
    w = half_window
    blocks = -(-length // w)
    extra = blocks * w - length
    q_blocks = F.pad(query, (0, 0, 0, extra)).view(batch, heads, blocks, w, dim)
    # block c holds queries c*w .. c*w + w - 1 and sees keys c*w - w .. c*w + 2w - 1 (column m = key - c*w + w)
    k_windows = F.pad(key, (0, 0, w, extra + w)).unfold(2, 3 * w, w)  # (B, H, blocks, D, 3w)
    v_windows = F.pad(value, (0, 0, w, extra + w)).unfold(2, 3 * w, w).transpose(-1, -2)  # (B, H, blocks, 3w, D)
    scores = torch.matmul(q_blocks, k_windows)  # (B, H, blocks, w, 3w)

    row = torch.arange(w, device=query.device)
    col = torch.arange(3 * w, device=query.device)
    offset = col[None, :] - row[:, None]  # key - query + w, in [0, 2w] inside the band
    in_band = (offset >= 0) & (offset <= 2 * w)
    if rel_pe is None:
        band_bias = torch.zeros(in_band.shape, dtype=scores.dtype, device=scores.device)
    else:
        band_bias = rel_pe[:, offset.clamp(0, 2 * w)][None, :, None]  # (1, H, 1, w, 3w)
    band_bias = band_bias.masked_fill(~in_band, float("-inf"))

    exists = F.pad(key_mask.new_ones(length), (w, extra + w), value=False).unfold(0, 3 * w, w)  # (blocks, 3w)
    real = F.pad(key_mask, (w, extra + w), value=False).unfold(1, 3 * w, w)  # (B, blocks, 3w)
    key_bias = torch.zeros(real.shape, dtype=scores.dtype, device=scores.device)
    key_bias = key_bias.masked_fill(~real, PADDED_KEY_SCORE).masked_fill(~exists, float("-inf"))
    # official order: scores (+ rel_pe) + key mask
    scores = (scores + band_bias) + key_bias[:, None, :, None, :]
    probs = torch.softmax(scores, dim=-1)
    query_real = F.pad(key_mask, (0, extra), value=False).view(batch, 1, blocks, w, 1)
    probs = probs.masked_fill(~query_real, 0.0)
    out = torch.matmul(probs, v_windows)  # (B, H, blocks, w, D)
    return out.reshape(batch, heads, blocks * w, dim)[:, :, :length]


def global_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Full attention over the real keys (the official ``MaskedMHCA``); shapes as :func:`local_window_attention`."""
    scores = torch.matmul(query, key.transpose(-1, -2))
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), value * key_mask[:, None, :, None].to(value.dtype))


class MaskedConvAttention(nn.Module):
    """Multi-head attention with depthwise-conv q/k/v (stride = the block's downsampling), a LayerNorm each, then
    1x1 projections: the official ``LocalMaskedMHCA`` (window > 1) or ``MaskedMHCA`` (window <= 1)."""

    def __init__(self, dim: int, heads: int, window_size: int, stride: int, proj_dropout: float,
                 use_rel_pe: bool) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.window_size = window_size
        kernel = stride + 1 if stride > 1 else 3
        for name in ("query", "key", "value"):
            setattr(self, f"{name}_conv", MaskedConv1D(dim, dim, kernel, stride=stride, groups=dim, bias=False))
            setattr(self, f"{name}_norm", ChannelLayerNorm(dim))
        self.key = nn.Conv1d(dim, dim, 1)
        self.query = nn.Conv1d(dim, dim, 1)
        self.value = nn.Conv1d(dim, dim, 1)
        self.proj = nn.Conv1d(dim, dim, 1)
        self.proj_drop = nn.Dropout(proj_dropout)
        if use_rel_pe and window_size > 1:
            self.rel_pe = nn.Parameter(torch.zeros(1, 1, heads, window_size))
            nn.init.trunc_normal_(self.rel_pe, std=(2.0 / dim) ** 0.5)  # official: timm trunc_normal_, bounds +-2
        else:
            self.rel_pe = None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length = x.shape
        return x.view(batch, self.heads, self.head_dim, length).transpose(2, 3)  # (B, H, T, D)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, q_mask = self.query_conv(x, mask)
        k, kv_mask = self.key_conv(x, mask)
        v, _ = self.value_conv(x, mask)
        q = self._split_heads(self.query(self.query_norm(q)))
        k = self._split_heads(self.key(self.key_norm(k)))
        v = self._split_heads(self.value(self.value_norm(v)))
        key_mask = kv_mask[:, 0]
        if self.window_size > 1:
            rel_pe = None if self.rel_pe is None else self.rel_pe[0, 0]
            out = local_window_attention(q * self.scale, k, v, key_mask, self.window_size // 2, rel_pe)
        else:
            out = global_attention(q * self.scale, k, v, key_mask)
        batch, _, length, _ = out.shape
        out = out.transpose(2, 3).reshape(batch, -1, length)
        return self.proj_drop(self.proj(out)) * q_mask.to(out.dtype), q_mask


class TransformerBlock(nn.Module):
    """Pre-LN block: x' = skip(x) + attn(LN(x)); out = x' + MLP(LN(x')), masked; ``stride`` > 1 downsamples
    (the skip is a max-pool)."""

    def __init__(self, dim: int, heads: int, window_size: int, stride: int, dropout: float, droppath: float,
                 use_rel_pe: bool) -> None:
        super().__init__()
        self.ln1 = ChannelLayerNorm(dim)
        self.ln2 = ChannelLayerNorm(dim)
        self.attn = MaskedConvAttention(dim, heads, window_size, stride, dropout, use_rel_pe)
        self.pool_skip = nn.MaxPool1d(stride + 1, stride, (stride + 1) // 2) if stride > 1 else nn.Identity()
        self.mlp = nn.Sequential(
            nn.Conv1d(dim, 4 * dim, 1), nn.GELU(), nn.Dropout(dropout), nn.Conv1d(4 * dim, dim, 1), nn.Dropout(dropout)
        )
        if droppath > 0.0:
            self.drop_path_attn: nn.Module = AffineDropPath(dim, droppath)
            self.drop_path_mlp: nn.Module = AffineDropPath(dim, droppath)
        else:
            self.drop_path_attn = nn.Identity()
            self.drop_path_mlp = nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, out_mask = self.attn(self.ln1(x), mask)
        keep = out_mask.to(x.dtype)
        out = self.pool_skip(x) * keep + self.drop_path_attn(attended)
        return out + self.drop_path_mlp(self.mlp(self.ln2(out)) * keep), out_mask


def sinusoid_position_table(length: int, dim: int) -> torch.Tensor:
    """(1, dim, length) table: sin on even channels, cos on odd ones, frequency 10000^(-2 floor(c/2) / dim)."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    channel = torch.arange(dim, dtype=torch.float64)
    angle = position / torch.pow(10000.0, 2 * torch.div(channel, 2, rounding_mode="floor") / dim)
    table = torch.where(channel.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float().T.unsqueeze(0)


class ConvTransformerBackbone(nn.Module):
    """Embedding convs (+ LN, ReLU), optional absolute position embedding, stem blocks, downsampling branch."""

    def __init__(self, config: ActionFormerConfig) -> None:
        super().__init__()
        c = config
        num_embd, num_stem, num_branch = c.backbone_arch
        windows = c.window_sizes
        self.max_len = c.max_seq_len
        self.embd = nn.ModuleList(
            MaskedConv1D(c.input_dim if i == 0 else c.embd_dim, c.embd_dim, c.embd_kernel_size, bias=not c.embd_with_ln)
            for i in range(num_embd)
        )
        self.embd_norm = nn.ModuleList(
            ChannelLayerNorm(c.embd_dim) if c.embd_with_ln else nn.Identity() for _ in range(num_embd)
        )
        if c.use_abs_pe:
            table = sinusoid_position_table(c.max_seq_len, c.embd_dim) / c.embd_dim**0.5
            self.register_buffer("pos_embd", table, persistent=False)
        else:
            self.pos_embd = None
        drop = c.train_cfg.dropout, c.train_cfg.droppath
        self.stem = nn.ModuleList(
            TransformerBlock(c.embd_dim, c.n_head, windows[0], 1, *drop, c.use_rel_pe) for _ in range(num_stem)
        )
        self.branch = nn.ModuleList(
            TransformerBlock(c.embd_dim, c.n_head, windows[1 + i], c.scale_factor, *drop, c.use_rel_pe)
            for i in range(num_branch)
        )
        for module in self.modules():  # official: zero bias on every conv / linear of the backbone
            if isinstance(module, (nn.Conv1d, nn.Linear)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _position_embedding(self, length: int) -> torch.Tensor:
        table = self.pos_embd
        if self.training:
            if length > self.max_len:
                raise ValueError(f"training length {length} exceeds max_seq_len {self.max_len}")
        elif length >= self.max_len:  # official: stretch the table to over-long test inputs
            table = F.interpolate(table, length, mode="linear", align_corners=False)
        return table[:, :, :length]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))
        if self.pos_embd is not None:
            x = x + self._position_embedding(x.shape[-1]) * mask.to(x.dtype)
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks


class IdentityNeck(nn.Module):
    """The official ``FPNIdentity``: a LayerNorm (or nothing) per level from ``fpn_start_level`` on."""

    def __init__(self, config: ActionFormerConfig) -> None:
        super().__init__()
        self.start_level = config.fpn_start_level
        self.fpn_norms = nn.ModuleList(
            ChannelLayerNorm(config.fpn_dim) if config.fpn_with_ln else nn.Identity()
            for _ in config.fpn_strides
        )

    def forward(self, feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]):
        picked = range(self.start_level, self.start_level + len(self.fpn_norms))
        return [norm(feats[i]) for norm, i in zip(self.fpn_norms, picked)], [masks[i] for i in picked]


class ConvHead(nn.Module):
    """``head_num_layers - 1`` x (masked conv, LN, ReLU) shared by all levels; the last conv is the subclass's."""

    def __init__(self, config: ActionFormerConfig) -> None:
        super().__init__()
        c = config
        k = c.head_kernel_size
        self.head = nn.ModuleList(
            MaskedConv1D(c.fpn_dim if i == 0 else c.head_dim, c.head_dim, k, bias=not c.head_with_ln)
            for i in range(c.head_num_layers - 1)
        )
        self.norm = nn.ModuleList(
            ChannelLayerNorm(c.head_dim) if c.head_with_ln else nn.Identity() for _ in range(c.head_num_layers - 1)
        )

    def tower(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.head, self.norm):
            x = F.relu(norm(conv(x, mask)[0]))
        return x


class ClsHead(ConvHead):
    """Class logits; the last conv's bias starts at the logit of ``cls_prior_prob`` (empty classes: of 1e-6)."""

    def __init__(self, config: ActionFormerConfig) -> None:
        super().__init__(config)
        c = config
        in_dim = c.head_dim if c.head_num_layers > 1 else c.fpn_dim
        self.cls_head = MaskedConv1D(in_dim, c.num_classes, c.head_kernel_size)
        prior = c.train_cfg.cls_prior_prob
        with torch.no_grad():
            if prior > 0:
                self.cls_head.conv.bias.fill_(-math.log((1 - prior) / prior))
            for cls in c.train_cfg.head_empty_cls:
                self.cls_head.conv.bias[cls] = -math.log((1 - EMPTY_CLASS_PRIOR) / EMPTY_CLASS_PRIOR)

    def forward(self, feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.cls_head(self.tower(x, m), m)[0] for x, m in zip(feats, masks)]


class RegHead(ConvHead):
    """Distances to both boundaries: ReLU(Scale_level(conv)), one learnable scale per level."""

    def __init__(self, config: ActionFormerConfig) -> None:
        super().__init__(config)
        c = config
        in_dim = c.head_dim if c.head_num_layers > 1 else c.fpn_dim
        self.scale = nn.ModuleList(ScalarScale() for _ in c.fpn_strides)
        self.offset_head = MaskedConv1D(in_dim, 2, c.head_kernel_size)

    def forward(self, feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [
            F.relu(scale(self.offset_head(self.tower(x, m), m)[0]))
            for scale, x, m in zip(self.scale, feats, masks)
        ]


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


@dataclass
class ActionFormerHeads:
    """Raw head outputs per pyramid level, in the official permuted layout."""

    cls_logits: list[torch.Tensor]  # (B, T_l, num_classes)
    offsets: list[torch.Tensor]  # (B, T_l, 2): distances to start / end in level steps (x stride = input steps)
    masks: list[torch.Tensor]  # (B, T_l) bool


class ActionFormer(nn.Module):
    """``backbone`` -> ``neck`` -> ``cls_head`` / ``reg_head`` (official names, so official keys load)."""

    method_name = "actionformer"

    def __init__(self, config: ActionFormerConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ConvTransformerBackbone(config)
        self.neck = IdentityNeck(config)
        self.cls_head = ClsHead(config)
        self.reg_head = RegHead(config)

    @property
    def fpn_strides(self) -> list[int]:
        return self.config.fpn_strides

    def padded_length(self, length: int, training: bool) -> int:
        """The official batch length for a longest input of ``length`` steps: training pads to ``max_seq_len``
        (longer inputs are an error; the data side crops them); test pads to ``max_seq_len`` or, when longer,
        to the next multiple of ``max_div_factor``.

        Padding steps are not neutral at the edge: after the embedding they hold ReLU(LayerNorm bias), which the
        convs and max-pools next to the last real step read, where an unpadded input reads zeros. So a video
        batched with longer ones gets its batch-of-one outputs only if it is padded when alone too (its length
        is not itself a padded length), and, with ``use_abs_pe``, if the batch is not longer than
        ``max_seq_len`` (longer test inputs stretch the position table)."""
        c = self.config
        if training:
            if length > c.max_seq_len:
                raise ValueError(f"training input of {length} steps is longer than max_seq_len {c.max_seq_len}")
            return c.max_seq_len
        if length <= c.max_seq_len:
            return c.max_seq_len
        return -(-length // c.max_div_factor) * c.max_div_factor

    def forward_heads(self, feats: torch.Tensor, mask: torch.Tensor) -> ActionFormerHeads:
        """``feats`` (B, input_dim, T), ``mask`` (B, T) bool (True on real steps; T a multiple of the largest
        stride, see :meth:`padded_length`) -> per-level logits, offsets and masks."""
        if feats.dim() != 3 or mask.shape != (feats.shape[0], feats.shape[-1]):
            raise ValueError(f"expected feats (B, C, T) and mask (B, T), got {tuple(feats.shape)} and {tuple(mask.shape)}")
        levels, level_masks = self.backbone(feats, mask.bool().unsqueeze(1))
        levels, level_masks = self.neck(levels, level_masks)
        cls_logits = self.cls_head(levels, level_masks)
        offsets = self.reg_head(levels, level_masks)
        return ActionFormerHeads(
            cls_logits=[x.permute(0, 2, 1) for x in cls_logits],
            offsets=[x.permute(0, 2, 1) for x in offsets],
            masks=[m[:, 0] for m in level_masks],
        )

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The network's tensors under the official keys (what an official checkpoint holds)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(OFFICIAL_PREFIXES)}

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()


def build_actionformer(**kwargs: Any) -> ActionFormer:
    """Registry builder: ``build_model("actionformer", **config_dict)``; keys are the official ``model`` keys."""
    return ActionFormer(ActionFormerConfig.from_dict(kwargs))


__all__ = [
    "ActionFormer", "ActionFormerConfig", "ActionFormerHeads", "ActionFormerTestConfig", "ActionFormerTrainConfig",
    "build_actionformer", "local_window_attention",
]
