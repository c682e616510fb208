"""ActionFormer's network against the golden fixture of the OFFICIAL code (happyharrycn/actionformer_release
@ 61ea7eb), the checkpoint importer, the local attention against a dense reference, and the official init.

The fixture is ``$TADKIT_ACTIONFORMER_FIXTURE`` (default ``<shared>/fixtures/actionformer_official_small.npz``);
every size and setting comes from its .npz and the .json with the same stem (``model``: the resolved official
model config), so the tests run unchanged on another fixture of the same layout. Select them with
``pytest -k "official and actionformer"``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from actionformer_golden import fixture_path
from tadkit.errors import TadkitError
from tadkit.methods.actionformer.model import (
    PADDED_KEY_SCORE,
    ActionFormer,
    ActionFormerConfig,
    build_actionformer,
    global_attention,
    local_window_attention,
)
from tadkit.methods.actionformer.official import from_official_state_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STATE = "state_dict/"
# Tolerance of a level's head outputs, float64 ours vs the official float32 run: the official values carry
# float32 rounding that grows with widths and depth, so the bound is the larger of 1e-5 of the level's
# magnitude and NOISE_FACTOR x our own float32-vs-float64 difference on the same input (an estimate of that
# rounding at the fixture's sizes; measured official/ours ratio on the shared fixture: ~3). A wrong layer,
# mask or padding rule moves the outputs by 1e-2 or more.
RELATIVE_TOL = 1e-5
NOISE_FACTOR = 20.0


@pytest.fixture(scope="module")
def fixture() -> tuple[dict[str, np.ndarray], dict]:
    path = fixture_path()
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        pytest.skip(f"needs {meta_path} (the fixture's sizes and settings)")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads(meta_path.read_text())


def official_state(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k[len(STATE):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(STATE)}


def official_model(arrays: dict[str, np.ndarray], meta: dict) -> ActionFormer:
    return from_official_state_dict(official_state(arrays), **meta["model"]).eval()


def num_videos(meta: dict) -> int:
    return len(meta["videos"])


def padded_input(model: ActionFormer, feats: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One video as the official test-time preprocessing batches it (B = 1)."""
    x = torch.from_numpy(feats)[None]
    length = x.shape[-1]
    padded = model.padded_length(length, training=False)
    return F.pad(x, (0, padded - length)), (torch.arange(padded) < length)[None]


def level_tolerance(reference: np.ndarray, ours32: np.ndarray, ours64: np.ndarray) -> float:
    scale = max(1.0, float(np.abs(reference).max()))
    return max(RELATIVE_TOL * scale, NOISE_FACTOR * float(np.abs(ours32 - ours64).max()))


# --------------------------------------------------------------------------------------------------
# The fixture
# --------------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_official_actionformer_state_dict_loads_every_key_unchanged(fixture):
    arrays, meta = fixture
    state = official_state(arrays)
    model = official_model(arrays, meta)
    ours = model.official_state_dict()
    assert set(ours) == set(state)
    for key, value in state.items():
        assert torch.equal(ours[key], value), key
    cfg, official = model.config, meta["model"]
    assert list(cfg.backbone_arch) == list(official["backbone_arch"])
    assert cfg.input_dim == official["input_dim"] and cfg.num_classes == official["num_classes"]
    assert cfg.max_seq_len == official["max_seq_len"] and cfg.n_head == official["n_head"]
    assert [list(r) for r in cfg.regression_range] == [[float(v) for v in r] for r in official["regression_range"]]
    assert cfg.test_cfg.pre_nms_topk == official["test_cfg"]["pre_nms_topk"]
    assert len(model.fpn_strides) == len(official["regression_range"])


@pytest.mark.shared
def test_official_actionformer_eval_heads_match_every_level_of_every_video(fixture):
    arrays, meta = fixture
    model = official_model(arrays, meta)
    model64 = official_model(arrays, meta).double()
    levels = len(model.fpn_strides)
    for b in range(num_videos(meta)):
        feats = arrays[f"input/v{b}/feats"]
        x, mask = padded_input(model, feats)
        # the official eval pads a short video to max_seq_len, a long one to a multiple of the largest divisor
        assert x.shape[-1] == arrays[f"eval/v{b}/mask/l0"].shape[-1], f"video {b}: padded length"
        with torch.no_grad():
            heads = model.forward_heads(x, mask)
            heads64 = model64.forward_heads(x.double(), mask)
        assert len(heads.cls_logits) == levels
        for level in range(levels):
            ref_mask = arrays[f"eval/v{b}/mask/l{level}"][:, 0]  # (1, T_l)
            assert np.array_equal(heads.masks[level].numpy(), ref_mask), (b, level)
            for name, ours, ours64 in (("cls_logits", heads.cls_logits, heads64.cls_logits),
                                       ("offsets", heads.offsets, heads64.offsets)):
                reference = arrays[f"eval/v{b}/{name}/l{level}"].transpose(0, 2, 1)  # official (1, C, T) -> (1, T, C)
                got32, got64 = ours[level].numpy(), ours64[level].numpy()
                assert got32.shape == reference.shape, (b, name, level)
                error = float(np.abs(got64 - reference).max())
                tol = level_tolerance(reference, got32, got64)
                assert error <= tol, f"video {b} {name} level {level}: max error {error:.3g} > {tol:.3g}"


@pytest.mark.shared
def test_official_actionformer_heads_of_a_padded_batch_equal_each_video_alone(fixture):
    """Videos batched together give their single-video outputs when each is padded alone too (see
    ActionFormer.padded_length); with use_abs_pe only videos of one padded length share a batch."""
    arrays, meta = fixture
    model = official_model(arrays, meta).double()
    feats = {b: torch.from_numpy(arrays[f"input/v{b}/feats"]).double() for b in range(num_videos(meta))}
    alone_length = {b: model.padded_length(f.shape[-1], training=False) for b, f in feats.items()}
    padded = [b for b, f in feats.items() if alone_length[b] > f.shape[-1]]
    groups = [[b for b in padded if alone_length[b] == n] for n in sorted({alone_length[b] for b in padded})]
    if not model.config.use_abs_pe:
        groups = [padded]
    for group in groups:
        length = max(alone_length[b] for b in group)
        batch = torch.stack([F.pad(feats[b], (0, length - feats[b].shape[-1])) for b in group])
        mask = torch.arange(length)[None] < torch.tensor([feats[b].shape[-1] for b in group])[:, None]
        with torch.no_grad():
            together = model.forward_heads(batch, mask)
            for i, b in enumerate(group):
                x, m = padded_input(model, arrays[f"input/v{b}/feats"])
                alone = model.forward_heads(x.double(), m)
                for level in range(len(alone.cls_logits)):
                    n = alone.cls_logits[level].shape[1]
                    for ours, single in ((together.cls_logits, alone.cls_logits), (together.offsets, alone.offsets)):
                        torch.testing.assert_close(ours[level][i, :n], single[level][0], rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# The importer
# --------------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_official_actionformer_whole_checkpoint_file_loads_ema_by_default(fixture):
    """The authors' train.py saves a DataParallel model (``module.`` keys) and ``state_dict_ema``."""
    arrays, meta = fixture
    state = official_state(arrays)
    ema = {k: v + 1.0 for k, v in state.items()}
    checkpoint = {
        "epoch": 3,
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "state_dict_ema": {f"module.{k}": v for k, v in ema.items()},
        "optimizer": {"state": {}, "param_groups": []},
    }
    loaded_ema = from_official_state_dict(checkpoint, **meta["model"]).official_state_dict()
    loaded_raw = from_official_state_dict(checkpoint, weights="model", **meta["model"]).official_state_dict()
    for key in state:
        assert torch.equal(loaded_ema[key], ema[key]) and torch.equal(loaded_raw[key], state[key]), key
    del checkpoint["state_dict_ema"]
    with pytest.raises(TadkitError) as error:
        from_official_state_dict(checkpoint, source="ckpt.pth.tar", **meta["model"])
    assert error.value.field == "state_dict_ema" and "ckpt.pth.tar" in str(error.value)


@pytest.mark.shared
def test_official_actionformer_round_trip_through_the_importer(fixture):
    """A model's official tensors rebuild the same model (config read off the tensors + the rest as overrides)."""
    arrays, meta = fixture
    model = official_model(arrays, meta)
    config = model.config_dict()
    rebuilt = from_official_state_dict(model.official_state_dict(), **config)
    assert rebuilt.config_dict() == config
    assert build_actionformer(**config).config_dict() == config
    for key, value in model.official_state_dict().items():
        assert torch.equal(rebuilt.official_state_dict()[key], value), key


@pytest.mark.shared
def test_official_actionformer_importer_names_a_wrong_missing_or_extra_key(fixture):
    arrays, meta = fixture
    state = official_state(arrays)
    key = "backbone.stem.0.attn.query.weight"
    bad_shape = dict(state, **{key: torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])})
    extra = dict(state, **{"backbone.stem.0.attn.surprise": torch.zeros(1)})
    missing = {k: v for k, v in state.items() if k != "neck.fpn_norms.0.bias"}
    not_float = dict(state, **{key: state[key].long()})
    cases = ((bad_shape, key), (extra, "backbone.stem.0.attn.surprise"), (missing, "neck.fpn_norms.0.bias"),
             (not_float, key))
    for sd, field in cases:
        with pytest.raises(TadkitError) as error:
            from_official_state_dict(sd, source="in.pth", **meta["model"])
        assert error.value.field == field and "in.pth" in str(error.value), str(error.value)
    # a size the tensors contradict is refused, naming the key whose shape differs
    with pytest.raises(TadkitError) as error:
        from_official_state_dict(state, **dict(meta["model"], input_dim=meta["model"]["input_dim"] + 1))
    assert error.value.field == "backbone.embd.0.conv.weight"


def test_actionformer_importer_reads_rel_pe_windows_droppath_and_plain_heads_off_the_tensors():
    config = dict(
        input_dim=12, embd_dim=16, fpn_dim=16, head_dim=8, n_head=2, num_classes=3, max_seq_len=64,
        backbone_arch=(1, 1, 3), n_mha_win_size=(5, 5, 3, -1), use_rel_pe=True, embd_with_ln=False,
        head_with_ln=False, head_num_layers=2, fpn_with_ln=True, fpn_start_level=1,
        regression_range=((0, 4), (4, 8), (8, 10000)), train_cfg={"droppath": 0.1},
    )
    model = build_actionformer(**config)
    assert "backbone.branch.2.attn.rel_pe" not in model.state_dict()  # global attention has none
    rebuilt = from_official_state_dict(
        model.official_state_dict(), max_seq_len=64, regression_range=config["regression_range"]
    )
    for key in ("n_head", "n_mha_win_size", "use_rel_pe", "embd_with_ln", "head_with_ln", "head_num_layers",
                "fpn_start_level", "backbone_arch", "head_dim", "input_dim", "num_classes"):
        assert rebuilt.config_dict()[key] == model.config_dict()[key], key
    assert rebuilt.config.train_cfg.droppath == 0.1


# --------------------------------------------------------------------------------------------------
# Local attention: blocked formulation vs a dense reference of the official semantics
# --------------------------------------------------------------------------------------------------


def dense_local_attention(q, k, v, key_mask, w, rel_pe=None):
    """The official LocalMaskedMHCA semantics written densely (T x T): band |key - query| <= w (-inf
    outside), + rel_pe[offset + w], -1e4 on padded keys, zero rows for padded queries."""
    length = q.shape[2]
    offset = torch.arange(length)[None, :] - torch.arange(length)[:, None]
    scores = q @ k.transpose(-1, -2)
    if rel_pe is not None:
        scores = scores + rel_pe[:, (offset + w).clamp(0, 2 * w)][None]
    scores = scores.masked_fill((offset.abs() > w)[None, None], float("-inf"))
    scores = scores + torch.where(key_mask, 0.0, PADDED_KEY_SCORE).to(q.dtype)[:, None, None, :]
    probs = torch.softmax(scores, dim=-1).masked_fill(~key_mask[:, None, :, None], 0.0)
    return probs @ v


@pytest.mark.parametrize("length,w,with_rel_pe", [(24, 3, False), (36, 9, True), (17, 4, True), (5, 9, False)])
def test_actionformer_local_window_attention_equals_the_dense_reference(length, w, with_rel_pe):
    generator = torch.Generator().manual_seed(length * 31 + w)
    shape = (2, 3, length, 4)
    q, k, v = (torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(3))
    key_mask = torch.ones(2, length, dtype=torch.bool)
    key_mask[1, max(1, length - 7):] = False  # the second sequence is padded
    rel_pe = torch.randn(3, 2 * w + 1, generator=generator, dtype=torch.float64) if with_rel_pe else None
    ours = local_window_attention(q, k, v, key_mask, w, rel_pe)
    torch.testing.assert_close(ours, dense_local_attention(q, k, v, key_mask, w, rel_pe), rtol=1e-12, atol=1e-12)
    assert torch.all(ours[1, :, key_mask[1].logical_not()] == 0)


def test_actionformer_global_attention_ignores_padded_keys():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 4, generator=generator, dtype=torch.float64) for _ in range(3))
    key_mask = torch.arange(10)[None] < 6
    ours = global_attention(q, k, v, key_mask)
    reference = torch.softmax(q @ k[:, :, :6].transpose(-1, -2), dim=-1) @ v[:, :, :6]
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_actionformer_gradients_reach_every_parameter_in_training_mode():
    model = build_actionformer(input_dim=8, embd_dim=16, fpn_dim=16, head_dim=16, n_head=2, num_classes=3,
                               max_seq_len=128, n_mha_win_size=5, use_abs_pe=True, use_rel_pe=True,
                               train_cfg={"droppath": 0.1, "dropout": 0.1}).train()
    x = torch.randn(2, 8, 128)
    mask = torch.arange(128)[None] < torch.tensor([[128], [40]])
    heads = model.forward_heads(x, mask)
    loss = sum(c.sum() for c in heads.cls_logits) + sum(o.sum() for o in heads.offsets)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad


# --------------------------------------------------------------------------------------------------
# Official initialisation and config checks
# --------------------------------------------------------------------------------------------------


def test_actionformer_init_is_the_official_one():
    torch.manual_seed(0)
    model = build_actionformer(input_dim=8, embd_dim=16, fpn_dim=16, head_dim=16, n_head=2, num_classes=4,
                               max_seq_len=128, n_mha_win_size=5, use_rel_pe=True, embd_with_ln=False,
                               train_cfg={"cls_prior_prob": 0.01, "head_empty_cls": [2], "droppath": 0.1})
    prior = -math.log((1 - 0.01) / 0.01)
    empty = -math.log((1 - 1e-6) / 1e-6)
    bias = model.cls_head.cls_head.conv.bias
    assert torch.allclose(bias, torch.tensor([prior, prior, empty, prior]))
    assert torch.all(model.reg_head.offset_head.conv.bias == 0)
    for name, param in model.backbone.named_parameters():
        if name.endswith(".bias") and "norm" not in name and not name.split(".")[-2].startswith("ln"):
            assert torch.all(param == 0), name
    assert all(float(s.scale.detach()) == 1.0 and s.scale.dim() == 0 for s in model.reg_head.scale)
    assert torch.all(model.backbone.stem[0].drop_path_attn.scale == 1e-4)
    rel_pe = model.backbone.stem[0].attn.rel_pe.detach()
    assert rel_pe.shape == (1, 1, 2, 5) and float(rel_pe.abs().max()) <= 2.0 and float(rel_pe.std()) > 0


@pytest.mark.parametrize("changes,field", [
    ({"n_mha_win_size": 8}, "n_mha_win_size"),
    ({"fpn_type": "fpn"}, "fpn_type"),
    ({"backbone_type": "conv"}, "backbone_type"),
    ({"max_seq_len": 100}, "max_seq_len"),
    ({"regression_range": [[0, 4]]}, "regression_range"),
    ({"test_cfg": {"ext_score_file": "scores.pkl"}}, "test_cfg.ext_score_file"),
    ({"train_cfg": {"unknown": 1}}, "train_cfg"),
    ({"fpn_dim": 256}, "fpn_dim"),
])
def test_actionformer_config_refuses_what_it_cannot_run(changes, field):
    with pytest.raises(TadkitError) as error:
        ActionFormerConfig.from_dict(changes)
    assert error.value.field == field, str(error.value)


def test_actionformer_padded_length_follows_the_official_preprocessing():
    model = build_actionformer(input_dim=8, embd_dim=16, fpn_dim=16, head_dim=16, num_classes=2, max_seq_len=2304)
    assert model.config.max_div_factor == 32 * 18  # stride 32 x window 19 // 2 x 2
    assert model.padded_length(100, training=False) == 2304
    assert model.padded_length(2305, training=False) == 2304 + 576
    assert model.padded_length(100, training=True) == 2304
    with pytest.raises(ValueError):
        model.padded_length(2305, training=True)



# --------------------------------------------------------------------------------------------------
# `tadkit convert actionformer-official`
# --------------------------------------------------------------------------------------------------


def _set_options(meta: dict) -> list[str]:
    """Every official model setting of the fixture as ``--set key=<JSON>`` (JSON is YAML)."""
    options = []
    for key, value in meta["model"].items():
        options += ["--set", f"{key}={json.dumps(value)}"]
    return options


def _one_line_error(capsys, *needles: str) -> None:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.shared
def test_official_actionformer_convert_cli_loads_the_ema_of_a_training_file(fixture, tmp_path, capsys):
    """The file the authors' train.py writes (DataParallel ``module.`` keys, ``state_dict_ema``) converts to
    a tadkit checkpoint that ``tadkit test`` / ``detect`` rebuild with the EMA weights and the settings."""
    from tadkit.cli import main
    from tadkit.engine.checkpoint import load_checkpoint_model

    arrays, meta = fixture
    state = official_state(arrays)
    src, dst = tmp_path / "epoch_034.pth.tar", tmp_path / "out" / "actionformer.pt"
    torch.save({"epoch": 35, "state_dict": {f"module.{k}": v - 1.0 for k, v in state.items()},
                "state_dict_ema": {f"module.{k}": v for k, v in state.items()},
                "scheduler": {"last_epoch": 7}, "optimizer": {"state": {}, "param_groups": []}}, src)
    assert main(["convert", "actionformer-official", str(src), str(dst), *_set_options(meta)]) == 0
    model, _ = load_checkpoint_model(dst)
    loaded = model.official_state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert model.config_dict() == official_model(arrays, meta).config_dict()
    assert [p.name for p in dst.parent.iterdir()] == ["actionformer.pt"]


@pytest.mark.shared
def test_official_actionformer_convert_cli_refuses_a_wrong_shape_or_an_extra_key(fixture, tmp_path, capsys):
    from tadkit.cli import main

    arrays, meta = fixture
    state = official_state(arrays)
    key = "reg_head.offset_head.conv.weight"
    cases = {
        "shape.pth": (dict(state, **{key: torch.zeros(3, *state[key].shape[1:])}), key),
        "extra.pth": (dict(state, **{"cls_head.extra.weight": torch.zeros(2)}), "cls_head.extra.weight"),
    }
    for name, (sd, field) in cases.items():
        src, dst = tmp_path / name, tmp_path / "out" / f"{name}.pt"
        torch.save({"state_dict": sd, "state_dict_ema": sd}, src)
        assert main(["convert", "actionformer-official", str(src), str(dst), *_set_options(meta)]) == 2
        _one_line_error(capsys, str(src), field)
        assert not dst.parent.exists() or not any(dst.parent.iterdir())
